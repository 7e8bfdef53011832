package klarnaspec

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func jsonHeader() http.Header {
	return http.Header{"Content-Type": {"application/json"}}
}

const line = `{"name":"Shoe","quantity":1,"unit_price":2500,"tax_rate":2500,"total_amount":2500,"total_tax_amount":500}`

func TestValidateRequest(t *testing.T) {
	s := MustLoad(t)
	cases := []struct {
		name, method, path string
		header             http.Header
		body               string
		wantErr            string // "" means valid
	}{
		{"kp create session valid", "POST", "/payments/v1/sessions", jsonHeader(),
			`{"intent":"buy","purchase_country":"SE","purchase_currency":"SEK","locale":"sv-SE","order_amount":2500,"order_tax_amount":500,"order_lines":[` + line + `]}`, ""},
		{"kp create session missing lines", "POST", "/payments/v1/sessions", jsonHeader(),
			`{"purchase_country":"SE","purchase_currency":"SEK","order_amount":2500}`, "order_lines"},
		{"kp create session bad intent", "POST", "/payments/v1/sessions", jsonHeader(),
			`{"intent":"steal","purchase_country":"SE","purchase_currency":"SEK","order_amount":2500,"order_lines":[` + line + `]}`, "intent"},
		{"kp place order valid", "POST", "/payments/v1/authorizations/tok-1/order", jsonHeader(),
			`{"purchase_country":"SE","purchase_currency":"SEK","order_amount":2500,"order_tax_amount":500,"order_lines":[` + line + `]}`, ""},
		{"kp place order bad country", "POST", "/payments/v1/authorizations/tok-1/order", jsonHeader(),
			`{"purchase_country":"SWE","purchase_currency":"SEK","order_amount":2500,"order_lines":[` + line + `]}`, "purchase_country"},
		{"kp read session", "GET", "/payments/v1/sessions/abc", nil, "", ""},
		{"escaped slash in a token", "DELETE", "/payments/v1/authorizations/a%2Fb%20c", nil, "", ""},
		{"unescaped slash adds a segment", "DELETE", "/payments/v1/authorizations/a/b", nil, "", "no operation"},
		{"kp cancel authorization", "DELETE", "/payments/v1/authorizations/tok-1", nil, "", ""},
		{"body on an operation without one", "GET", "/payments/v1/sessions/abc", jsonHeader(), `{"x":1}`, "body"},
		{"hpp create valid", "POST", "/hpp/v1/sessions", jsonHeader(),
			`{"payment_session_url":"https://api.klarna.com/payments/v1/sessions/abc","options":{"place_order_mode":"NONE","payment_method_categories":["PAY_LATER"]}}`, ""},
		{"hpp create missing payment_session_url", "POST", "/hpp/v1/sessions", jsonHeader(),
			`{"options":{"place_order_mode":"NONE"}}`, "payment_session_url"},
		{"hpp create bad place_order_mode", "POST", "/hpp/v1/sessions", jsonHeader(),
			`{"payment_session_url":"https://x/payments/v1/sessions/a","options":{"place_order_mode":"LATER"}}`, "place_order_mode"},
		{"hpp distribute valid", "POST", "/hpp/v1/sessions/h1/distribution", jsonHeader(),
			`{"method":"email","contact_information":{"email":"a@example.com"}}`, ""},
		{"hpp distribute bad method", "POST", "/hpp/v1/sessions/h1/distribution", jsonHeader(),
			`{"method":"pigeon","contact_information":{}}`, "method"},
		{"hpp read", "GET", "/hpp/v1/sessions/h1", nil, "", ""},
		{"hpp disable", "DELETE", "/hpp/v1/sessions/h1", nil, "", ""},
		{"ct create order valid", "POST", "/customer-token/v1/tokens/ct-1/order",
			http.Header{"Content-Type": {"application/json"}, "Klarna-Idempotency-Key": {"k1"}},
			`{"purchase_currency":"EUR","order_amount":2500,"order_tax_amount":500,"order_lines":[` + line + `]}`, ""},
		{"ct create order zero amount", "POST", "/customer-token/v1/tokens/ct-1/order", jsonHeader(),
			`{"purchase_currency":"EUR","order_amount":0,"order_tax_amount":0,"order_lines":[` + line + `]}`, "order_amount"},
		{"ct read token", "GET", "/customer-token/v1/tokens/ct-1", nil, "", ""},
		{"om capture valid", "POST", "/ordermanagement/v1/orders/o-1/captures", jsonHeader(),
			`{"captured_amount":2500}`, ""},
		{"om capture missing amount", "POST", "/ordermanagement/v1/orders/o-1/captures", jsonHeader(),
			`{"description":"x"}`, "captured_amount"},
		{"not json", "POST", "/payments/v1/sessions", jsonHeader(), `{`, "body"},
		{"wrong content type", "POST", "/hpp/v1/sessions", http.Header{"Content-Type": {"text/plain"}},
			`{"payment_session_url":"https://x/payments/v1/sessions/a"}`, "content"},
		{"unknown path", "GET", "/checkout/v3/orders/1", nil, "", "no operation"},
		{"unknown method", "PUT", "/hpp/v1/sessions/h1", nil, "", "method not allowed"},
		{"relative path", "GET", "hpp/v1/sessions/h1", nil, "", "must start with /"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			err := s.ValidateRequest(tc.method, tc.path, tc.header, body)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error mentioning %q, got none", tc.wantErr)
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.wantErr)) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "\nSchema:") {
				t.Fatalf("error dumps the schema: %q", err)
			}
		})
	}
}

func TestValidateResponse(t *testing.T) {
	s := MustLoad(t)
	hppReq := []byte(`{"payment_session_url":"https://api.klarna.com/payments/v1/sessions/abc"}`)
	cases := []struct {
		name, method, path string
		reqBody            []byte
		status             int
		header             http.Header
		body               string
		wantErr            string
	}{
		{"hpp create 201", "POST", "/hpp/v1/sessions", hppReq, 201, jsonHeader(),
			`{"session_id":"h1","redirect_url":"https://pay.klarna.com/eu/hpp/payments/x","expires_at":"2038-01-19T03:14:07.000Z"}`, ""},
		{"hpp create 201 wrong type", "POST", "/hpp/v1/sessions", hppReq, 201, jsonHeader(),
			`{"session_id":42}`, "session_id"},
		{"hpp create 201 without content type", "POST", "/hpp/v1/sessions", hppReq, 201, nil,
			`{"session_id":"h1"}`, "content-type"},
		{"hpp create 200 undeclared", "POST", "/hpp/v1/sessions", hppReq, 200, jsonHeader(),
			`{"session_id":"h1"}`, "not declared"},
		{"hpp read bad status enum", "GET", "/hpp/v1/sessions/h1", nil, 200, jsonHeader(),
			`{"session_id":"h1","status":"EXPIRED"}`, "status"},
		{"hpp read completed", "GET", "/hpp/v1/sessions/h1", nil, 200, jsonHeader(),
			`{"session_id":"h1","status":"COMPLETED","authorization_token":"a1","updated_at":"2024-01-01T00:00:00Z"}`, ""},
		{"hpp disable 204 empty", "DELETE", "/hpp/v1/sessions/h1", nil, 204, nil, "", ""},
		{"hpp disable 400 any body", "DELETE", "/hpp/v1/sessions/h1", nil, 400, http.Header{"Content-Type": {"text/plain"}}, "already completed", ""},
		{"hpp read 404 json body", "GET", "/hpp/v1/sessions/h1", nil, 404, jsonHeader(),
			`{"error_code":"NOT_FOUND","error_messages":["gone"],"correlation_id":"c1"}`, ""},
		{"kp create session 200", "POST", "/payments/v1/sessions", nil, 200, jsonHeader(),
			`{"session_id":"s1","client_token":"ct"}`, ""},
		{"kp create session missing client_token", "POST", "/payments/v1/sessions", nil, 200, jsonHeader(),
			`{"session_id":"s1"}`, "client_token"},
		{"kp place order 200", "POST", "/payments/v1/authorizations/a1/order", nil, 200, jsonHeader(),
			`{"order_id":"o1","fraud_status":"ACCEPTED"}`, ""},
		{"kp place order 403 no schema", "POST", "/payments/v1/authorizations/a1/order", nil, 403, jsonHeader(),
			`{"error_code":"INVALID_OPERATION"}`, ""},
		{"kp cancel 204", "DELETE", "/payments/v1/authorizations/a1", nil, 204, http.Header{"Content-Type": {"application/octet-stream"}}, "", ""},
		{"ct read token 200", "GET", "/customer-token/v1/tokens/t1", nil, 200, jsonHeader(),
			`{"status":"ACTIVE","payment_method_type":"INVOICE"}`, ""},
		{"ct read token missing status", "GET", "/customer-token/v1/tokens/t1", nil, 200, jsonHeader(),
			`{"payment_method_type":"INVOICE"}`, "status"},
		{"ct order 400 ErrorV2", "POST", "/customer-token/v1/tokens/t1/order", nil, 400, jsonHeader(),
			`{"error_code":"BAD_VALUE","error_messages":["x"],"correlation_id":"c"}`, ""},
		{"ct order 400 bad ErrorV2", "POST", "/customer-token/v1/tokens/t1/order", nil, 400, jsonHeader(),
			`{"error_messages":"x"}`, "error_messages"},
		{"om capture 201", "POST", "/ordermanagement/v1/orders/o1/captures", nil, 201, http.Header{"Capture-Id": {"c1"}}, "", ""},
		{"om read order 200 wrong type", "GET", "/ordermanagement/v1/orders/o1", nil, 200, jsonHeader(), `{"order_id":7}`, "order_id"},
		{"429 anywhere", "POST", "/customer-token/v1/tokens/t1/order", nil, 429, jsonHeader(),
			`{"error_code":"TOO_MANY_REQUESTS"}`, ""},
		{"503 plain text", "GET", "/hpp/v1/sessions/h1", nil, 503, http.Header{"Content-Type": {"text/html"}}, "<html>down</html>", ""},
		{"500 json not an object", "GET", "/payments/v1/sessions/s1", nil, 500, jsonHeader(), "oops", "not an object"},
		{"401 on kp", "GET", "/payments/v1/sessions/s1", nil, 401, nil, "", ""},
		{"418 undeclared", "GET", "/payments/v1/sessions/s1", nil, 418, nil, "", "not declared"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reqHeader := http.Header{}
			if tc.reqBody != nil {
				reqHeader = jsonHeader()
			}
			err := s.ValidateResponse(tc.method, tc.path, reqHeader, tc.reqBody, tc.status, tc.header, []byte(tc.body))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error mentioning %q, got none", tc.wantErr)
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.wantErr)) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	s := MustLoad(t)
	body := []byte(`{"purchase_currency":"EUR","order_amount":2500,"order_tax_amount":500,"order_lines":[` + line + `]}`)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 16 {
		wg.Go(func() {
			errs <- s.ValidateRequest("POST", "/customer-token/v1/tokens/t/order", jsonHeader(), body)
			errs <- s.ValidateResponse("GET", "/hpp/v1/sessions/h", nil, nil, 200, jsonHeader(), []byte(`{"session_id":"h","status":"WAITING"}`))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadMissingDir(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil {
		t.Fatal("Load of an empty directory succeeded")
	}
}

// recorder is a testing.TB that records how Dir ended the test.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	skip   bool
	msg    string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.end(false, format, args...)
}
func (r *recorder) Skipf(format string, args ...any) {
	r.end(true, format, args...)
}
func (r *recorder) end(skip bool, format string, args ...any) {
	r.mu.Lock()
	r.failed, r.skip = !skip, skip
	r.msg = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func runDir(t *testing.T) (string, *recorder) {
	r := &recorder{TB: t}
	var dir string
	done := make(chan struct{})
	go func() {
		defer close(done)
		dir = Dir(r)
	}()
	<-done
	return dir, r
}

func TestDir(t *testing.T) {
	// A module with no ../shared next to it.
	root := t.TempDir()
	mod := filepath.Join(root, "mod")
	sub := filepath.Join(mod, "pkg", "deep")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)

	t.Run("missing without CI skips", func(t *testing.T) {
		t.Setenv("CI", "")
		_, r := runDir(t)
		if !r.skip || r.failed {
			t.Fatalf("want skip, got failed=%v skip=%v", r.failed, r.skip)
		}
	})
	t.Run("missing with CI fails", func(t *testing.T) {
		t.Setenv("CI", "true")
		_, r := runDir(t)
		if !r.failed || r.skip {
			t.Fatalf("want failure, got failed=%v skip=%v", r.failed, r.skip)
		}
	})
	t.Run("present is found from a subdirectory", func(t *testing.T) {
		dir := filepath.Join(root, "shared", "klarna", "openapi")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range Files {
			if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, r := runDir(t)
		if r.failed || r.skip {
			t.Fatalf("Dir ended the test: %s", r.msg)
		}
		if got != dir {
			t.Fatalf("Dir = %q, want %q", got, dir)
		}
	})
}
