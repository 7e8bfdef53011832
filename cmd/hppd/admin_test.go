package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/admin"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/testenv"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
	"github.com/hppd/hppd/webhook"
)

const testKey = testenv.Key

// clock is hppd's and the simulator's clock. It stands still unless a test
// moves it, so a failed job's backoff never falls due by itself.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// env is the simulator plus hppd started the way `hppd serve` starts it
// (newMain adds the admin API), and the environment the CLI sees.
type env struct {
	t      *testing.T
	clock  *clock
	sim    *klarnasim.Sim
	simURL string
	vars   map[string]string
	m      *daemon.Main
	base   string
	hc     *http.Client
}

// newEnv starts the simulator (internal/testenv) and, if admin is true,
// hppd as hppd serve builds it (newMain: with its admin API); if admin is
// false, hppd without one (a daemon that serves no socket).
func newEnv(t *testing.T, withAdmin bool) *env {
	t.Helper()
	return newEnvWith(t, withAdmin, nil)
}

// newEnvWith is newEnv with more variables (HPPD_DATABASE_URL, say).
func newEnvWith(t *testing.T, withAdmin bool, extra map[string]string) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{now: time.Now().UTC().Truncate(time.Second)}}
	o := testenv.Options{Seed: 11, Now: e.clock.Now, Vars: map[string]string{"HPPD_STALE_AFTER": ""}}
	maps.Copy(o.Vars, extra)
	if withAdmin {
		o.Main = func(cfg *config.Config) *daemon.Main {
			m := newMain(cfg, nil, nil)
			if !m.Admin {
				t.Fatal("hppd serve's daemon has no admin API")
			}
			return m
		}
	}
	te := testenv.New(t, o)
	e.sim, e.simURL, e.vars, e.m, e.base = te.Sim, te.SimURL, te.Vars, te.Main, te.Base
	t.Cleanup(func() { e.stop() })
	e.hc = &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

func (e *env) stop() {
	if err := e.m.Close(context.Background()); err != nil {
		e.t.Error(err)
	}
}

// getenv is the CLI's environment: the daemon's, changed by over ("" unsets).
func (e *env) getenv(over map[string]string) func(string) string {
	vars := maps.Clone(e.vars)
	maps.Copy(vars, over)
	return func(k string) string { return vars[k] }
}

// cli runs the hppd command line and returns what it printed.
func (e *env) cli(over map[string]string, args ...string) (string, string, error) {
	e.t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, e.getenv(over), &out, &errb)
	return out.String(), errb.String(), err
}

// mustCLI runs the command line and fails the test on an error.
func (e *env) mustCLI(args ...string) string {
	e.t.Helper()
	out, errOut, err := e.cli(nil, args...)
	if err != nil {
		e.t.Fatalf("hppd %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (e *env) cliJSON(v any, args ...string) {
	e.t.Helper()
	out := e.mustCLI(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("hppd %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// post sends a storefront API request and decodes the answer.
func (e *env) post(storefront, path string, body any, key string) (int, map[string]any) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", e.base+path, bytes.NewReader(b))
	tok, err := webhook.IssueToken([]byte(testKey), storefront, "hppd", time.Hour, e.clock.Now())
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	json.Unmarshal(raw, &out)
	out["_raw"] = string(raw)
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
		"return_urls":         map[string]any{"success": "https://shop.example/ok", "failure": "https://shop.example/fail"},
	}
}

// createSession creates a hosted-page session; it returns "" on failure so
// that it can run outside the test goroutine.
func (e *env) createSession(storefront string) (id, hppID string, err error) {
	st, out := e.post(storefront, "/v1/sessions", purchase(10000), "")
	if st != http.StatusCreated {
		return "", "", fmt.Errorf("create session: %d %v", st, out["_raw"])
	}
	return out["id"].(string), out["klarna"].(map[string]any)["hpp_session_id"].(string), nil
}

func (e *env) mustSession(storefront string) (string, string) {
	e.t.Helper()
	id, hpp, err := e.createSession(storefront)
	if err != nil {
		e.t.Fatal(err)
	}
	return id, hpp
}

// eventually waits (bounded) for cond; a wait, not a speed assertion.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	testenv.Eventually(e.t, what, cond)
}

func TestAdminCLIReadsTheRunningDaemon(t *testing.T) {
	e := newEnv(t, true)
	var a []string
	for range 3 {
		id, _ := e.mustSession("shop-a")
		a = append(a, id)
		e.clock.Advance(time.Second)
	}
	b, _ := e.mustSession("shop-b")
	tok := e.sim.CreateToken("ok", 0)
	st, ch := e.post("shop-b", "/v1/charges", map[string]any{
		"customer_token": tok, "customer_present": false, "purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
		"order_amount": 5000, "order_tax_amount": 1000,
		"order_lines": []any{map[string]any{"type": "physical", "name": "Beans", "quantity": 1, "unit_price": 5000,
			"tax_rate": 2500, "total_amount": 5000, "total_tax_amount": 1000}},
	}, "charge-1")
	if st != http.StatusCreated || ch["status"] != "charged" {
		t.Fatalf("charge: %d %v", st, ch["_raw"])
	}
	chargeID := ch["id"].(string)

	// The daemon holds the data file, so these answers came over the socket.
	var all []admin.Session
	e.cliJSON(&all, "sessions", "list")
	var got []string
	for _, s := range all {
		got = append(got, s.ID)
	}
	if want := []string{b, a[2], a[1], a[0]}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("sessions list: %v, want newest first %v", got, want)
	}
	e.cliJSON(&all, "sessions", "list", "--storefront", "shop-a", "--limit", "2", "--status", "pending")
	if len(all) != 2 || all[0].ID != a[2] || all[1].ID != a[1] || all[0].Storefront != "shop-a" {
		t.Fatalf("shop-a, 2 pending: %+v", all)
	}
	table := e.mustCLI("sessions", "list")
	for _, id := range append(a, b) {
		if !strings.Contains(table, id) {
			t.Fatalf("table lacks %s:\n%s", id, table)
		}
	}
	if !strings.HasPrefix(table, "ID ") || !strings.Contains(table, "100.00 SEK") {
		t.Fatalf("table:\n%s", table)
	}
	show := e.mustCLI("sessions", "show", a[0])
	if !strings.Contains(show, "Storefront:") || !strings.Contains(show, "shop-a") || !strings.Contains(show, "HISTORY") {
		t.Fatalf("sessions show:\n%s", show)
	}
	if _, _, err := e.cli(nil, "sessions", "show", "ses_nope"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("unknown session: %v", err)
	}

	charges := e.mustCLI("charges", "list")
	var c admin.Charge
	e.cliJSON(&c, "charges", "show", chargeID)
	showC := e.mustCLI("charges", "show", chargeID)
	if c.ID != chargeID || c.Status != "charged" || c.Storefront != "shop-b" || c.CustomerToken != "****"+tok[len(tok)-4:] || len(c.Attempts) != 1 {
		t.Fatalf("charge %+v", c)
	}
	if !strings.Contains(charges, chargeID) || !strings.Contains(showC, "ATTEMPTS") || !strings.Contains(showC, c.Attempts[0].IdempotencyKey) {
		t.Fatalf("charges list:\n%s\nshow:\n%s", charges, showC)
	}
	for _, out := range []string{charges, showC} {
		if strings.Contains(out, tok) {
			t.Fatalf("a customer token in clear:\n%s", out)
		}
	}
}

func TestBackupWhileTheDaemonTakesSessions(t *testing.T) {
	e := newEnv(t, true)
	var (
		mu      sync.Mutex
		created []string
		loadErr error
	)
	snapshot := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), created...)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id, _, err := e.createSession(fmt.Sprintf("shop-%d", i%3))
			mu.Lock()
			if err != nil {
				loadErr = err
				mu.Unlock()
				return
			}
			created = append(created, id)
			mu.Unlock()
		}
	}()
	e.eventually("some sessions", func() bool { return len(snapshot()) >= 10 })

	dir := t.TempDir()
	first := filepath.Join(dir, "first.db")
	before := snapshot() // committed before the backup began: all must be in it
	out := e.mustCLI("backup", first)
	if !strings.Contains(out, "running hppd") {
		t.Fatalf("backup did not go through the daemon: %s", out)
	}
	e.eventually("sessions after the backup", func() bool { return len(snapshot()) >= len(before)+5 })
	close(stop)
	<-done
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	all := snapshot()

	inCopy := func(path string) map[string]bool {
		t.Helper()
		db, err := boltstore.Open(path, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Check(); err != nil {
			t.Fatalf("the copy fails the store's check: %v", err)
		}
		ids := map[string]bool{}
		if err := db.View(func(tx store.Tx) error {
			return tx.AllSessions(func(s *core.Session) error {
				ids[s.ID] = true
				return nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	got := inCopy(first)
	for _, id := range before {
		if !got[id] {
			t.Fatalf("session %s, created before the backup, is missing from it", id)
		}
	}
	if len(got) > len(all) {
		t.Fatalf("the copy holds %d sessions, only %d were created", len(got), len(all))
	}

	// FILE exists: refused without --force, replaced with it; then the copy
	// holds every session.
	if _, _, err := e.cli(nil, "backup", first); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("backup over an existing file: %v", err)
	}
	e.mustCLI("backup", "--force", first)
	got = inCopy(first)
	if len(got) != len(all) {
		t.Fatalf("copy holds %d sessions, %d were created", len(got), len(all))
	}
	for _, id := range all {
		if !got[id] {
			t.Fatalf("session %s missing from the copy", id)
		}
	}
	if _, _, err := e.cli(nil, "backup", e.vars["HPPD_DB"], "--force"); err == nil || !strings.Contains(err.Error(), "live data file") {
		t.Fatalf("backup onto the live file: %v", err)
	}
}

func TestJobsRetryPlacesTheOrder(t *testing.T) {
	e := newEnv(t, true)
	e.sim.SetFaults(klarnasim.Faults{Operations: map[string][]klarnasim.FaultRule{
		klarnasim.OpPlaceOrder: {{ErrorRate: 1, Status: http.StatusUnauthorized}},
	}})
	id, hpp := e.mustSession("shop-a")
	if _, _, err := e.sim.Act(hpp, "pay"); err != nil {
		t.Fatal(err)
	}
	jobID := "place_order/" + id
	var job admin.Job
	e.eventually("the place_order job to fail", func() bool {
		var jobs []admin.Job
		e.cliJSON(&jobs, "jobs", "list")
		for _, j := range jobs {
			if j.ID == jobID && j.LastError != "" {
				job = j
				return true
			}
		}
		return false
	})
	// The clock stands still, so the backoff keeps the job waiting.
	if job.Attempts < 1 || !job.DueAt.After(e.clock.Now()) || !strings.Contains(job.LastError, "401") {
		t.Fatalf("failed job %+v", job)
	}
	table := e.mustCLI("jobs", "list")
	if !strings.Contains(table, jobID) || !strings.Contains(table, "401") {
		t.Fatalf("jobs list:\n%s", table)
	}
	var s admin.Session
	e.cliJSON(&s, "sessions", "show", id)
	if s.Status != "authorized" {
		t.Fatalf("session %s before the retry", s.Status)
	}

	e.sim.SetFaults(klarnasim.Faults{})
	out := e.mustCLI("jobs", "retry", jobID)
	if !strings.Contains(out, jobID) || strings.Contains(out, "not running") {
		t.Fatalf("jobs retry: %s", out)
	}
	e.eventually("the order to be placed", func() bool {
		e.cliJSON(&s, "sessions", "show", id)
		return s.Status == "order_placed"
	})
	orders := 0
	for _, o := range e.sim.Orders() {
		if o.OrderID == s.OrderID {
			orders++
		}
	}
	if orders != 1 {
		t.Fatalf("klarna has %d orders for the session", orders)
	}
	var jobs []admin.Job
	e.cliJSON(&jobs, "jobs", "list")
	for _, j := range jobs {
		if j.ID == jobID {
			t.Fatalf("job still there: %+v", j)
		}
	}
	if _, _, err := e.cli(nil, "jobs", "retry", jobID); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("retry of a finished job: %v", err)
	}
}

// checks runs `hppd check --json` and returns its lines by name.
func (e *env) checks(over map[string]string) (map[string]admin.Check, string, error) {
	e.t.Helper()
	out, errOut, err := e.cli(over, "check", "--json")
	var list []admin.Check
	if jerr := json.Unmarshal([]byte(out), &list); jerr != nil {
		e.t.Fatalf("check --json: %v\n%s%s", jerr, out, errOut)
	}
	byName := map[string]admin.Check{}
	for _, c := range list {
		byName[c.Name] = c
	}
	table, _, _ := e.cli(over, "check")
	return byName, table, err
}

func TestCheck(t *testing.T) {
	e := newEnv(t, true)
	e.mustSession("shop-a")
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	for _, tc := range []struct {
		name   string
		over   map[string]string
		want   map[string]string // check name → result
		detail map[string]string // check name → part of the detail
	}{
		{"all good", nil,
			map[string]string{"configuration": "OK", "data file": "OK", "klarna credentials": "OK"},
			map[string]string{"data file": "1 sessions, 0 charges, 0 jobs (checked by the running hppd", "klarna credentials": "accepted"}},
		{"wrong password", map[string]string{"HPPD_KLARNA_PASSWORD": "wrong-password-xyz"},
			map[string]string{"configuration": "OK", "data file": "OK", "klarna credentials": "FAIL"},
			map[string]string{"klarna credentials": "refused"}},
		{"klarna unreachable", map[string]string{"HPPD_KLARNA_BASE_URL": closed.URL},
			map[string]string{"klarna credentials": "FAIL"},
			map[string]string{"klarna credentials": "unreachable"}},
		{"invalid configuration", map[string]string{"HPPD_KLARNA_TIMEOUT": "soon"},
			map[string]string{"configuration": "FAIL", "data file": "OK", "klarna credentials": "SKIP"},
			map[string]string{"configuration": "HPPD_KLARNA_TIMEOUT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, table, err := e.checks(tc.over)
			failed := false
			for name, want := range tc.want {
				if got[name].Result != want {
					t.Errorf("%s: %+v, want %s", name, got[name], want)
				}
				failed = failed || want == "FAIL"
			}
			for name, part := range tc.detail {
				if !strings.Contains(got[name].Detail, part) {
					t.Errorf("%s: detail %q lacks %q", name, got[name].Detail, part)
				}
			}
			if failed != (err != nil) {
				t.Errorf("exit error %v, a check failed: %v", err, failed)
			}
			if strings.Contains(table, "wrong-password-xyz") || !strings.HasPrefix(table, "CHECK") {
				t.Errorf("table:\n%s", table)
			}
		})
	}
	// With the daemon stopped the CLI checks the file itself.
	e.stop()
	got, _, err := e.checks(nil)
	if err != nil || got["data file"].Result != "OK" || !strings.Contains(got["data file"].Detail, e.vars["HPPD_DB"]+" is sound") ||
		!strings.Contains(got["data file"].Detail, "opened directly") {
		t.Fatalf("check without a daemon: %v %+v", err, got)
	}
}

func TestConfigCommandRedactsSecrets(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "klarna-password")
	const user, pass, key = "klarna-user-SECRET", "klarna-password-SECRET", "jwt-key-SECRET-0123456789abcdef0123"
	if err := os.WriteFile(pwFile, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"HPPD_KLARNA_USERNAME": user, "HPPD_KLARNA_PASSWORD_FILE": pwFile, "HPPD_JWT_HS256_KEY": key, "HPPD_LOG_LEVEL": "debug"}
	getenv := func(k string) string { return vars[k] }
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"config"}, getenv, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"config", "--json"}, getenv, &out, &errb); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{user, pass, key} {
		if strings.Contains(out.String()+errb.String(), secret) {
			t.Fatalf("a secret is shown:\n%s", out.String())
		}
	}
	for _, v := range config.Vars {
		if !strings.Contains(out.String(), v.Name) {
			t.Fatalf("%s not shown:\n%s", v.Name, out.String())
		}
	}
	// The effective re-read schedule, as a list.
	if !hasRow(out.String(), "HPPD_STALE_AFTER", "1m0s,2m0s,5m0s,10m0s,20m0s", "default") {
		t.Errorf("HPPD_STALE_AFTER row missing or not the default list:\n%s", out.String())
	}
	if !hasRow(out.String(), "HPPD_LOG_LEVEL", "debug", "env") || !hasRow(out.String(), "HPPD_KLARNA_PASSWORD", "<redacted>", "file") ||
		strings.Count(out.String(), "<redacted>") != 6 {
		t.Fatalf("config:\n%s", out.String())
	}

	// An invalid configuration names the variable, not the value.
	vars["HPPD_JWT_HS256_KEY"] = "short-SECRET-key"
	vars["HPPD_STALE_AFTER"] = "a while"
	out.Reset()
	err := run(context.Background(), []string{"config"}, getenv, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "HPPD_JWT_HS256_KEY") || !strings.Contains(err.Error(), "HPPD_STALE_AFTER") {
		t.Fatalf("invalid configuration: %v", err)
	}
	if strings.Contains(err.Error()+out.String(), "short-SECRET-key") {
		t.Fatalf("the error shows the secret: %v", err)
	}
}

// hasRow reports whether a table has a row of exactly these cells.
func hasRow(table string, cells ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		if strings.Join(strings.Fields(line), " ") == strings.Join(cells, " ") {
			return true
		}
	}
	return false
}

func TestCLIWithoutTheDaemon(t *testing.T) {
	e := newEnv(t, true)
	id, _ := e.mustSession("shop-a")
	e.stop()
	// Nobody listens on the socket now: the CLI opens the file itself.
	out := e.mustCLI("sessions", "list")
	if !strings.Contains(out, id) {
		t.Fatalf("sessions list from the file:\n%s", out)
	}
	out = e.mustCLI("jobs", "retry", "--all")
	if !strings.Contains(out, "no failing jobs") {
		t.Fatalf("jobs retry --all: %s", out)
	}
	backup := filepath.Join(t.TempDir(), "b.db")
	if out := e.mustCLI("backup", backup); !strings.Contains(out, "data file") {
		t.Fatalf("backup from the file: %s", out)
	}
	// No data file where HPPD_DB points: an error, and nothing created.
	missing := filepath.Join(t.TempDir(), "nope", "hppd.db")
	if _, _, err := e.cli(map[string]string{"HPPD_DB": missing, "HPPD_ADMIN_SOCKET": ""}, "sessions", "list"); err == nil || !strings.Contains(err.Error(), "no data file") {
		t.Fatalf("missing data file: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
		t.Fatal("the CLI created a data directory")
	}
}

func TestCLIAgainstADaemonWithoutSocket(t *testing.T) {
	e := newEnv(t, false)
	_, _, err := e.cli(nil, "sessions", "list")
	if err == nil || !strings.Contains(err.Error(), "in use by a running hppd") || !strings.Contains(err.Error(), "HPPD_ADMIN_SOCKET") {
		t.Fatalf("err %v", err)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, args := range [][]string{
		{"sessions"}, {"sessions", "frobnicate"}, {"sessions", "show"}, {"sessions", "list", "extra"},
		{"charges", "show", "a", "b"}, {"jobs"}, {"jobs", "retry"}, {"jobs", "retry", "x", "--all"},
		{"backup"}, {"config", "extra"}, {"sessions", "list", "--limit", "ten"},
	} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, getenv, &out, &errb); err == nil {
			t.Errorf("hppd %v: no error", args)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sessions", "charges", "jobs", "backup", "check", "config", "version"} {
		if !strings.Contains(out.String(), "\n  "+name) {
			t.Errorf("help lacks %s:\n%s", name, out.String())
		}
	}
}

func TestParseArgsTakesFlagsAnywhere(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  string
		json bool
	}{
		{[]string{"ID", "--json"}, "ID", true},
		{[]string{"--json", "ID"}, "ID", true},
		{[]string{"ID"}, "ID", false},
		{[]string{"--", "--json"}, "--json", false},
	} {
		fs := newFlags("t", io.Discard)
		asJSON := fs.Bool("json", false, "")
		pos, err := parseArgs(fs, tc.args)
		if err != nil || strings.Join(pos, " ") != tc.pos || *asJSON != tc.json {
			t.Errorf("%v: pos %v json %v err %v", tc.args, pos, *asJSON, err)
		}
	}
}

// `hppd serve --help` prints help and never starts a daemon; any other
// argument after serve is refused (serve takes no flags).
func TestServeTakesNoArguments(t *testing.T) {
	env := func(string) string { return "" }
	for _, help := range []string{"--help", "-h", "-help"} {
		var out, errw bytes.Buffer
		if err := run(context.Background(), []string{"serve", help}, env, &out, &errw); err != nil {
			t.Fatalf("serve %s: %v", help, err)
		}
		if !strings.Contains(out.String(), "usage: hppd serve") {
			t.Fatalf("serve %s printed %q", help, out.String())
		}
	}
	var out, errw bytes.Buffer
	err := run(context.Background(), []string{"serve", "--listen", ":9"}, env, &out, &errw)
	if err == nil || !strings.Contains(err.Error(), `unexpected argument "--listen"`) {
		t.Fatalf("serve --listen: %v", err)
	}
}
