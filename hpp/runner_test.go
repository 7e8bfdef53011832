package hpp

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// blockingKlarna places orders; the order of the token in hold waits until
// release is closed (or the call is cancelled).
type blockingKlarna struct {
	Klarna  // the calls the test does not make
	hold    string
	held    chan struct{}
	release chan struct{}

	mu       sync.Mutex
	priority map[string]bool // token → the call's ctx was marked urgent
}

func (k *blockingKlarna) PlaceOrderRaw(ctx context.Context, token string, _ []byte, _ string) (*klarna.Order, error) {
	k.mu.Lock()
	k.priority[token] = klarna.HasPriority(ctx)
	k.mu.Unlock()
	if token == k.hold {
		close(k.held)
		select {
		case <-k.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &klarna.Order{OrderID: "order-" + token, FraudStatus: "ACCEPTED"}, nil
}

func authorizedWithJob(t *testing.T, db store.Store, id string, now time.Time) {
	t.Helper()
	s := &core.Session{ID: id, Storefront: "shop", Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone,
		Status: core.SessionAuthorized, AuthorizationToken: "tok-" + id, AuthorizedAt: now,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(48 * time.Hour)}
	j := &core.Job{ID: core.PlaceOrderJobID(id), Kind: core.JobPlaceOrder, SessionID: id, Request: []byte(`{}`),
		IdempotencyKey: "hppd-order-" + id, DueAt: now, CreatedAt: now}
	if err := db.Update(func(tx store.Tx) error {
		if err := tx.PutSession(s); err != nil {
			return err
		}
		_, err := tx.AddJob(j)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// The runner takes new due work as soon as a worker is free: an order that
// falls due while another placement hangs at Klarna is placed without
// waiting for it (the batch runner waited for the whole batch), and
// placements are urgent at Klarna's rate limiter.
func TestRunnerTakesNewWorkWhileAJobHangs(t *testing.T) {
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	kl := &blockingKlarna{hold: "tok-ses_a", held: make(chan struct{}), release: make(chan struct{}), priority: map[string]bool{}}
	svc := New(db, kl, Config{Workers: 2, Now: func() time.Time { return now }})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { svc.Run(ctx); close(ran) }()
	defer func() { cancel(); close(kl.release); <-ran }()

	authorizedWithJob(t, db, "ses_a", now)
	svc.Wake()
	<-kl.held // ses_a's placement hangs at Klarna

	authorizedWithJob(t, db, "ses_b", now)
	svc.Wake()
	status := func(id string) core.SessionStatus {
		var s *core.Session
		if err := db.View(func(tx store.Tx) error { s, err = tx.Session(id); return err }); err != nil {
			t.Fatal(err)
		}
		return s.Status
	}
	deadline := time.Now().Add(15 * time.Second)
	for status("ses_b") != core.SessionOrderPlaced {
		if time.Now().After(deadline) {
			t.Fatal("ses_b's order was not placed while ses_a's placement hung")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := status("ses_a"); st != core.SessionAuthorized {
		t.Fatalf("ses_a is %s, want still authorized (its call hangs)", st)
	}
	kl.mu.Lock()
	defer kl.mu.Unlock()
	if !kl.priority["tok-ses_a"] || !kl.priority["tok-ses_b"] {
		t.Fatalf("placements not marked urgent: %v", kl.priority)
	}
}

func TestLaneOf(t *testing.T) {
	cases := map[string]lane{
		core.PlaceOrderJobID("s"):           laneUrgent,
		core.SyncJobID("s"):                 laneUrgent, // confirms a claim
		core.RetryChargeJobID("c", 1):       laneUrgent,
		core.CheckFraudJobID("c"):           laneUrgent,
		core.RereadJobID("s"):               laneRoutine,
		core.DisableJobID("s"):              laneRoutine,
		string(core.JobDeliverEvent) + "/m": laneEvents,
	}
	for id, want := range cases {
		if got := laneOf(id); got != want {
			t.Errorf("laneOf(%q) = %d, want %d", id, got, want)
		}
		// A store that claims by kind puts the job in the same lane.
		kind, _, _ := strings.Cut(id, "/")
		for l, lk := range laneKinds {
			if in := slices.Contains(lk.kinds, core.JobKind(kind)) != lk.except; in != (lane(l) == want) {
				t.Errorf("laneKinds[%d] takes %s: %v, want %v", l, kind, in, lane(l) == want)
			}
		}
	}
}

// With a re-read rate, at most a minute of routine re-reads waits as jobs;
// the other due sessions stay due (and count in the backlog) until there is
// room, and each scheduled one moves a step along the schedule.
func TestScheduleDueBoundsQueuedRereads(t *testing.T) {
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	p := core.Policy{StaleAfter: time.Minute, Schedule: []time.Duration{time.Minute, 7 * time.Minute}, ExpiryMargin: 10 * time.Minute}
	svc := New(db, nil, Config{RereadRate: 0.5, Policy: p, Now: func() time.Time { return now }}) // 30 a minute: the floor of 64
	if err := db.Update(func(tx store.Tx) error {
		for i := range 100 {
			id := "ses_" + string(rune('a'+i/26)) + string(rune('a'+i%26))
			s := &core.Session{ID: id, Storefront: "shop", Integration: core.IntegrationHPP,
				PlaceOrderMode: core.ModeNone, Status: core.SessionPending, KlarnaStatus: core.KlarnaWaiting, HPPSessionID: "hpp_" + id,
				CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(40 * time.Hour),
				CheckAt: now.Add(-time.Duration(100-i) * time.Second)}
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	synced, _, err := svc.ScheduleDue(10000)
	if err != nil || synced != 64 {
		t.Fatalf("first run: synced %d, err %v; want 64", synced, err)
	}
	if synced, _, err = svc.ScheduleDue(10000); err != nil || synced != 0 {
		t.Fatalf("second run with the queue full: synced %d, err %v; want 0", synced, err)
	}
	var backlog int
	var oldest time.Time
	var first *core.Session
	if err := db.View(func(tx store.Tx) error {
		var err error
		if backlog, oldest, err = tx.RereadBacklog(now); err != nil {
			return err
		}
		first, err = tx.Session("ses_aa")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if backlog != 100 || !oldest.Equal(now.Add(-36*time.Second)) {
		// 64 jobs due now and 36 sessions still due, the oldest of those
		// due since 36 s ago (the 64 oldest were scheduled first).
		t.Fatalf("backlog %d, oldest %v; want 100 and %v", backlog, oldest, now.Add(-36*time.Second))
	}
	if first.Rereads != 1 || !first.CheckAt.Equal(now.Add(7*time.Minute)) {
		t.Fatalf("scheduled session: Rereads %d, CheckAt %v; want 1 and now+7m", first.Rereads, first.CheckAt)
	}
}
