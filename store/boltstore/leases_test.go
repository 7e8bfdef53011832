package boltstore

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Only one process can have the file open, so every lease Open finds is a
// dead process's: the job is due again at its own time at once, not when
// the lease would have expired, and named leases are gone.
func TestOpenEndsLeases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var leased *core.Job
	mustUpdate(t, db, func(tx *Tx) error {
		if _, err := tx.AddJob(&core.Job{ID: "place_order/s1", Kind: core.JobPlaceOrder, SessionID: "s1", DueAt: t0, CreatedAt: t0}); err != nil {
			return err
		}
		var err error
		if leased, err = tx.ClaimJob("place_order/s1", "own_dead", t0, time.Hour); err != nil {
			return err
		}
		_, err = tx.AcquireLease("create/s2", "own_dead", t0, time.Hour)
		return err
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTestAt(t, path)
	mustView(t, db, func(tx *Tx) error {
		j, err := tx.Job("place_order/s1")
		if err != nil {
			return err
		}
		if j.Lease.Owner != "" || j.Lease.Token != leased.Lease.Token || !j.Due().Equal(t0) {
			t.Errorf("after Open: lease %+v, due %v; want ended (token %d kept), due %v", j.Lease, j.Due(), leased.Lease.Token, t0)
		}
		if l, err := tx.Lease("create/s2"); err != nil || l != (core.Lease{}) {
			t.Errorf("named lease after Open: %+v, %v", l, err)
		}
		due, err := tx.JobsDue(t0, 0)
		if err != nil || len(due) != 1 {
			t.Errorf("due at t0 after Open: %d, %v", len(due), err)
		}
		return nil
	})
	// The dead holder's result cannot commit.
	if err := db.Update(func(tx store.Tx) error { return tx.CompleteJob(leased, t0) }); err != store.ErrLeaseLost {
		t.Fatalf("the dead holder completed its job: %v", err)
	}
}
