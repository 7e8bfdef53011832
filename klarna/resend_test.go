package klarna

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestErrorClasses(t *testing.T) {
	type class struct{ fallback, retryCharge, transient, final, notFound bool }
	cases := []struct {
		name      string
		rep       reply
		want      class
		code      string
		corrID    string
		msgs      []string
		retryAftr time.Duration
	}{
		{
			name: "unavailable payment method",
			rep:  jsonReply(403, `{"error_code":"UNAVAILABLE_PAYMENT_METHOD","error_messages":["card token has failed"],"correlation_id":"c-403a"}`),
			want: class{fallback: true}, code: CodeUnavailablePaymentMethod, corrID: "c-403a", msgs: []string{"card token has failed"},
		},
		{
			name: "payment method failed",
			rep:  jsonReply(403, `{"error_code":"PAYMENT_METHOD_FAILED","error_messages":["temporary issue"],"correlation_id":"c-403b"}`),
			want: class{retryCharge: true}, code: CodePaymentMethodFailed, corrID: "c-403b", msgs: []string{"temporary issue"},
		},
		{
			name: "token cancelled",
			rep:  jsonReply(403, `{"error_code":"TOKEN_CANCELLED","correlation_id":"c-403c"}`),
			want: class{final: true}, code: "TOKEN_CANCELLED", corrID: "c-403c",
		},
		{
			name: "bad value",
			rep:  jsonReply(400, `{"error_code":"BAD_VALUE","error_messages":["Bad value: order_lines"],"correlation_id":"c-400"}`),
			want: class{final: true}, code: "BAD_VALUE", corrID: "c-400", msgs: []string{"Bad value: order_lines"},
		},
		{
			name: "not found",
			rep:  jsonReply(404, `{"error_code":"TOKEN_NOT_FOUND","correlation_id":"c-404"}`),
			want: class{final: true, notFound: true}, code: "TOKEN_NOT_FOUND", corrID: "c-404",
		},
		{
			name: "conflict, correlation id from the header",
			rep: reply{status: 409, header: map[string]string{"Content-Type": "application/json", CorrelationIDHeader: "h-409"},
				body: `{"error_code":"BAD_VALUE","error_messages":["Not matching fields: [order_lines]"]}`},
			want: class{final: true}, code: "BAD_VALUE", corrID: "h-409", msgs: []string{"Not matching fields: [order_lines]"},
		},
		{
			name: "body correlation id wins over the header",
			rep: reply{status: 400, header: map[string]string{"Content-Type": "application/json", CorrelationIDHeader: "h-x"},
				body: `{"error_code":"BAD_VALUE","correlation_id":"b-x"}`},
			want: class{final: true}, code: "BAD_VALUE", corrID: "b-x",
		},
		{
			name: "unauthorized, empty body",
			rep:  reply{status: 401},
			want: class{final: true},
		},
		{
			name: "rate limited with Retry-After",
			rep:  reply{status: 429, header: map[string]string{"Retry-After": "2", CorrelationIDHeader: "h-429"}},
			want: class{transient: true}, corrID: "h-429", retryAftr: 2 * time.Second,
		},
		{
			name: "rate limited with X-Ratelimit-Reset",
			rep:  reply{status: 429, header: map[string]string{"X-Ratelimit-Reset": "1"}},
			want: class{transient: true}, retryAftr: time.Second,
		},
		{
			name: "internal server error",
			rep:  jsonReply(500, `{"error_code":"INTERNAL_SERVER_ERROR","correlation_id":"c-500"}`),
			want: class{transient: true}, code: "INTERNAL_SERVER_ERROR", corrID: "c-500",
		},
		{
			name: "service unavailable, HTML body",
			rep:  reply{status: 503, header: map[string]string{"Content-Type": "text/html", "Retry-After": "3"}, body: "<html>down</html>"},
			want: class{transient: true}, retryAftr: 3 * time.Second,
		},
		{
			name: "bad gateway, garbage JSON",
			rep:  jsonReply(502, `{"error_code":`),
			want: class{transient: true},
		},
		{
			name: "redirect is not followed",
			rep:  reply{status: 302, header: map[string]string{"Location": "https://elsewhere.example/"}},
			want: class{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRecorder(t, tc.rep)
			c, _ := testClient(t, srv.URL, nil)
			// No idempotency key: a single attempt whatever the class.
			_, err := c.CreateTokenOrder(context.Background(), custToken, testTokenOrderRequest(), "")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err %v (%T) is not a *Error", err, err)
			}
			got := class{IsFallbackTrigger(err), IsRetryCharge(err), IsTransient(err), IsFinal(err), IsNotFound(err)}
			if got != tc.want {
				t.Fatalf("classes %+v, want %+v (err %v)", got, tc.want, err)
			}
			if e.Temporary() != tc.want.transient {
				t.Fatalf("Temporary() = %v", e.Temporary())
			}
			if e.Op != OpCreateTokenOrder || e.HTTPStatus != tc.rep.status || e.Code != tc.code || ErrorCode(err) != tc.code ||
				e.CorrelationID != tc.corrID || e.RetryAfter != tc.retryAftr || strings.Join(e.Messages, "|") != strings.Join(tc.msgs, "|") {
				t.Fatalf("error %#v", e)
			}
			wrapped := errors.Join(errors.New("charge 7"), err)
			if IsTransient(wrapped) != tc.want.transient || ErrorCode(wrapped) != tc.code {
				t.Fatalf("helpers do not see through wrapping")
			}
			if strings.Contains(err.Error(), custToken) || strings.Contains(err.Error(), "/customer-token/") {
				t.Fatalf("error text discloses the token or URL: %q", err)
			}
			if n := len(srv.requests()); n != 1 {
				t.Fatalf("server saw %d requests, want 1", n)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Op: OpPlaceOrder, HTTPStatus: 403, Code: "PAYMENT_METHOD_FAILED", Messages: []string{"Purchase failed"}, CorrelationID: "6a0b"}
	if got, want := e.Error(), "klarna place_order: 403 PAYMENT_METHOD_FAILED: Purchase failed (correlation id 6a0b)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	e = &Error{Op: OpReadHPPSession, Err: context.DeadlineExceeded}
	if got, want := e.Error(), "klarna read_hpp_session: no response: context deadline exceeded"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(e, context.DeadlineExceeded) || !IsTransient(e) {
		t.Error("transport cause not unwrapped or not transient")
	}
	if IsTransient(errors.New("plain")) || IsFinal(nil) || ErrorCode(errors.New("x")) != "" {
		t.Error("helpers classify non-Klarna errors")
	}
}

func TestTokensNeverInErrorsOrLogs(t *testing.T) {
	// Klarna echoes the token in its message; the client scrubs it.
	srv := newRecorder(t, jsonReply(404, `{"error_code":"NOT_FOUND","error_messages":["Invalid authorization token `+authToken+`"],"correlation_id":"c1"}`))
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, _ := testClient(t, srv.URL, func(cfg *Config) { cfg.Logger = logger })
	_, err := c.PlaceOrder(context.Background(), authToken, testOrderRequest(), idemKey)
	if !IsNotFound(err) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "<redacted>") {
		t.Fatalf("message not scrubbed: %q", err)
	}
	// A transport failure: the *url.Error text (which holds the URL) is dropped.
	l, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	addr := l.Addr().String()
	l.Close()
	c2, _ := testClient(t, "http://"+addr, func(cfg *Config) { cfg.Logger = logger; cfg.MaxAttempts = 1 })
	_, err2 := c2.ReadCustomerToken(context.Background(), custToken)
	if !IsTransient(err2) {
		t.Fatalf("connection refused not transient: %v", err2)
	}
	var opErr *net.OpError
	if !errors.As(err2, &opErr) {
		t.Fatalf("cause %v is not a *net.OpError", err2)
	}
	for _, s := range []string{err.Error(), err2.Error(), logs.String()} {
		for _, secret := range []string{authToken, custToken, "tok%20en", "ct%2Ftoken", testPass, testBasic, "Running shoe", "/payments/", "/customer-token/"} {
			if strings.Contains(s, secret) {
				t.Fatalf("%q leaks %q", s, secret)
			}
		}
	}
	for _, want := range []string{"op=place_order", "status=404", "correlation_id=c1", "op=read_customer_token", "status=0", "duration="} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

func TestSuccessWithUndecodableBody(t *testing.T) {
	srv := newRecorder(t, reply{status: 200, header: map[string]string{"Content-Type": "application/json", CorrelationIDHeader: "c-ok"}, body: "<html>"})
	c, _ := testClient(t, srv.URL, nil)
	_, err := c.PlaceOrder(context.Background(), authToken, testOrderRequest(), idemKey)
	var e *Error
	if !errors.As(err, &e) || e.HTTPStatus != 200 || e.CorrelationID != "c-ok" || !strings.Contains(e.Error(), "decode response") {
		t.Fatalf("err = %#v", err)
	}
	if IsTransient(err) || IsFinal(err) || IsRetryCharge(err) || IsFallbackTrigger(err) {
		t.Fatalf("a 2xx that failed to decode is classified: %v", err)
	}
	if n := len(srv.requests()); n != 1 {
		t.Fatalf("resent %d times after a 2xx", n-1)
	}
}

func TestResponseBodyIsBounded(t *testing.T) {
	huge := `{"order_id":"` + strings.Repeat("x", maxResponseBody) + `"}`
	srv := newRecorder(t, jsonReply(200, huge))
	c, _ := testClient(t, srv.URL, nil)
	_, err := c.PlaceOrder(context.Background(), authToken, testOrderRequest(), idemKey)
	if err == nil || !strings.Contains(err.Error(), "over") || IsTransient(err) {
		t.Fatalf("err = %v", err)
	}
	srv2 := newRecorder(t, jsonReply(500, huge))
	c2, _ := testClient(t, srv2.URL, func(cfg *Config) { cfg.MaxAttempts = 1 })
	_, err = c2.ReadHPPSession(context.Background(), hppID)
	var e *Error
	if !errors.As(err, &e) || e.HTTPStatus != 500 || !IsTransient(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestResends(t *testing.T) {
	ctx := context.Background()
	e500 := jsonReply(500, `{"error_code":"INTERNAL_SERVER_ERROR"}`)
	e503 := reply{status: 503}
	e429 := reply{status: 429}
	hang := reply{hang: true}
	ok := func(body string) reply { return jsonReply(200, body) }
	cases := []struct {
		name     string
		replies  []reply
		call     func(c *Client) error
		attempts int
		wantErr  bool
	}{
		{"read kp session resent on 500 and 429", []reply{e500, e429, ok(`{"status":"incomplete"}`)},
			func(c *Client) error { _, err := c.ReadKPSession(ctx, kpID); return err }, 3, false},
		{"read hpp session resent after a timeout", []reply{hang, ok(`{"session_id":"h","status":"WAITING"}`)},
			func(c *Client) error { _, err := c.ReadHPPSession(ctx, hppID); return err }, 2, false},
		{"read token gives up after MaxAttempts", []reply{e503},
			func(c *Client) error { _, err := c.ReadCustomerToken(ctx, custToken); return err }, 4, true},
		{"keyed place order resent on 503 and timeout", []reply{e503, hang, ok(`{"order_id":"o"}`)},
			func(c *Client) error { _, err := c.PlaceOrder(ctx, authToken, testOrderRequest(), idemKey); return err }, 3, false},
		{"keyed token order resent on 502", []reply{{status: 502}, ok(`{"order_id":"o"}`)},
			func(c *Client) error {
				_, err := c.CreateTokenOrder(ctx, custToken, testTokenOrderRequest(), idemKey)
				return err
			}, 2, false},
		{"keyed token order not resent on a decline", []reply{jsonReply(403, `{"error_code":"PAYMENT_METHOD_FAILED"}`), ok(`{"order_id":"o"}`)},
			func(c *Client) error {
				_, err := c.CreateTokenOrder(ctx, custToken, testTokenOrderRequest(), idemKey)
				return err
			}, 1, true},
		{"keyed place order not resent on 409", []reply{jsonReply(409, `{"error_code":"BAD_VALUE"}`), ok(`{"order_id":"o"}`)},
			func(c *Client) error { _, err := c.PlaceOrder(ctx, authToken, testOrderRequest(), idemKey); return err }, 1, true},
		{"place order without key not resent", []reply{e500, ok(`{"order_id":"o"}`)},
			func(c *Client) error { _, err := c.PlaceOrder(ctx, authToken, testOrderRequest(), ""); return err }, 1, true},
		{"token order without key not resent after a timeout", []reply{hang, ok(`{"order_id":"o"}`)},
			func(c *Client) error {
				_, err := c.CreateTokenOrder(ctx, custToken, testTokenOrderRequest(), "")
				return err
			}, 1, true},
		{"create kp session resent on 500", []reply{e500, ok(`{"session_id":"s","client_token":"c"}`)},
			func(c *Client) error { _, err := c.CreateKPSession(ctx, testKPSessionRequest()); return err }, 2, false},
		{"create kp session resent on 429", []reply{e429, ok(`{"session_id":"s","client_token":"c"}`)},
			func(c *Client) error { _, err := c.CreateKPSession(ctx, testKPSessionRequest()); return err }, 2, false},
		{"create kp session not resent on 400", []reply{jsonReply(400, `{"error_code":"BAD_VALUE"}`), ok(`{"session_id":"s","client_token":"c"}`)},
			func(c *Client) error { _, err := c.CreateKPSession(ctx, testKPSessionRequest()); return err }, 1, true},
		{"create hpp session resent after a timeout", []reply{hang, jsonReply(201, `{"session_id":"h"}`)},
			func(c *Client) error { _, err := c.CreateHPPSession(ctx, testHPPSessionRequest()); return err }, 2, false},
		{"create hpp session resent on 503", []reply{e503, jsonReply(201, `{"session_id":"h"}`)},
			func(c *Client) error { _, err := c.CreateHPPSession(ctx, testHPPSessionRequest()); return err }, 2, false},
		{"create hpp session gives up after MaxAttempts", []reply{e503},
			func(c *Client) error { _, err := c.CreateHPPSession(ctx, testHPPSessionRequest()); return err }, 4, true},
		{"disable not resent", []reply{e500, {status: 204}},
			func(c *Client) error { return c.DisableHPPSession(ctx, hppID) }, 1, true},
		{"cancel authorization not resent", []reply{e503, {status: 204}},
			func(c *Client) error { return c.CancelAuthorization(ctx, authToken) }, 1, true},
		{"distribute not resent", []reply{e503, {status: 204}},
			func(c *Client) error { return c.DistributeHPPSession(ctx, hppID, testDistribution()) }, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRecorder(t, tc.replies...)
			var observed []int
			var mu sync.Mutex
			c, sl := testClient(t, srv.URL, func(cfg *Config) {
				cfg.Timeout = 250 * time.Millisecond
				cfg.Observer = func(_ string, status int, _ time.Duration, _ error) {
					mu.Lock()
					observed = append(observed, status)
					mu.Unlock()
				}
			})
			err := tc.call(c)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			reqs := srv.requests()
			if len(reqs) != tc.attempts {
				t.Fatalf("server saw %d requests, want %d", len(reqs), tc.attempts)
			}
			if got := len(sl.all()); got != tc.attempts-1 {
				t.Fatalf("%d backoff sleeps for %d attempts", got, tc.attempts)
			}
			mu.Lock()
			if len(observed) != tc.attempts {
				t.Fatalf("observer saw %d attempts (%v), want %d", len(observed), observed, tc.attempts)
			}
			mu.Unlock()
			first := reqs[0]
			for i, r := range reqs[1:] {
				if r.Method != first.Method || r.URI != first.URI || !bytes.Equal(r.Body, first.Body) ||
					r.Header.Get(IdempotencyKeyHeader) != first.Header.Get(IdempotencyKeyHeader) {
					t.Fatalf("resend %d differs from the first attempt: %s %s key %q body %q",
						i+1, r.Method, r.URI, r.Header.Get(IdempotencyKeyHeader), r.Body)
				}
			}
		})
	}
}

func TestAttemptTimeoutIsTransient(t *testing.T) {
	srv := newRecorder(t, reply{hang: true})
	c, _ := testClient(t, srv.URL, func(cfg *Config) { cfg.Timeout = 20 * time.Millisecond; cfg.MaxAttempts = 2 })
	_, err := c.ReadHPPSession(context.Background(), hppID)
	var e *Error
	if !errors.As(err, &e) || e.HTTPStatus != 0 || !errors.Is(err, context.DeadlineExceeded) || !IsTransient(err) {
		t.Fatalf("err = %v", err)
	}
	if n := len(srv.requests()); n != 2 {
		t.Fatalf("server saw %d requests, want 2", n)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	cases := []struct {
		name   string
		header map[string]string
		status int
		want   time.Duration
	}{
		{"Retry-After seconds", map[string]string{"Retry-After": "2"}, 429, 2 * time.Second},
		{"X-Ratelimit-Reset", map[string]string{"X-Ratelimit-Reset": "3"}, 429, 3 * time.Second},
		{"Retry-After on 503", map[string]string{"Retry-After": "1"}, 503, time.Second},
		{"longer than BackoffMax", map[string]string{"Retry-After": "12"}, 429, 12 * time.Second},
		{"session creation after a 429", map[string]string{"Retry-After": "2"}, 429, 2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRecorder(t, reply{status: tc.status, header: tc.header}, jsonReply(200, `{"status":"ACTIVE","payment_method_type":"CARD","session_id":"s","client_token":"c"}`))
			c, sl := testClient(t, srv.URL, nil) // BackoffBase 1ms, BackoffMax 5s
			var err error
			if strings.HasPrefix(tc.name, "session creation") {
				_, err = c.CreateKPSession(context.Background(), testKPSessionRequest())
			} else {
				_, err = c.ReadCustomerToken(context.Background(), custToken)
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := len(srv.requests()); n != 2 {
				t.Fatalf("server saw %d requests, want 2", n)
			}
			got := sl.all()
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("backoff %v, want [%v]", got, tc.want)
			}
		})
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"5"}}, 5 * time.Second},
		{http.Header{"Retry-After": {now.Add(7 * time.Second).Format(http.TimeFormat)}}, 7 * time.Second},
		{http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		{http.Header{"Retry-After": {"-3"}}, 0},
		{http.Header{"X-Ratelimit-Reset": {"0.5"}}, 500 * time.Millisecond},
		{http.Header{"X-Ratelimit-Reset": {"2, 2;w=1"}}, 2 * time.Second},
		{http.Header{"Retry-After": {"soon"}, "X-Ratelimit-Reset": {"4"}}, 4 * time.Second},
		{http.Header{"X-Ratelimit-Reset": {"NaN"}}, 0},
		{http.Header{}, 0},
	}
	for _, tc := range cases {
		if got := retryAfter(tc.h, now); got != tc.want {
			t.Errorf("retryAfter(%v) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	c, _ := testClient(t, "https://example.invalid", func(cfg *Config) {
		cfg.BackoffBase, cfg.BackoffMax = 100*time.Millisecond, time.Second
	})
	for n := 1; n <= 80; n++ {
		ceil := min(time.Second, 100*time.Millisecond<<min(n-1, 20))
		for range 50 {
			if d := c.backoff(n, 0); d < 0 || d > ceil {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", n, d, ceil)
			}
			if d := c.backoff(n, 700*time.Millisecond); d < 700*time.Millisecond || d > time.Second {
				t.Fatalf("backoff(%d, 700ms) = %v", n, d)
			}
			// Retry-After wins over the jitter cap; do refuses one over
			// MaxRetryAfter before it gets here.
			if d := c.backoff(n, 20*time.Second); d != 20*time.Second {
				t.Fatalf("backoff(%d, 20s) = %v, want the Retry-After", n, d)
			}
		}
	}
}

func TestCallerCancellationStopsAtOnce(t *testing.T) {
	t.Run("during an attempt", func(t *testing.T) {
		arrived := make(chan struct{}, 8)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			<-r.Context().Done()
		}))
		defer srv.Close()
		c, sl := testClient(t, srv.URL, nil)
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-arrived; cancel() }()
		_, err := c.ReadHPPSession(ctx, hppID)
		if !errors.Is(err, context.Canceled) || !IsTransient(err) {
			t.Fatalf("err = %v", err)
		}
		if len(sl.all()) != 0 || len(arrived) != 0 {
			t.Fatalf("resent after cancellation")
		}
	})
	t.Run("during a backoff", func(t *testing.T) {
		srv := newRecorder(t, reply{status: 503})
		c, sl := testClient(t, srv.URL, nil)
		ctx, cancel := context.WithCancel(context.Background())
		sl.hook = func(ctx context.Context) error { cancel(); return ctx.Err() }
		_, err := c.PlaceOrder(ctx, authToken, testOrderRequest(), idemKey)
		var e *Error
		if !errors.As(err, &e) || e.HTTPStatus != 503 {
			t.Fatalf("err = %v, want the last attempt's 503", err)
		}
		if n := len(srv.requests()); n != 1 {
			t.Fatalf("server saw %d requests after cancellation, want 1", n)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		srv := newRecorder(t)
		c, _ := testClient(t, srv.URL, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.ReadKPSession(ctx, kpID)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if n := len(srv.requests()); n != 0 {
			t.Fatalf("server saw %d requests", n)
		}
	})
	t.Run("deadline before the next resend", func(t *testing.T) {
		srv := newRecorder(t, reply{status: 429, header: map[string]string{"Retry-After": "3"}})
		c, sl := testClient(t, srv.URL, nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.ReadKPSession(ctx, kpID)
		var e *Error
		if !errors.As(err, &e) || e.HTTPStatus != 429 || e.RetryAfter != 3*time.Second {
			t.Fatalf("err = %v", err)
		}
		if len(sl.all()) != 0 || len(srv.requests()) != 1 {
			t.Fatalf("waited %v and sent %d requests past the deadline", sl.all(), len(srv.requests()))
		}
	})
}

func TestRateLimiter(t *testing.T) {
	t.Run("categories", func(t *testing.T) {
		c, _ := testClient(t, "https://example.invalid", nil)
		want := map[string][]*bucket{
			OpCreateKPSession:  {c.kpLim},
			OpCreateHPPSession: {c.hppLim},
			OpCreateTokenOrder: {c.tokenLim, c.otherLim},
		}
		for _, op := range Ops {
			w, ok := want[op]
			if !ok {
				w = []*bucket{c.otherLim}
			}
			got := c.bucketsFor(op)
			if len(got) != len(w) {
				t.Fatalf("%s takes %d buckets, want %d", op, len(got), len(w))
			}
			for i := range got {
				if got[i] != w[i] {
					t.Errorf("%s is in the wrong rate category", op)
				}
			}
		}
		if c.kpLim == c.hppLim {
			t.Error("KP and HPP session creation share a bucket; Klarna counts them separately")
		}
	})
	t.Run("create sessions are paced, other calls are not held up", func(t *testing.T) {
		srv := newRecorder(t, jsonReply(200, `{"session_id":"s","client_token":"c","status":"WAITING"}`))
		var sent atomic.Int32
		c, _ := testClient(t, srv.URL, func(cfg *Config) {
			cfg.CreateSessionRate = 0.01 // one token, then one per 100 s
			cfg.OtherRate = 1000
			cfg.Observer = func(string, int, time.Duration, error) { sent.Add(1) }
		})
		if _, err := c.CreateKPSession(context.Background(), testKPSessionRequest()); err != nil {
			t.Fatal(err)
		}
		if tok := c.kpLim.lim.Tokens(); tok >= 1 {
			t.Fatalf("KP create-session bucket still holds %.2f tokens after a call", tok)
		}
		// HPP creation has a bucket of its own (Klarna counts it apart).
		if _, err := c.CreateHPPSession(context.Background(), testHPPSessionRequest()); err != nil {
			t.Fatalf("HPP creation held up by the KP bucket: %v", err)
		}
		// The next KP session creation would wait ~100 s: with a shorter
		// deadline the limiter refuses at once, and nothing is sent.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.CreateKPSession(ctx, testKPSessionRequest())
		if err == nil || !strings.Contains(err.Error(), "rate limiter") || !IsTransient(err) {
			t.Fatalf("err = %v", err)
		}
		for range 5 {
			if _, err := c.ReadKPSession(context.Background(), kpID); err != nil {
				t.Fatalf("read held up by the create-session bucket: %v", err)
			}
		}
		if got := len(srv.requests()); got != 7 || sent.Load() != 7 {
			t.Fatalf("server saw %d requests, observer %d; want 7", got, sent.Load())
		}
	})
	t.Run("other calls consume their own bucket", func(t *testing.T) {
		srv := newRecorder(t, jsonReply(200, `{"status":"ACTIVE","payment_method_type":"CARD"}`))
		c, _ := testClient(t, srv.URL, func(cfg *Config) { cfg.OtherRate = 0.01; cfg.CreateSessionRate = 0.01 })
		if _, err := c.ReadCustomerToken(context.Background(), custToken); err != nil {
			t.Fatal(err)
		}
		if c.otherLim.lim.Tokens() >= 1 || c.kpLim.lim.Tokens() < 1 || c.hppLim.lim.Tokens() < 1 {
			t.Fatalf("tokens: other %.2f, create %.2f/%.2f", c.otherLim.lim.Tokens(), c.kpLim.lim.Tokens(), c.hppLim.lim.Tokens())
		}
		r := c.otherLim.lim.Reserve()
		defer r.Cancel()
		if d := r.Delay(); d < 50*time.Second {
			t.Fatalf("next other call would wait only %v at 0.01/s", d)
		}
	})
	t.Run("a token order takes a token of its own bucket and of other", func(t *testing.T) {
		srv := newRecorder(t, jsonReply(200, `{"order_id":"o"}`))
		c, _ := testClient(t, srv.URL, func(cfg *Config) { cfg.OtherRate = 0.01; cfg.TokenOrderRate = 0.01 })
		if _, err := c.CreateTokenOrder(context.Background(), custToken, testTokenOrderRequest(), idemKey); err != nil {
			t.Fatal(err)
		}
		if c.tokenLim.lim.Tokens() >= 1 || c.otherLim.lim.Tokens() >= 1 {
			t.Fatalf("tokens: token order %.2f, other %.2f", c.tokenLim.lim.Tokens(), c.otherLim.lim.Tokens())
		}
	})
	t.Run("negative rate disables", func(t *testing.T) {
		c, _ := testClient(t, "https://example.invalid", func(cfg *Config) { cfg.CreateSessionRate = -1; cfg.OtherRate = -1; cfg.TokenOrderRate = -1 })
		for range 1000 {
			if !c.kpLim.lim.Allow() || !c.hppLim.lim.Allow() || !c.tokenLim.lim.Allow() || !c.otherLim.lim.Allow() {
				t.Fatal("disabled limiter refused")
			}
		}
	})
}

func TestDefaultRatesFollowTheEnvironment(t *testing.T) {
	cases := []struct {
		env                       string
		create, other, tokenOrder float64
	}{
		{"", 5, 50, 5},
		{"playground", 5, 50, 5},
		{"production", 40, 200, 40},
	}
	for _, tc := range cases {
		t.Run("env "+tc.env, func(t *testing.T) {
			c, err := New(Config{Username: testUser, Password: testPass, Environment: tc.env})
			if err != nil {
				t.Fatal(err)
			}
			for name, got := range map[string]struct {
				b    *bucket
				want float64
			}{
				"kp": {c.kpLim, tc.create}, "hpp": {c.hppLim, tc.create},
				"token order": {c.tokenLim, tc.tokenOrder}, "other": {c.otherLim, tc.other},
			} {
				if float64(got.b.lim.Limit()) != got.want*paceMargin {
					t.Errorf("%s bucket paced at %v/s, want %v", name, got.b.lim.Limit(), got.want*paceMargin)
				}
			}
		})
	}
}

// TestPriorityCallsGoFirst queues routine calls on an exhausted bucket and
// then makes a priority call: it must get the next token before every
// routine call that was queued when it arrived but had not reserved yet.
func TestPriorityCallsGoFirst(t *testing.T) {
	b, err := newBucket("OtherRate", 20, 0) // a token every ~53 ms
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.wait(ctx, false); err != nil { // empty the bucket
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	done := func(name string) {
		mu.Lock()
		order = append(order, name)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	const routine = 4
	for i := range routine {
		wg.Go(func() {
			if err := b.wait(ctx, false); err != nil {
				t.Error(err)
			}
			done(fmt.Sprintf("routine %d", i))
		})
	}
	// Wait until one routine call holds the reservation slot and the rest
	// queue behind it.
	for deadline := time.Now().Add(5 * time.Second); len(b.routine) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no routine call reserved")
		}
		time.Sleep(time.Millisecond)
	}
	wg.Go(func() {
		if err := b.wait(WithPriority(ctx), true); err != nil {
			t.Error(err)
		}
		done("priority")
	})
	wg.Wait()
	pos := -1
	for i, name := range order {
		if name == "priority" {
			pos = i
		}
	}
	// At most the one routine reservation made before it is ahead.
	if pos < 0 || pos > 1 {
		t.Fatalf("priority call finished at position %d of %v, want 0 or 1", pos, order)
	}
}

func TestUrgentCalls(t *testing.T) {
	ctx := context.Background()
	for _, op := range Ops {
		want := op == OpPlaceOrder || op == OpCreateTokenOrder || op == OpCreateKPSession || op == OpCreateHPPSession
		if got := urgent(ctx, op); got != want {
			t.Errorf("urgent(%s) = %v, want %v", op, got, want)
		}
		if !urgent(WithPriority(ctx), op) {
			t.Errorf("%s with WithPriority is not urgent", op)
		}
	}
}

func TestRetryAfterOverTheCapIsNotWaitedFor(t *testing.T) {
	srv := newRecorder(t, reply{status: 429, header: map[string]string{"Retry-After": "120"}}, jsonReply(200, `{"session_id":"s","client_token":"c"}`))
	c, sl := testClient(t, srv.URL, nil) // MaxRetryAfter 30s by default
	_, err := c.CreateKPSession(context.Background(), testKPSessionRequest())
	var e *Error
	if !errors.As(err, &e) || e.HTTPStatus != 429 || e.RetryAfter != 120*time.Second {
		t.Fatalf("err = %v", err)
	}
	if n := len(srv.requests()); n != 1 || len(sl.all()) != 0 {
		t.Fatalf("server saw %d requests, %d sleeps; want 1, 0", n, len(sl.all()))
	}
}

func TestStrayHPPSessionIsDisabled(t *testing.T) {
	srv := newRecorder(t,
		jsonReply(500, `{"error_code":"INTERNAL_SERVER_ERROR","session_id":"stray-1"}`),
		jsonReply(201, `{"session_id":"h"}`),
		reply{status: 204})
	c, _ := testClient(t, srv.URL, nil)
	hs, err := c.CreateHPPSession(context.Background(), testHPPSessionRequest())
	if err != nil || hs.SessionID != "h" {
		t.Fatalf("session %+v, err %v", hs, err)
	}
	reqs := srv.requests()
	if len(reqs) != 3 || reqs[2].Method != http.MethodDelete || reqs[2].URI != "/hpp/v1/sessions/stray-1" {
		t.Fatalf("requests %+v, want create, create, DELETE /hpp/v1/sessions/stray-1", reqs)
	}
}

func TestConcurrentCalls(t *testing.T) {
	srv := newRecorder(t, jsonReply(200, `{"session_id":"h","status":"IN_PROGRESS"}`))
	c, _ := testClient(t, srv.URL, func(cfg *Config) { cfg.OtherRate = 0 }) // default 200/s
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := c.ReadHPPSession(context.Background(), hppID)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(srv.requests()); n != 20 {
		t.Fatalf("server saw %d requests", n)
	}
}
