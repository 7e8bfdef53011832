package hpp

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// countingKlarna places orders and counts the calls per authorization.
type countingKlarna struct {
	Klarna
	mu    sync.Mutex
	calls map[string]int
	hold  chan struct{} // when set, every call waits for it
}

func (k *countingKlarna) PlaceOrderRaw(ctx context.Context, token string, _ []byte, _ string) (*klarna.Order, error) {
	k.mu.Lock()
	k.calls[token]++
	k.mu.Unlock()
	if k.hold != nil {
		select {
		case <-k.hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &klarna.Order{OrderID: "order-" + token, FraudStatus: "ACCEPTED"}, nil
}

func openStore(t *testing.T) *boltstore.DB {
	t.Helper()
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
		db.Close()
	})
	return db
}

func sessionStatus(t *testing.T, db store.Store, id string) core.SessionStatus {
	t.Helper()
	var s *core.Session
	if err := db.View(func(tx store.Tx) error {
		var err error
		s, err = tx.Session(id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return s.Status
}

// Two processes' services share one store and run the due jobs at once:
// each order is placed by one of them, once.
func TestTwoServicesPlaceEachOrderOnce(t *testing.T) {
	db := openStore(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const n = 30
	for i := range n {
		authorizedWithJob(t, db, fmt.Sprintf("ses_%02d", i), now)
	}
	kl := &countingKlarna{calls: map[string]int{}}
	clock := func() time.Time { return now }
	a := New(db, kl, Config{Owner: "own_a", Workers: 4, Now: clock})
	b := New(db, kl, Config{Owner: "own_b", Workers: 4, Now: clock})
	var wg sync.WaitGroup
	for _, svc := range []*Service{a, b, a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); svc.RunDue(context.Background()) }()
	}
	wg.Wait()
	for i := range n {
		id := fmt.Sprintf("ses_%02d", i)
		if got := kl.calls["tok-"+id]; got != 1 {
			t.Errorf("%s: %d place-order calls, want 1", id, got)
		}
		if st := sessionStatus(t, db, id); st != core.SessionOrderPlaced {
			t.Errorf("%s is %s", id, st)
		}
	}
}

// A process that stalls past its lease loses the job: another takes it
// over when the lease expires, and the stalled one's late result is not
// recorded over it.
func TestStalledHolderLosesItsJob(t *testing.T) {
	db := openStore(t)
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	authorizedWithJob(t, db, "ses_1", now)
	slow := &countingKlarna{calls: map[string]int{}, hold: make(chan struct{})}
	fast := &countingKlarna{calls: map[string]int{}}
	a := New(db, slow, Config{Owner: "own_a", Now: clock, LeaseTTL: time.Minute, KlarnaTimeout: time.Hour})
	b := New(db, fast, Config{Owner: "own_b", Now: clock, LeaseTTL: time.Minute})
	done := make(chan int)
	go func() { done <- a.RunDue(context.Background()) }()
	for {
		slow.mu.Lock()
		c := slow.calls["tok-ses_1"]
		slow.mu.Unlock()
		if c == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if n := b.RunDue(context.Background()); n != 0 {
		t.Fatalf("b ran %d jobs while a's lease holds", n)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if n := b.RunDue(context.Background()); n != 1 {
		t.Fatalf("b ran %d jobs after a's lease expired, want 1", n)
	}
	if st := sessionStatus(t, db, "ses_1"); st != core.SessionOrderPlaced {
		t.Fatalf("after b: %s", st)
	}
	close(slow.hold)
	<-done
	var s *core.Session
	if err := db.View(func(tx store.Tx) error { var err error; s, err = tx.Session("ses_1"); return err }); err != nil {
		t.Fatal(err)
	}
	if s.OrderID != "order-tok-ses_1" || len(s.History) == 0 {
		t.Fatalf("session %+v", s)
	}
	placed := 0
	for _, c := range s.History {
		if c.To == string(core.SessionOrderPlaced) && c.From != c.To {
			placed++
		}
	}
	if placed != 1 {
		t.Fatalf("order_placed recorded %d times", placed)
	}
	if a.Stats.OrdersPlaced.Load() != 0 || b.Stats.OrdersPlaced.Load() != 1 {
		t.Fatalf("orders recorded: stalled %d, taker %d; want 0 and 1", a.Stats.OrdersPlaced.Load(), b.Stats.OrdersPlaced.Load())
	}
}

// Two processes' pollers schedule the same due sessions at once: each
// session gets one re-read and moves one step along the schedule.
func TestTwoPollersScheduleEachSessionOnce(t *testing.T) {
	db := openStore(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const n = 40
	if err := db.Update(func(tx store.Tx) error {
		for i := range n {
			id := fmt.Sprintf("ses_%02d", i)
			s := &core.Session{ID: id, Storefront: "shop", Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone,
				Status: core.SessionPending, HPPSessionID: "hpp-" + id, CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Hour),
				ExpiresAt: now.Add(47 * time.Hour), CheckAt: now.Add(-time.Minute)}
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return now }
	var wg sync.WaitGroup
	var synced [4]int
	for i, svc := range []*Service{
		New(db, nil, Config{Owner: "own_a", Now: clock}), New(db, nil, Config{Owner: "own_b", Now: clock}),
		New(db, nil, Config{Owner: "own_a2", Now: clock}), New(db, nil, Config{Owner: "own_b2", Now: clock}),
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if synced[i], _, err = svc.ScheduleDue(0); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if total := synced[0] + synced[1] + synced[2] + synced[3]; total != n {
		t.Errorf("%d re-reads scheduled in all, want %d", total, n)
	}
	if err := db.View(func(tx store.Tx) error {
		for i := range n {
			s, err := tx.Session(fmt.Sprintf("ses_%02d", i))
			if err != nil {
				return err
			}
			if s.Rereads != 1 {
				t.Errorf("%s moved %d steps, want 1", s.ID, s.Rereads)
			}
		}
		_, _, jobs, err := tx.Counts()
		if jobs[core.JobRereadSession] != n {
			t.Errorf("%d re-read jobs, want %d", jobs[core.JobRereadSession], n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
