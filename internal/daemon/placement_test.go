package daemon_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/events"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// requestIndex is the position of the first request of op at the simulator,
// -1 when there is none.
func requestIndex(rs []klarnasim.RequestRecord, op string) int {
	for i, r := range rs {
		if r.Operation == op {
			return i
		}
	}
	return -1
}

// Placement first (issue 11): with far more routine re-reads due than the
// "other" budget can take, a paid session's confirming read and its order go
// ahead of the queued re-reads, in the job runner and at the rate limiter.
// The assertion is about order at the simulator, not about time.
func TestOrderIsPlacedAheadOfARereadStorm(t *testing.T) {
	t.Parallel()
	const pending = 120
	e := newEnv(t, map[string]string{
		"HPPD_KLARNA_CREATE_RATE": "38", // the simulator's production limit is 40
		"HPPD_KLARNA_OTHER_RATE":  "8",  // 120 due re-reads: 15 s of the whole budget
		"HPPD_REREAD_SHARE":       "1",  // re-reads may take all of it: the limiter's priority must hold
	})
	var wg sync.WaitGroup
	sessions := make([]map[string]any, pending+1)
	for i := range sessions {
		wg.Add(1)
		go func() { defer wg.Done(); sessions[i] = e.createSessionNoFatal("NONE") }()
	}
	wg.Wait()
	for i, s := range sessions {
		if s == nil {
			t.Fatalf("session %d not created", i)
		}
	}
	paid := sessions[pending]

	e.clock.Advance(3 * time.Minute) // past HPPD_STALE_AFTER (2m): every session is due
	if r := e.m.Poller.RunOnce(context.Background()); r.Err != nil || r.Synced != pending+1 {
		t.Fatalf("poll run: synced %d, err %v", r.Synced, r.Err)
	}
	before := requestIndex(e.sim.Requests(), klarnasim.OpReadHPPSession)
	if before < 0 {
		// The storm has not reached Klarna yet: wait for its first read.
		e.eventually("the first routine re-read", func() bool { return requestIndex(e.sim.Requests(), klarnasim.OpReadHPPSession) >= 0 })
	}

	// The shopper pays; the browser never comes back (only the callback).
	e.act(hppID(paid), "pay")
	id := paid["id"].(string)
	e.waitStatus(id, "order_placed")

	rs := e.sim.Requests()
	at := requestIndex(rs, klarnasim.OpPlaceOrder)
	if at < 0 {
		t.Fatal("no place_order at the simulator")
	}
	readsBefore := 0
	for _, r := range rs[:at] {
		if r.Operation == klarnasim.OpReadHPPSession {
			readsBefore++
		}
	}
	t.Logf("%d HPP reads before place_order (%d routine re-reads queued)", readsBefore, pending+1)
	// The paid session's confirming read is one of them; a fair share of the
	// budget would have put place_order behind all 121.
	if readsBefore > pending/4 {
		t.Errorf("%d HPP reads reached Klarna before place_order; want the order ahead of most of the %d queued re-reads", readsBefore, pending)
	}
	// The storm was still on when the order went out.
	var waiting int
	if err := e.m.DB.View(func(tx store.Tx) error {
		_, _, jobs, err := tx.Counts()
		waiting = jobs[core.JobRereadSession]
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if waiting < pending/2 {
		t.Errorf("only %d routine re-reads still queued after the order; the storm did not hold", waiting)
	}
}

// silentEvents restarts hppd with shop-a's storefront events going to an
// endpoint that takes each request and answers none until release is closed.
// It returns the emitter and the counts of requests arrived and answered.
func (e *env) silentEvents() (em *events.Emitter, arrived, answered *atomic.Int32, release chan struct{}) {
	e.t.Helper()
	arrived, answered = new(atomic.Int32), new(atomic.Int32)
	release = make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		answered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	e.t.Cleanup(hang.Close)
	ec, err := events.LoadFile(shopAEventsFile(e.t, hang.URL+"/events"))
	if err != nil {
		e.t.Fatal(err)
	}
	em = events.New(ec, events.Options{Now: e.clock.Now, Timeout: time.Hour})
	e.emitter = em
	e.restart()
	var once sync.Once
	e.t.Cleanup(func() { once.Do(func() { close(release) }) }) // runs first: the deliveries end
	return em, arrived, answered, release
}

// queueEvents writes n events about session id for shop-a, due now.
func (e *env) queueEvents(em *events.Emitter, id string, n int) {
	e.t.Helper()
	if err := e.m.DB.Update(func(tx store.Tx) error {
		sess, err := tx.Session(id)
		if err != nil {
			return err
		}
		for range n {
			j, err := em.SessionEvent(sess, events.SessionCancelled, e.clock.Now())
			if err != nil {
				return err
			}
			if _, err := tx.AddJob(j); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	e.m.Service.Wake()
}

// No one slows anyone (issue 17): a storefront event endpoint that never
// answers holds event workers only; order placement has workers of its own.
func TestSilentEventEndpointDoesNotDelayPlacement(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	em, arrived, answered, _ := e.silentEvents()
	s := e.createSession("NONE")
	e.queueEvents(em, s["id"].(string), 48) // issue 17's figure
	e.eventually("event deliveries to hang", func() bool { return arrived.Load() > 0 })

	e.follow(e.act(hppID(s), "pay"))
	e.waitStatus(s["id"].(string), "order_placed")
	if n := answered.Load(); n != 0 {
		t.Fatalf("%d event deliveries ended before the order was placed; the order must not have waited for them", n)
	}
	if n := arrived.Load(); n > 8 {
		t.Errorf("%d deliveries in flight at once; the event lane has 8 workers", n)
	}
}

// Close stays within its deadline (HPPD_SHUTDOWN_TIMEOUT) although event
// deliveries hang: past it they are cancelled, recorded as failed attempts,
// and still in the store for the next start.
func TestCloseIsBoundedWithHangingDeliveries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	em, arrived, _, _ := e.silentEvents()
	s := e.createSession("NONE")
	e.queueEvents(em, s["id"].(string), 12)
	e.eventually("event deliveries to hang", func() bool { return arrived.Load() >= 8 })

	// 2 s leaves phase 2 its 200 ms (shutdown.go's abortShare) for the eight
	// cancelled deliveries to record their attempts, even on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- e.m.Close(ctx) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second): // a hang, not a speed limit: the deliveries wait an hour
		t.Fatal("Close did not return after its deadline; deliveries held it")
	}
	db, err := boltstore.Open(e.dbPath, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var queued, attempted int
	if err := db.View(func(tx store.Tx) error {
		return tx.AllJobs(func(j *core.Job) error {
			if j.Kind == core.JobDeliverEvent {
				queued++
				if j.Attempts > 0 {
					attempted++
					// Cut off by Close, not by a delivery timeout.
					if !strings.Contains(j.LastError, "context canceled") {
						t.Errorf("delivery %s ended with %q, want it cancelled by Close", j.ID, j.LastError)
					}
				}
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if queued != 12 || attempted < 8 {
		t.Fatalf("after Close: %d deliveries queued (want 12), %d with a recorded attempt (want the 8 cut off)", queued, attempted)
	}
}

// createSessionNoFatal creates a session from any goroutine; nil on failure.
func (e *env) createSessionNoFatal(mode string) map[string]any {
	st, out := e.doNoFatal("POST", "/v1/sessions", sessionBody(10000, mode))
	if st != http.StatusCreated {
		return nil
	}
	return out
}

// Budget awareness (issue 11): routine re-reads wait for their share of the
// "other" budget (HPPD_REREAD_SHARE), confirming reads and placements do not.
// A share of 0.0002 of 50/s is one routine re-read per 100 s: of 30 due
// sessions exactly one is read during the test, while a paid session is read
// and placed.
func TestRereadsKeepToTheirShare(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"HPPD_REREAD_SHARE": "0.0002", "HPPD_KLARNA_CREATE_RATE": "38"})
	var idle []map[string]any
	for range 30 {
		idle = append(idle, e.createSession("NONE"))
	}
	e.clock.Advance(3 * time.Minute)
	if r := e.m.Poller.RunOnce(context.Background()); r.Err != nil || r.Synced != 30 {
		t.Fatalf("poll run: synced %d, err %v", r.Synced, r.Err)
	}
	e.eventually("the one routine re-read the share allows", func() bool { return e.readsOf(idle) >= 1 })
	// Created after the poll, so the share's one read went to an idle
	// session and this one is not due: only its confirming read reads it.
	paid := e.createSession("NONE")

	e.follow(e.act(hppID(paid), "pay"))
	e.waitStatus(paid["id"].(string), "order_placed")
	if n := e.readsOf(idle); n != 1 {
		t.Fatalf("%d routine re-reads reached Klarna, want 1 (the share's burst)", n)
	}
}

// readsOf counts the HPP session reads at the simulator of these sessions.
func (e *env) readsOf(sessions []map[string]any) int {
	ids := map[string]bool{}
	for _, s := range sessions {
		ids[hppID(s)] = true
	}
	n := 0
	for _, r := range e.sim.Requests() {
		if r.Operation == klarnasim.OpReadHPPSession && ids[filepath.Base(r.Path)] {
			n++
		}
	}
	return n
}

// The re-read schedule end to end: each routine re-read moves the session one
// gap along HPPD_STALE_AFTER, the position survives a restart, and a redirect
// (news) starts the schedule again.
func TestRereadScheduleBacksOffDurably(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"HPPD_STALE_AFTER": "1m,5m,30m"})
	s := e.createSession("NONE")
	id := s["id"].(string)
	stored := func() *core.Session {
		var sess *core.Session
		if err := e.m.DB.View(func(tx store.Tx) error {
			var err error
			sess, err = tx.Session(id)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return sess
	}
	for i, gap := range []time.Duration{5 * time.Minute, 30 * time.Minute, 30 * time.Minute} {
		e.clock.Advance(stored().CheckAt.Sub(e.clock.Now()) + time.Second)
		if r := e.m.Poller.RunOnce(context.Background()); r.Err != nil || r.Synced != 1 {
			t.Fatalf("re-read %d: synced %d, err %v", i+1, r.Synced, r.Err)
		}
		e.eventually("the re-read to be done", e.noJobDue)
		got := stored()
		if got.Rereads != i+1 {
			t.Fatalf("after re-read %d: Rereads %d", i+1, got.Rereads)
		}
		if d := got.CheckAt.Sub(e.clock.Now()); d > gap || d < gap-time.Minute {
			t.Fatalf("after re-read %d: next check in %v, want %v", i+1, d, gap)
		}
	}
	e.restart()
	if got := stored(); got.Rereads != 3 {
		t.Fatalf("after a restart: Rereads %d, want 3", got.Rereads)
	}
	// The shopper comes back (a redirect: news).
	e.follow(e.act(hppID(s), "back"))
	got := stored()
	if d := got.CheckAt.Sub(e.clock.Now()); got.Rereads != 0 || d > time.Minute {
		t.Fatalf("after a redirect: Rereads %d, next check in %v; want the schedule restarted", got.Rereads, d)
	}
}
