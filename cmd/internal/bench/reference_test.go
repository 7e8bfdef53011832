package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// The minimal durable server stores what hppd stores for benchmark 1's
// callbacks. Bad input gets a 4xx naming the field and changes nothing; a
// repeated event is acknowledged as a duplicate. Under load every callback
// it answered 2xx is in its file (event marked, session status), the file
// passes store.Check, and its stats count the calls its commits carried.
func TestDurableHandler(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reference.db")
	targets, err := BuildFile(path, Plan{Sessions: 400, Watched: 100, EventsPerSession: 2, Now: time.Now().Add(time.Hour), Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	var counters referenceCounters
	db, err := boltstore.Open(path, boltstore.Options{OnCommit: counters.commit})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(DurableHandler(db, counters.snapshot))
	post := func(id, body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/klarna/hpp/"+id+"/status", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: answer %q is not JSON", body, b)
		}
		return resp.StatusCode, m
	}
	tg := targets[0]
	before := readSession(t, db, tg.ID)
	cb := func(event, hppID, status string) string {
		return `{"event_id":"` + event + `","session":{"session_id":"` + hppID + `","status":"` + status + `"}}`
	}
	for _, c := range []struct {
		id, body, field string
		status          int
	}{
		{tg.ID, `{"event_id":`, "body", http.StatusBadRequest},
		{tg.ID, `{"event_id":"` + strings.Repeat("x", 64<<10) + `"}`, "body", http.StatusRequestEntityTooLarge},
		{tg.ID, `{"session":{"session_id":"` + tg.HPPID + `","status":"BACK"}}`, "event_id", http.StatusBadRequest},
		{"ses_nobody", cb("ev-x", tg.HPPID, "BACK"), "id", http.StatusNotFound},
		{tg.ID, cb("ev-x", "hpp-other", "BACK"), "session.session_id", http.StatusNotFound},
		{tg.ID, cb("ev-x", tg.HPPID, core.KlarnaCompleted), "session.status", http.StatusUnprocessableEntity},
	} {
		status, m := post(c.id, c.body)
		if status != c.status || m["field"] != c.field {
			t.Errorf("%s %s: %d %v, want %d naming %s", c.id, c.body, status, m, c.status, c.field)
		}
	}
	if after := readSession(t, db, tg.ID); after.KlarnaStatus != before.KlarnaStatus || len(after.History) != len(before.History) {
		t.Fatalf("refused callbacks changed the session: %s/%d → %s/%d", before.KlarnaStatus, len(before.History), after.KlarnaStatus, len(after.History))
	}
	if st := getStats(t, srv.URL); st.calls != 0 {
		t.Fatalf("refused callbacks reached the writer: %+v", st)
	}
	// A new event, then the same event again.
	next := core.KlarnaBack
	if before.KlarnaStatus == core.KlarnaBack {
		next = core.KlarnaInProgress
	}
	for i, dup := range []bool{false, true} {
		status, m := post(tg.ID, cb("ev-again", tg.HPPID, next))
		if status != http.StatusOK || m["duplicate"] != dup || m["status"] != "accepted" {
			t.Fatalf("callback %d: %d %v, want 200 with duplicate %v", i+1, status, m, dup)
		}
	}
	if after := readSession(t, db, tg.ID); after.KlarnaStatus != next || len(after.History) != len(before.History)+1 {
		t.Fatalf("after one new event the session is %s with %d history entries, was %s with %d", after.KlarnaStatus, len(after.History), before.KlarnaStatus, len(before.History))
	}

	// Then the load, after which every callback answered 2xx is looked up.
	st0 := getStats(t, srv.URL)
	g := newCallbackGen(targets, 4, 0)
	res, err := Load(context.Background(), LoadConfig{
		Addr: strings.TrimPrefix(srv.URL, "http://"), Conns: 4, Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond,
		Next: g.next, Answered: g.answered,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK == 0 || res.OK != res.Requests || res.Errors != 0 {
		t.Fatalf("load: %d answered, %d of them 2xx, %d errors", res.Requests, res.OK, res.Errors)
	}
	st := getStats(t, srv.URL)
	acked := 0
	for _, a := range g.acked {
		acked += len(a)
	}
	if st.calls-st0.calls != float64(acked) || st.commits == 0 || st.commits > st.calls || st.writes < st.commits || st.busyS < st.commitS || st.commitS <= 0 {
		t.Fatalf("stats %+v after %d callbacks answered 2xx", st, acked)
	}

	srv.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := g.verify(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if n != acked {
		t.Fatalf("%d callbacks checked, %d answered 2xx", n, acked)
	}
}

// getStats reads the server's writer totals the way benchmark 1 does.
func getStats(t *testing.T, url string) *writerCounters {
	t.Helper()
	c, err := scrapeReference(context.Background(), strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readSession(t *testing.T, db store.Store, id string) *core.Session {
	t.Helper()
	var s *core.Session
	if err := db.View(func(tx store.Tx) (err error) { s, err = tx.Session(id); return err }); err != nil {
		t.Fatal(err)
	}
	return s
}

// The analysis says which side of the targets the minimal durable server
// was on: under them, no server storing as hppd does reached them; over
// them, hppd's own path kept hppd under.
func TestReferenceAnalysis(t *testing.T) {
	lat := NewLatencies([]time.Duration{time.Millisecond})
	load := func(n int) *LoadResult { return &LoadResult{Requests: n, OK: n, Elapsed: time.Second, Latencies: lat} }
	cb := func(ceiling, ref, hppd int) *CallbackResult {
		return &CallbackResult{Runs: []CallbackRun{{Ceiling: load(ceiling), Reference: load(ref), HPPD: load(hppd)}}}
	}
	out := referenceAnalysis(cb(40000, 9000, 8100), 8100)
	for _, want := range []string{"took 9000 callbacks/s", "0.23 of the ceiling", "**hppd reached 90% (1 run) of it**", "no server that stores a callback as hppd does reached 10000/s", "out of reach for it too"} {
		if !strings.Contains(out, want) {
			t.Errorf("analysis lacks %q:\n%s", want, out)
		}
	}
	out = referenceAnalysis(cb(30000, 12000, 9000), 9000)
	if !strings.Contains(out, "hppd's own path is what kept it under") || strings.Contains(out, "no server that stores") || strings.Contains(out, "out of reach") {
		t.Errorf("a minimal server over both targets:\n%s", out)
	}
	if hasReference(&CallbackResult{Runs: []CallbackRun{{HPPD: load(1)}}}) || hasReference(&CallbackResult{}) {
		t.Error("runs without the minimal durable server count as having it")
	}
}

// Benchmark 1's run of the minimal durable server, on a small file: the
// real hppd-bench process takes callbacks on 8 connections and is killed
// while they are still sending; every callback it answered 2xx is then in
// its file, and its writer's figures and CPU were read over the window.
func TestReferenceRunSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the hppd-bench binary")
	}
	dir := t.TempDir()
	cfg := &CallbackConfig{Self: buildCmd(t, dir, "hppd-bench"), Conns: 8, Warmup: 200 * time.Millisecond, Duration: time.Second}
	seed := filepath.Join(dir, "seed.db")
	targets, err := BuildFile(seed, Plan{Sessions: 2000, Watched: 500, EventsPerSession: 2, Now: time.Now().Add(time.Hour), Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	run := &CallbackRun{}
	if err := referenceRun(context.Background(), cfg, run, dir, seed, targets, newCallbackGen(targets, cfg.Conns, 0)); err != nil {
		t.Fatal(err)
	}
	if run.RefVerified != nil {
		t.Fatal(run.RefVerified)
	}
	if r := run.Reference; r.OK == 0 || run.RefAcked < r.OK || r.OK != r.Requests {
		t.Fatalf("%d answered in the window, %d of them 2xx; %d checked in the file", r.Requests, r.OK, run.RefAcked)
	}
	if run.RefCPU <= 0 || run.RefCPUPerCallback() <= 0 {
		t.Errorf("CPU over the window: %.2f s", run.RefCPU)
	}
	if w := run.RefWriter; w == nil || w.Commits == 0 || w.Calls < w.Commits || w.BusySeconds <= 0 || w.Window <= 0 {
		t.Fatalf("writer over the window: %+v (%v)", w, run.RefWriterErr)
	}
	if _, err := os.Stat(filepath.Join(dir, "reference.db")); !os.IsNotExist(err) {
		t.Errorf("the run's copy of the data file is left behind: %v", err)
	}
}
