package pgstore_test

import (
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/pgtest"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/storetest"
)

// The contract's retention case: pgstore's pruner drops what boltstore's
// does, token views included.
func TestPruneRetention(t *testing.T) {
	db := open(t, pgtest.DB(t))
	storetest.Retention(t, db, func(cfg store.PruneConfig) storetest.Pruner { return db.NewPruner(cfg) })
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// Retention deletes final records past the cutoff that no job refers to,
// expired idempotency records and old callback marks, and nothing else.
func TestPruner(t *testing.T) {
	db := open(t, pgtest.DB(t))
	old, recent := t0.Add(-200*24*time.Hour), t0.Add(-time.Hour)
	err := db.Update(func(tx store.Tx) error {
		for _, s := range []*core.Session{
			{ID: "ses_old_final", Storefront: "shop", Status: core.SessionOrderPlaced, CreatedAt: old, UpdatedAt: old},
			{ID: "ses_old_pending", Storefront: "shop", Status: core.SessionPending, CreatedAt: old, UpdatedAt: old},
			{ID: "ses_old_job", Storefront: "shop", Status: core.SessionCancelled, CreatedAt: old, UpdatedAt: old},
			{ID: "ses_recent", Storefront: "shop", Status: core.SessionOrderPlaced, CreatedAt: recent, UpdatedAt: recent},
		} {
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		if _, err := tx.AddJob(&core.Job{ID: "deliver_event/ses_old_job", Kind: core.JobDeliverEvent, SessionID: "ses_old_job", DueAt: t0}); err != nil {
			return err
		}
		if err := tx.PutCharge(&core.Charge{ID: "chg_old", Storefront: "shop", Status: core.ChargeCharged, CreatedAt: old}); err != nil {
			return err
		}
		if err := tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop", Key: "k_old", CreatedAt: t0.Add(-48 * time.Hour)}); err != nil {
			return err
		}
		if err := tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop", Key: "k_new", CreatedAt: recent}); err != nil {
			return err
		}
		if err := tx.MarkEvent("hpp_1", "ev_old", t0.Add(-100*time.Hour)); err != nil {
			return err
		}
		return tx.MarkEvent("hpp_1", "ev_new", recent)
	})
	if err != nil {
		t.Fatal(err)
	}
	p := db.NewPruner(store.PruneConfig{Retention: 180 * 24 * time.Hour, IdempotencyTTL: 24 * time.Hour, PerTx: 1})
	r, err := p.Run(t0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sessions != 1 || r.Charges != 1 || r.Idempotency != 1 || r.Events != 1 {
		t.Fatalf("pruned %+v", r)
	}
	err = db.View(func(tx store.Tx) error {
		for id, want := range map[string]bool{"ses_old_final": false, "ses_old_pending": true, "ses_old_job": true, "ses_recent": true} {
			_, err := tx.Session(id)
			if (err == nil) != want {
				t.Errorf("session %s kept = %v, want %v", id, err == nil, want)
			}
		}
		if _, err := tx.Idempotency("shop", "k_new"); err != nil {
			t.Errorf("recent key: %v", err)
		}
		if seen, _ := tx.SeenEvent("hpp_1", "ev_new"); !seen {
			t.Error("recent mark pruned")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
