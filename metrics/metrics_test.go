package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/metrics"
	"github.com/hppd/hppd/poller"
)

func TestScrapeAfterOneSession(t *testing.T) {
	e := newEnv(t)
	e.createSession()
	f := e.scrape()

	f.want(t, 1, "hppd_sessions", "status", "pending")
	f.want(t, 0, "hppd_sessions", "status", "authorized")
	f.want(t, 0, "hppd_charges", "status", "charged")
	f.want(t, 1, "hppd_klarna_requests_total", "operation", "create_kp_session", "status", "200")
	f.want(t, 1, "hppd_klarna_requests_total", "operation", "create_hpp_session", "status", "201")
	f.want(t, 1, "hppd_klarna_request_duration_seconds", "operation", "create_kp_session")
	f.want(t, 1, "hppd_klarna_up")
	f.want(t, 1, "hppd_http_requests_total", "route", "/v1/sessions", "code", "201")
	f.want(t, 1, "hppd_http_request_duration_seconds", "route", "/v1/sessions")
	f.want(t, 0, "hppd_oldest_unplaced_authorization_seconds")
	f.want(t, 1, "hppd_store_up")
	f.want(t, 1, "hppd_poll_scheduled")
	f.want(t, 1, "hppd_build_info", "version", daemon.Version)
	for _, r := range []string{"accepted", "duplicate", "rejected", "resync"} {
		f.want(t, 0, "hppd_callbacks_total", "result", r)
	}
	for _, n := range []string{"hppd_orders_placed_total", "hppd_orders_failed_total", "hppd_fallbacks_started_total", "hppd_tokens_recovered_total", "hppd_jobs_failed_total"} {
		f.want(t, 0, n)
	}
	f.want(t, 0, "hppd_charges_outcomes_total", "outcome", "charged")
	f.want(t, 0, "hppd_poll_runs_total", "result", "ok")
	// The session's record was committed to the data file.
	if n, _ := f.get("hppd_store_commit_duration_seconds"); n < 1 {
		t.Errorf("%v commits reported after a session was stored", n)
	}
	if calls, _ := f.get("hppd_store_commit_calls_total"); calls < 1 {
		t.Errorf("%v write calls reported after a session was stored", calls)
	}
	// The Go and process collectors of the own registry.
	for _, n := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := f[n]; !ok {
			t.Errorf("%s missing", n)
		}
	}
	// The poller has not run: its last-run series are absent, not zero.
	for _, n := range []string{"hppd_poll_last_run_timestamp_seconds", "hppd_poll_lag_seconds"} {
		if _, ok := f[n]; ok {
			t.Errorf("%s reported before the first poll run", n)
		}
	}

	// The route label is the pattern: ids never become labels.
	st, _ := e.do("GET", "/v1/sessions/ses_doesnotexist", nil)
	if st != http.StatusNotFound {
		t.Fatalf("unknown session: %d", st)
	}
	f = e.scrape()
	f.want(t, 1, "hppd_http_requests_total", "route", "/v1/sessions/:id", "code", "404")
	for _, m := range f["hppd_http_requests_total"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if strings.Contains(lp.GetValue(), "ses_") {
				t.Errorf("an id became a label value: %s", lp.GetValue())
			}
		}
	}
}

func TestPollRunIsRecorded(t *testing.T) {
	e := newEnv(t)
	e.createSession()
	e.clock.Advance(3 * time.Minute) // past HPPD_STALE_AFTER: the session is due for a re-read
	r := e.m.Poller.RunOnce(context.Background())
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	f := e.scrape()
	f.want(t, 1, "hppd_poll_runs_total", "result", "ok")
	f.want(t, 0, "hppd_poll_runs_total", "result", "error")
	f.want(t, 1, "hppd_poll_duration_seconds")
	f.want(t, float64(r.Synced), "hppd_poll_items_total", "kind", "synced")
	if r.Synced != 1 {
		t.Errorf("poll run synced %d sessions, want 1", r.Synced)
	}
	last, ok := f.get("hppd_poll_last_run_timestamp_seconds")
	if !ok {
		t.Fatal("hppd_poll_last_run_timestamp_seconds missing after a run")
	}
	if want := float64(r.Started.Add(r.Duration).UnixNano()) / 1e9; last != want {
		t.Errorf("last run %v, want %v", last, want)
	}
	if _, ok := f.get("hppd_poll_lag_seconds"); !ok {
		t.Error("hppd_poll_lag_seconds missing after a run")
	}
}

// An authorization whose order Klarna will not take shows its age, the job
// waiting and its failed attempts; once the order is placed the age is 0
// again.
func TestOldestUnplacedAuthorization(t *testing.T) {
	e := newEnv(t)
	s := e.createSession()
	id := s["id"].(string)
	e.sim.SetFaults(klarnasim.Faults{Operations: map[string][]klarnasim.FaultRule{
		klarnasim.OpPlaceOrder: {{ErrorRate: 1, Status: 503}},
	}})
	if _, _, err := e.sim.Act(hppID(s), klarnasim.ActionPay); err != nil {
		t.Fatal(err)
	}
	e.eventually("the session to be authorized with a failed placement", func() bool {
		f := e.scrape()
		failed, _ := f.get("hppd_jobs_failed_total")
		return e.sessionStatus(id) == "authorized" && failed >= 1
	})
	e.clock.Advance(10 * time.Minute)
	f := e.scrape()
	f.want(t, 1, "hppd_sessions", "status", "authorized")
	f.want(t, 1, "hppd_jobs_waiting", "kind", "place_order")
	f.want(t, 0, "hppd_klarna_up")
	if n, _ := f.get("hppd_klarna_requests_total", "operation", "place_order", "status", "503"); n < 1 {
		t.Errorf("place_order 503 attempts: %v", n)
	}
	if n, _ := f.get("hppd_callbacks_total", "result", "accepted"); n < 1 {
		t.Errorf("accepted callbacks: %v", n)
	}
	age, _ := f.get("hppd_oldest_unplaced_authorization_seconds")
	if age < 600 || age > 3600 {
		t.Errorf("oldest unplaced authorization %vs, want 600s and a little", age)
	}

	e.sim.SetFaults(klarnasim.Faults{})
	e.m.Poller.RunOnce(context.Background())
	e.eventually("the order to be placed", func() bool { return e.sessionStatus(id) == "order_placed" })
	f = e.scrape()
	f.want(t, 0, "hppd_oldest_unplaced_authorization_seconds")
	f.want(t, 1, "hppd_orders_placed_total")
	f.want(t, 1, "hppd_sessions", "status", "order_placed")
	f.want(t, 0, "hppd_jobs_waiting", "kind", "place_order")
	f.want(t, 1, "hppd_klarna_up")
}

// Klarna down shows in the metrics but leaves hppd ready: callbacks must
// still be taken.
func TestKlarnaDownKeepsHppdReady(t *testing.T) {
	e := newEnv(t)
	e.sim.SetFaults(klarnasim.Faults{Operations: map[string][]klarnasim.FaultRule{
		klarnasim.OpAll: {{ErrorRate: 1, Status: 503}},
	}})
	if st, out := e.do("POST", "/v1/sessions", sessionBody()); st/100 == 2 {
		t.Fatalf("create session with Klarna down: %d %v", st, out["_raw"])
	}
	f := e.scrape()
	f.want(t, 0, "hppd_klarna_up")
	// Session creation is resent on 5xx: every attempt counts.
	f.want(t, 4, "hppd_klarna_requests_total", "operation", "create_kp_session", "status", "503")
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(e.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s with Klarna down: %d, want 200", path, resp.StatusCode)
		}
	}
}

func TestRejectedCallbackIsCounted(t *testing.T) {
	e := newEnv(t)
	s := e.createSession()
	id := s["id"].(string)
	body := `{"event_id":"e1","session":{"session_id":"` + hppID(s) + `","status":"COMPLETED"}}`
	resp, err := http.Post(e.base+"/klarna/hpp/"+id+"/status?secret=forged-secret-4711&hppId="+hppID(s), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		t.Fatalf("forged callback answered %d", resp.StatusCode)
	}
	f := e.scrape()
	f.want(t, 1, "hppd_callbacks_total", "result", "rejected")
	f.want(t, 0, "hppd_callbacks_total", "result", "accepted")
	f.want(t, 1, "hppd_sessions", "status", "pending")
	f.want(t, 1, "hppd_http_requests_total", "route", "/klarna/hpp/:id/status", "code", "404")
	if strings.Contains(scrapeText(t, e), "forged-secret-4711") {
		t.Error("the presented secret appears in /metrics")
	}
}

func scrapeText(t *testing.T, e *env) string {
	t.Helper()
	resp, err := http.Get(e.metricsBase + metrics.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Before Run the Main has no store, service or poller: the collector
// reports none of their series and does not fail. After Close the store
// cannot be read: hppd_store_up says so.
func TestBeforeRunAndAfterClose(t *testing.T) {
	x := metrics.New("test")
	f := gather(t, x)
	for _, n := range []string{"hppd_sessions", "hppd_callbacks_total", "hppd_poll_scheduled", "hppd_klarna_up", "hppd_store_up"} {
		if _, ok := f[n]; ok {
			t.Errorf("%s reported before Run", n)
		}
	}
	f.want(t, 1, "hppd_build_info")

	e := newEnv(t)
	if err := e.m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	f = gather(t, e.x)
	f.want(t, 0, "hppd_store_up")
	f.want(t, 0, "hppd_poll_scheduled")
	if _, ok := f["hppd_sessions"]; ok {
		t.Error("hppd_sessions reported from a closed store")
	}
}

func TestObserveKlarnaStatusAndUp(t *testing.T) {
	cases := []struct {
		name   string
		status int
		err    error
		label  string
		up     float64
	}{
		{"ok", 200, nil, "200", 1},
		{"not found is an answer", 404, errors.New("404"), "404", 1},
		{"declined is an answer", 403, errors.New("403"), "403", 1},
		{"rate limited", 429, errors.New("429"), "429", 0},
		{"server error", 502, errors.New("502"), "502", 0},
		{"no answer", 0, errors.New("dial tcp: connection refused"), "error", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := metrics.New("test")
			x.ObserveKlarna("read_hpp_session", c.status, 30*time.Millisecond, c.err)
			f := gather(t, x)
			f.want(t, 1, "hppd_klarna_requests_total", "operation", "read_hpp_session", "status", c.label)
			f.want(t, c.up, "hppd_klarna_up")
			f.want(t, 1, "hppd_klarna_request_duration_seconds", "operation", "read_hpp_session")
		})
	}
}

func TestObservePollError(t *testing.T) {
	x := metrics.New("test")
	x.ObservePoll(poller.Result{Started: time.Now(), Duration: time.Second, Jobs: 3, Pruned: 2, Err: errors.New("store")})
	f := gather(t, x)
	f.want(t, 1, "hppd_poll_runs_total", "result", "error")
	f.want(t, 0, "hppd_poll_runs_total", "result", "ok")
	f.want(t, 3, "hppd_poll_items_total", "kind", "jobs")
	f.want(t, 2, "hppd_poll_items_total", "kind", "pruned")
}

func TestObserveCommit(t *testing.T) {
	x := metrics.New("test")
	x.ObserveCommit(24, time.Millisecond, 3*time.Millisecond, 66)
	x.ObserveCommit(1, 0, 500*time.Microsecond, 4)
	f := gather(t, x)
	f.want(t, 2, "hppd_store_commit_duration_seconds")
	f.want(t, 25, "hppd_store_commit_calls_total")
	f.want(t, 70, "hppd_store_commit_writes_total")
	if busy, _ := f.get("hppd_store_writer_busy_seconds_total"); busy < 0.00449 || busy > 0.00451 {
		t.Errorf("writer busy %vs, want 0.0045", busy)
	}
}

// A pending session whose next check has come is a due re-read: it shows in
// the backlog with how long it has been due, until a re-read is done.
func TestRereadBacklog(t *testing.T) {
	e := newEnv(t)
	e.createSession()
	f := e.scrape()
	f.want(t, 0, "hppd_reread_backlog")
	f.want(t, 0, "hppd_reread_backlog_oldest_seconds")
	f.want(t, 1200, "hppd_reread_schedule_max_gap_seconds") // default 1m,2m,5m,10m,20m

	// The first gap is 1m: 4 minutes later the re-read has been due for 3.
	e.clock.Advance(4 * time.Minute)
	f = e.scrape()
	f.want(t, 1, "hppd_reread_backlog")
	if age, _ := f.get("hppd_reread_backlog_oldest_seconds"); age < 180 || age > 240 {
		t.Errorf("oldest due re-read %vs, want 180s and a little", age)
	}

	reads := countOp(e.sim.Requests(), klarnasim.OpReadHPPSession)
	if r := e.m.Poller.RunOnce(context.Background()); r.Err != nil || r.Synced != 1 {
		t.Fatalf("poll run: synced %d, err %v", r.Synced, r.Err)
	}
	e.eventually("the re-read to be done", func() bool {
		f := e.scrape()
		n, _ := f.get("hppd_reread_backlog")
		return n == 0 && countOp(e.sim.Requests(), klarnasim.OpReadHPPSession) > reads
	})
	f = e.scrape()
	f.want(t, 0, "hppd_reread_backlog_oldest_seconds")
	f.want(t, 0, "hppd_jobs_waiting", "kind", "reread_session")
}

func countOp(rs []klarnasim.RequestRecord, op string) int {
	n := 0
	for _, r := range rs {
		if r.Operation == op {
			n++
		}
	}
	return n
}
