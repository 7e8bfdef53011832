package daemon_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/hppd/hppd/api"
)

var (
	specOnce   sync.Once
	specRouter routers.Router
	specErr    error
)

func apiRouter(t testing.TB) routers.Router {
	specOnce.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPIJSON)
		if err != nil {
			specErr = err
			return
		}
		specRouter, specErr = legacy.NewRouter(doc)
	})
	if specErr != nil {
		t.Fatalf("openapi: %v", specErr)
	}
	return specRouter
}

// validating is an http.RoundTripper that checks every storefront API request
// and answer of the end-to-end tests against hppd's OpenAPI document, so the
// document served at /openapi.json cannot drift from the code.
type validating struct {
	t    testing.TB
	next http.RoundTripper
}

func (v validating) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(req.URL.Path, "/v1/") && req.URL.Path != "/healthz" && req.URL.Path != "/readyz" {
		return v.next.RoundTrip(req)
	}
	router := apiRouter(v.t)
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	check := req.Clone(context.Background())
	check.Body = io.NopCloser(bytes.NewReader(body))
	check.URL.Scheme, check.URL.Host = "", ""
	check.Host = ""
	route, params, err := router.FindRoute(check)
	if err != nil {
		v.t.Errorf("openapi: %s %s: no operation: %v", req.Method, req.URL.Path, err)
		return v.next.RoundTrip(req)
	}
	in := &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	resp, err := v.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	// Requests the tests send on purpose wrong must be refused by hppd; the
	// document must then agree that they are wrong.
	if reqErr != nil && resp.StatusCode < 400 {
		v.t.Errorf("openapi: %s %s was accepted (%d) but the document refuses it: %v", req.Method, req.URL.Path, resp.StatusCode, reqErr)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	out.SetBodyBytes(raw)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		v.t.Errorf("openapi: %s %s answer %d does not match the document: %v", req.Method, req.URL.Path, resp.StatusCode, err)
	}
	return resp, nil
}

func TestOpenAPIDocumentIsServed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	resp, err := http.Get(e.base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"/v1/charges"`)) {
		t.Fatalf("openapi.json: %d %.200s", resp.StatusCode, b)
	}
}
