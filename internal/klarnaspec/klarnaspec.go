// Package klarnaspec validates Klarna HTTP traffic against the OpenAPI
// documents kept in <module root>/../shared/klarna/openapi (hpp-v1.yml,
// payments-v1.json, customer-token-v1.yml, order-management-v1.json).
//
// Both sides of hppd's Klarna integration use it in tests: the client
// (package klarna) checks that every request body it sends is one Klarna
// accepts, and the simulator (package klarna/klarnasim) checks that what it
// answers is what Klarna would answer. A test that passes against a
// simulator whose wire format drifted from Klarna's would prove nothing, so
// both are held to the same documents.
//
// Design:
//   - The four documents are loaded once per Spec with kin-openapi and each
//     gets a path-only router: their servers all say https://api.klarna.com,
//     but hppd talks to several hosts (regions, playground, a simulator on
//     127.0.0.1), so the servers are dropped and an operation is matched on
//     method and path alone (for example "/payments/v1/sessions").
//   - Security schemes are not checked: authentication is HTTP Basic and is
//     tested where it is produced (the client) and consumed (the simulator).
//   - A response declared without content (HPP's 204, KP's 403 with no
//     schema) accepts an empty body or any body, as the documents say
//     nothing about it.
//   - A response status an operation does not declare is an error, except
//     401, 429 and 5xx: Klarna documents those across its APIs (bad
//     credentials, rate limiting, outages; FACTS sections 2.3, 3.3 and 4)
//     even where an operation's document omits them. Their bodies, when they
//     claim to be JSON, must be a JSON object.
//
// A Spec is immutable after Load and safe for concurrent use.
package klarnaspec

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Files are the OpenAPI documents Load reads from its directory.
var Files = []string{
	"hpp-v1.yml",
	"payments-v1.json",
	"customer-token-v1.yml",
	"order-management-v1.json",
}

// Spec holds the loaded Klarna OpenAPI documents and their routers.
type Spec struct {
	docs []document
}

type document struct {
	name   string
	router routers.Router
}

// Dir finds <module root>/../shared/klarna/openapi, where the module root is
// the first directory holding a go.mod found by walking up from the working
// directory. When the directory is missing, Dir fails the test if the CI
// environment variable is set and skips it otherwise.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := findDir()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("klarnaspec: %v (CI is set, so the shared OpenAPI documents are required)", err)
		}
		t.Skipf("klarnaspec: %v; skipping (check out ../shared next to the module to run this test)", err)
	}
	return dir
}

func findDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	root := wd
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
		root = parent
	}
	dir := filepath.Join(filepath.Dir(root), "shared", "klarna", "openapi")
	for _, f := range Files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return "", fmt.Errorf("the Klarna OpenAPI document %s is missing", filepath.Join(dir, f))
		}
	}
	return dir, nil
}

// Load reads and validates the four documents in dir and builds a path-only
// router for each.
func Load(dir string) (*Spec, error) {
	s := &Spec{}
	for _, name := range Files {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", name, err)
		}
		// Match on path only: hppd's hosts vary by region and environment.
		doc.Servers = nil
		// The documents carry examples that do not match their own schemas
		// (for instance the HPP payment_session_url example); examples are
		// documentation, not contract.
		router, err := legacy.NewRouter(doc, openapi3.DisableExamplesValidation())
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", name, err)
		}
		s.docs = append(s.docs, document{name: name, router: router})
	}
	return s, nil
}

var (
	mustOnce sync.Once
	mustSpec *Spec
	mustErr  error
)

// MustLoad returns the Spec of Dir(t), loaded once per process, and fails the
// test if it cannot be loaded.
func MustLoad(t testing.TB) *Spec {
	t.Helper()
	dir := Dir(t)
	mustOnce.Do(func() { mustSpec, mustErr = Load(dir) })
	if mustErr != nil {
		t.Fatalf("klarnaspec: %v", mustErr)
	}
	return mustSpec
}

// ValidateRequest checks that method and path (for example
// "/payments/v1/sessions", optionally with a query) match an operation of one
// of the documents and that the headers and body conform to it: required
// parameters are present and the body matches the request body schema. A
// body sent to an operation that declares none is an error.
func (s *Spec) ValidateRequest(method, path string, header http.Header, body []byte) error {
	in, err := s.requestInput(method, path, header, body)
	if err != nil {
		return err
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		return fmt.Errorf("request %s %s: %w", method, in.Route.Path, err)
	}
	return nil
}

// ValidateResponse checks a response (status, Content-Type and body) against
// the responses declared by the operation that method and path match.
// reqHeader and reqBody are the request's; they only serve to find the
// operation and are not validated here.
func (s *Spec) ValidateResponse(method, path string, reqHeader http.Header, reqBody []byte, status int, respHeader http.Header, respBody []byte) error {
	in, err := s.requestInput(method, path, reqHeader, reqBody)
	if err != nil {
		return err
	}
	op := fmt.Sprintf("response %d to %s %s", status, method, in.Route.Path)
	if in.Route.Operation.Responses.Status(status) == nil && in.Route.Operation.Responses.Default() == nil {
		if status == http.StatusUnauthorized || status == http.StatusTooManyRequests || status >= 500 && status <= 599 {
			return checkErrorBody(op, respHeader, respBody)
		}
		return fmt.Errorf("%s: status not declared by %s", op, in.Route.Operation.OperationID)
	}
	if respHeader == nil {
		respHeader = http.Header{}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 respHeader,
		Body:                   io.NopCloser(bytes.NewReader(respBody)),
		Options:                in.Options,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// checkErrorBody accepts any body for a cross-cutting error status, but a
// body labelled JSON must be a JSON object.
func checkErrorBody(op string, header http.Header, body []byte) error {
	if len(body) == 0 {
		return nil
	}
	mt, _, err := mime.ParseMediaType(header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil
	}
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return fmt.Errorf("%s: JSON error body is not an object: %w", op, err)
	}
	return nil
}

func (s *Spec) requestInput(method, path string, header http.Header, body []byte) (*openapi3filter.RequestValidationInput, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("%s %s: path must start with /", method, path)
	}
	req, err := http.NewRequest(method, "http://klarna.invalid"+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if header != nil {
		req.Header = header.Clone()
	}
	// Route on the escaped path, so that an id holding an escaped "/" stays
	// one path segment (the router reads URL.Path).
	req.URL.Path, req.URL.RawPath = req.URL.EscapedPath(), ""
	for _, d := range s.docs {
		route, params, err := d.router.FindRoute(req)
		if err != nil {
			continue
		}
		return &openapi3filter.RequestValidationInput{
			Request:    req,
			PathParams: params,
			Route:      route,
			Options:    options(),
		}, nil
	}
	if s.pathKnown(req) {
		return nil, fmt.Errorf("%s %s: method not allowed by the Klarna OpenAPI documents", method, req.URL.Path)
	}
	return nil, fmt.Errorf("%s %s: no operation in the Klarna OpenAPI documents", method, req.URL.Path)
}

// pathKnown reports whether any document has an operation on req's path
// under some other method, to tell a wrong method from a wrong path.
func (s *Spec) pathKnown(req *http.Request) bool {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := req.Clone(context.Background())
		probe.Method = m
		for _, d := range s.docs {
			if _, _, err := d.router.FindRoute(probe); err == nil {
				return true
			}
		}
	}
	return false
}

func options() *openapi3filter.Options {
	o := &openapi3filter.Options{
		AuthenticationFunc:                openapi3filter.NoopAuthenticationFunc,
		RejectWhenRequestBodyNotSpecified: true,
		IncludeResponseStatus:             true,
		SkipSettingDefaults:               true,
		MultiError:                        true,
	}
	o.WithCustomSchemaErrorFunc(schemaError)
	return o
}

// schemaError words a schema violation as the JSON pointer of the offending
// value and the reason, without kin-openapi's dump of the whole schema.
func schemaError(err *openapi3.SchemaError) string {
	at := "/" + strings.Join(err.JSONPointer(), "/")
	if err.Origin != nil {
		return fmt.Sprintf("at %q: %v", at, err.Origin)
	}
	reason := err.Reason
	if reason == "" {
		reason = "does not match schema field " + err.SchemaField
	}
	return fmt.Sprintf("at %q: %s", at, reason)
}
