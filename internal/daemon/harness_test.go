package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/hppd/hppd/internal/testutil"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/webhook"
)

const testKey = "0123456789abcdef0123456789abcdef-test-key"

// env is a running simulator plus a running hppd on port 0.
type env struct {
	t      *testing.T
	clock  *testutil.Clock
	sim    *klarnasim.Sim
	simURL string
	dbPath string
	vars   map[string]string
	m      *daemon.Main
	base   string
	http   *http.Client
	logger *slog.Logger

	emitter hpp.Emitter // storefront events (nil: none)
}

func newEnv(t *testing.T, over map[string]string) *env {
	t.Helper()
	return newEnvWith(t, envOptions{vars: over})
}

// newEnvLogging is newEnv with hppd logging to logger.
func newEnvLogging(t *testing.T, over map[string]string, logger *slog.Logger) *env {
	t.Helper()
	return newEnvWith(t, envOptions{vars: over, logger: logger})
}

// envOptions vary the test environment; the zero value is newEnv's.
type envOptions struct {
	vars             map[string]string // HPPD_* overrides
	logger           *slog.Logger      // hppd's logger (default: discard)
	simUser, simPass string            // Klarna credentials (default sim/sim)
	seed             int64             // the simulator's seed (default 7)
	// transport carries the test's requests to hppd (default: validated
	// against the OpenAPI document).
	transport http.RoundTripper
	// emitter sends storefront events (default: none).
	emitter hpp.Emitter
}

func newEnvWith(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.simUser == "" {
		o.simUser, o.simPass = "sim", "sim"
	}
	if o.seed == 0 {
		o.seed = 7
	}
	if o.transport == nil {
		o.transport = validating{t: t, next: http.DefaultTransport}
	}
	e := &env{t: t, clock: &testutil.Clock{}, logger: o.logger, emitter: o.emitter}
	e.sim = klarnasim.New(klarnasim.Options{
		Seed: o.seed, Now: e.clock.Now, Username: o.simUser, Password: o.simPass,
		CallbackTimeout: time.Second, CallbackRetryDelay: 50 * time.Millisecond,
	})
	srv := httptest.NewServer(e.sim.Handler())
	e.sim.SetPublicURL(srv.URL)
	e.simURL = srv.URL
	t.Cleanup(func() { e.sim.Close(); srv.Close() })
	e.dbPath = filepath.Join(t.TempDir(), "hppd.db")
	e.vars = map[string]string{
		"HPPD_LISTEN":          "127.0.0.1:0",
		"HPPD_DB":              e.dbPath,
		"HPPD_KLARNA_BASE_URL": srv.URL,
		"HPPD_KLARNA_USERNAME": o.simUser,
		"HPPD_KLARNA_PASSWORD": o.simPass,
		"HPPD_JWT_HS256_KEY":   testKey,
		"HPPD_POLL_SCHEDULE":   "@every 1h", // tests run the poller by hand
		"HPPD_STALE_AFTER":     "2m",
		"HPPD_KLARNA_TIMEOUT":  "5s",
		// The tests move the clock by minutes while a job runs; that is
		// not a process dying, so no lease may expire by it.
		"HPPD_LEASE_TTL": "87600h",
	}
	for k, v := range o.vars {
		e.vars[k] = v
	}
	e.http = &http.Client{Timeout: 20 * time.Second, Transport: o.transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	e.start()
	return e
}

func (e *env) start() {
	e.t.Helper()
	cfg, err := config.Load(func(k string) string { return e.vars[k] })
	if err != nil {
		e.t.Fatal(err)
	}
	e.m = &daemon.Main{Config: cfg, Now: e.clock.Now, Logger: e.logger, Emitter: e.emitter}
	if err := e.m.Run(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.base = "http://" + e.m.Addr()
	m := e.m
	e.t.Cleanup(func() { _ = m.Close(context.Background()) })
}

func (e *env) restart() {
	e.t.Helper()
	if err := e.m.Close(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.vars["HPPD_LISTEN"] = e.m.Addr() // same address: Klarna's URLs stay valid
	e.start()
}

func (e *env) tokenFor(storefront string) string {
	tok, err := webhook.IssueToken([]byte(testKey), storefront, "hppd", time.Hour, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// do sends a request to hppd and decodes a JSON answer into a map.
func (e *env) do(method, path string, body any, hdr map[string]string) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				e.t.Fatal(err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.tokenFor("shop-a")) // fresh: tests move the clock
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			e.t.Fatalf("%s %s: bad JSON %q", method, path, raw)
		}
	}
	out["_raw"] = string(raw)
	out["_location"] = resp.Header.Get("Location")
	return resp.StatusCode, out
}

func purchase(amount int64) map[string]any {
	return map[string]any{
		"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
		"order_amount": amount, "order_tax_amount": amount / 5,
		"order_lines": []any{map[string]any{
			"type": "physical", "name": "Espresso cups", "quantity": 2, "unit_price": amount / 2,
			"tax_rate": 2500, "total_amount": amount, "total_tax_amount": amount / 5,
		}},
		"merchant_reference1": "order-42",
	}
}

func sessionBody(amount int64, mode string) map[string]any {
	b := purchase(amount)
	if mode != "" {
		b["place_order_mode"] = mode
	}
	b["return_urls"] = map[string]any{
		"success": "https://shop.example/ok", "failure": "https://shop.example/fail",
		"back": "https://shop.example/back", "cancel": "https://shop.example/cancel", "error": "https://shop.example/error",
	}
	return b
}

func (e *env) createSession(mode string) map[string]any {
	e.t.Helper()
	st, out := e.do("POST", "/v1/sessions", sessionBody(10000, mode), nil)
	if st != http.StatusCreated {
		e.t.Fatalf("create session: %d %v", st, out["_raw"])
	}
	return out
}

func (e *env) session(id string) map[string]any {
	e.t.Helper()
	st, out := e.do("GET", "/v1/sessions/"+id, nil, nil)
	if st != http.StatusOK {
		e.t.Fatalf("get session: %d %v", st, out["_raw"])
	}
	return out
}

func hppID(s map[string]any) string { return s["klarna"].(map[string]any)["hpp_session_id"].(string) }

// act is the shopper pressing a button on the simulator's page; it returns
// where the browser is sent (an hppd shopper URL).
func (e *env) act(hpp, action string) string {
	e.t.Helper()
	_, to, err := e.sim.Act(hpp, action)
	if err != nil {
		e.t.Fatalf("sim %s: %v", action, err)
	}
	return to
}

// follow is the shopper's browser following a redirect to hppd.
func (e *env) follow(u string) (int, string) {
	e.t.Helper()
	resp, err := e.http.Get(u)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// eventually waits (bounded) for cond; it is a wait, not a speed assertion.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("timed out waiting for %s", what)
}

func (e *env) waitStatus(id, status string) map[string]any {
	e.t.Helper()
	var s map[string]any
	e.eventually(fmt.Sprintf("session %s to be %s", id, status), func() bool {
		s = e.session(id)
		return s["status"] == status
	})
	return s
}

func (e *env) setFaults(f string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.simURL+"/_sim/faults", bytes.NewBufferString(f))
	req.SetBasicAuth("sim", "sim")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		e.t.Fatalf("set faults: %d", resp.StatusCode)
	}
}

// countRequests counts simulator requests of one operation.
func (e *env) countRequests(op string) int {
	n := 0
	for _, r := range e.sim.Requests() {
		if r.Operation == op {
			n++
		}
	}
	return n
}

func (e *env) ordersFor(sess map[string]any) []klarnasim.OrderRecord {
	kp := sess["klarna"].(map[string]any)["kp_session_id"].(string)
	var out []klarnasim.OrderRecord
	for _, o := range e.sim.Orders() {
		if o.KPSessionID == kp {
			out = append(out, o)
		}
	}
	return out
}
