package hpp

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// A callback pushes CheckAt back without moving the session's due entry; when
// the old entry comes due, ScheduleDue re-files it at the new CheckAt with no
// re-read, and schedules the re-read when that time comes.
func TestScheduleDueRefilesAnEntryACallbackPushedBack(t *testing.T) {
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	now := start
	p := core.Policy{StaleAfter: time.Minute, Schedule: []time.Duration{time.Minute, 7 * time.Minute}, ExpiryMargin: 10 * time.Minute}
	svc := New(db, nil, Config{Policy: p, Now: func() time.Time { return now }})
	s := &core.Session{ID: "ses_1", Storefront: "shop", Integration: core.IntegrationHPP,
		PlaceOrderMode: core.ModeNone, Status: core.SessionPending, KlarnaStatus: core.KlarnaWaiting, HPPSessionID: "hpp_1",
		CreatedAt: start, UpdatedAt: start, ExpiresAt: start.Add(40 * time.Hour), CheckAt: start.Add(30 * time.Second)}
	if err := db.Update(func(tx store.Tx) error { return tx.PutSession(s) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Batch(func(tx store.Tx) error {
		cur, err := tx.Session(s.ID)
		if err != nil {
			return err
		}
		_, err = svc.observeIn(tx, cur, core.Observation{Source: core.SourceCallback, KlarnaStatus: core.KlarnaInProgress, KlarnaUpdatedAt: now}, now)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	read := func() (cur *core.Session, due []string, jobs int) {
		t.Helper()
		if err := db.View(func(tx store.Tx) error {
			var err error
			if cur, err = tx.Session(s.ID); err != nil {
				return err
			}
			if due, err = tx.SessionsDue(now, 0); err != nil {
				return err
			}
			_, _, kinds, err := tx.Counts()
			jobs = kinds[core.JobRereadSession]
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return cur, due, jobs
	}
	pushed := start.Add(time.Minute)
	now = start.Add(45 * time.Second)
	if cur, due, _ := read(); !cur.CheckAt.Equal(pushed) || len(due) != 1 {
		t.Fatalf("after the callback: CheckAt %v (want %v), due at +45s %v (want the lagging entry)", cur.CheckAt, pushed, due)
	}
	if synced, expiring, err := svc.ScheduleDue(100); err != nil || synced != 0 || expiring != 0 {
		t.Fatalf("ScheduleDue at +45s: synced %d, expiring %d, %v; want nothing scheduled", synced, expiring, err)
	}
	if cur, due, jobs := read(); !cur.CheckAt.Equal(pushed) || cur.Rereads != 0 || len(due) != 0 || jobs != 0 {
		t.Fatalf("after the re-file: CheckAt %v, Rereads %d, due %v, %d re-read jobs; want %v, 0, none, 0", cur.CheckAt, cur.Rereads, due, jobs, pushed)
	}
	now = pushed
	if synced, _, err := svc.ScheduleDue(100); err != nil || synced != 1 {
		t.Fatalf("ScheduleDue at CheckAt: synced %d, %v; want 1", synced, err)
	}
	if _, _, jobs := read(); jobs != 1 {
		t.Fatalf("%d re-read jobs at CheckAt, want 1", jobs)
	}
}

// countingStore counts write transactions and limits their size, as pgstore
// does (WritesPerTx).
type countingStore struct {
	store.Store
	limit   int
	updates int
}

func (c *countingStore) Update(fn func(store.Tx) error) error {
	c.updates++
	return c.Store.Update(fn)
}

func (c *countingStore) WritesPerTx() int { return c.limit }

// On a store that limits how many records a transaction writes, the
// poller schedules its due sessions in transactions of that many.
func TestScheduleDueKeepsToTheStoresTransactionSize(t *testing.T) {
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	now := start.Add(time.Hour)
	if err := db.Update(func(tx store.Tx) error {
		for i := range 7 {
			s := &core.Session{ID: fmt.Sprintf("ses_%d", i), Storefront: "shop", Integration: core.IntegrationHPP,
				PlaceOrderMode: core.ModeNone, Status: core.SessionPending, KlarnaStatus: core.KlarnaWaiting, HPPSessionID: fmt.Sprintf("hpp_%d", i),
				CreatedAt: start, UpdatedAt: start, ExpiresAt: start.Add(40 * time.Hour), CheckAt: start.Add(time.Minute)}
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: db, limit: 3}
	p := core.Policy{StaleAfter: time.Minute, Schedule: []time.Duration{time.Minute}, ExpiryMargin: 10 * time.Minute}
	svc := New(cs, nil, Config{Policy: p, Now: func() time.Time { return now }})
	n, _, err := svc.ScheduleDue(0)
	if err != nil {
		t.Fatal(err)
	}
	if n != 7 || cs.updates != 3 {
		t.Fatalf("scheduled %d in %d transactions, want 7 in 3 (of at most 3)", n, cs.updates)
	}
}
