package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/testenv"
	"github.com/hppd/hppd/internal/testutil"
	"github.com/hppd/hppd/klarna/klarnasim"
)

const testKey = testenv.Key

// env is the test environment (internal/testenv) with this package's way of
// talking to hppd: every storefront API request and answer checked against
// the OpenAPI document.
//
// Every test of this package runs in parallel with the others (t.Parallel):
// each has its own hppd, data file, simulator, clock and ports, and most of
// a test's time is spent waiting on hppd's timers and jobs. So a test must
// not change process-wide state (environment variables, the working
// directory, GOGC), and state the tests share is keyed by test or atomic
// (backendVars, keyN). make test runs them with -parallel 4.
type env struct {
	t      *testing.T
	te     *testenv.Env
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
	// klarnaHTTP carries hppd's Klarna calls (nil: the client's default).
	klarnaHTTP *http.Client
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
	// klarnaHTTP carries hppd's Klarna calls (default: the client's own).
	klarnaHTTP *http.Client
}

func newEnvWith(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.transport == nil {
		o.transport = validating{t: t, next: http.DefaultTransport}
	}
	vars := map[string]string{}
	maps.Copy(vars, varsOf(t)) // the store (backends_test.go)
	maps.Copy(vars, o.vars)
	te := testenv.New(t, testenv.Options{Vars: vars, Logger: o.logger, SimUser: o.simUser, SimPass: o.simPass,
		Seed: o.seed, Emitter: o.emitter, KlarnaHTTP: o.klarnaHTTP})
	return wrap(t, te, o.transport)
}

// wrap makes an env of a running test environment.
func wrap(t *testing.T, te *testenv.Env, transport http.RoundTripper) *env {
	e := &env{t: t, te: te, clock: te.Clock, sim: te.Sim, simURL: te.SimURL, dbPath: te.DBPath, vars: te.Vars,
		logger: te.Opts.Logger, emitter: te.Opts.Emitter, klarnaHTTP: te.Opts.KlarnaHTTP}
	e.http = &http.Client{Timeout: 20 * time.Second, Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	e.m, e.base = te.Main, te.Base
	return e
}

// start runs hppd on e.vars with e's logger, emitter and Klarna transport.
func (e *env) start() {
	e.t.Helper()
	e.te.Opts.Logger, e.te.Opts.Emitter, e.te.Opts.KlarnaHTTP = e.logger, e.emitter, e.klarnaHTTP
	e.te.Start()
	e.m, e.base = e.te.Main, e.te.Base
}

// restart stops hppd and starts it again on the same data file and address.
func (e *env) restart() {
	e.t.Helper()
	if err := e.m.Close(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.vars["HPPD_LISTEN"] = e.m.Addr() // same address: Klarna's URLs stay valid
	e.start()
}

func (e *env) tokenFor(storefront string) string { return e.te.Token(storefront) }

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
	testenv.Eventually(e.t, what, cond)
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
