package boltstore

import (
	"errors"
	"fmt"
	"github.com/hppd/hppd/store"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	bolt "go.etcd.io/bbolt"
)

// A function that fails after writing is rolled back and run again alone;
// the others of its batch run again too and are committed.
func TestBatchRerunsAfterAFailedWrite(t *testing.T) {
	db, err := Open(t.TempDir()+"/hppd.db", Options{NoSync: true, MaxBatchDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var runs [3]atomic.Int32
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Batch(func(tx store.Tx) error {
				runs[i].Add(1)
				if err := tx.PutSession(simpleSession(fmt.Sprint("s", i), "shop", t0)); err != nil {
					return err
				}
				if i == 1 {
					return errors.New("second thoughts")
				}
				return nil
			})
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[2] != nil || errs[1] == nil || errs[1].Error() != "second thoughts" {
		t.Fatalf("errors %v", errs)
	}
	mustView(t, db, func(tx *Tx) error {
		for i, want := range []bool{true, false, true} {
			_, err := tx.Session(fmt.Sprint("s", i))
			if (err == nil) != want {
				t.Errorf("s%d stored: %v", i, err)
			}
		}
		return nil
	})
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	// With the 50ms linger the three share one batch: the failing one runs
	// in it and then alone; the others run again if they ran before it.
	if runs[1].Load() != 2 || runs[0].Load() < 1 || runs[2].Load() < 1 {
		t.Errorf("runs %d %d %d", runs[0].Load(), runs[1].Load(), runs[2].Load())
	}
}

func TestBatchPanicReachesCaller(t *testing.T) {
	db := openTest(t)
	defer func() {
		p := recover()
		if p == nil || !strings.Contains(fmt.Sprint(p), "boom") {
			t.Fatalf("recovered %v", p)
		}
		// The store still works.
		if err := db.Batch(func(tx store.Tx) error { return tx.PutSession(simpleSession("s1", "shop", t0)) }); err != nil {
			t.Fatal(err)
		}
	}()
	_ = db.Batch(func(tx store.Tx) error {
		if err := tx.PutSession(simpleSession("s0", "shop", t0)); err != nil {
			return err
		}
		panic("boom")
	})
}

func TestCloseFinishesBatchesThenRefuses(t *testing.T) {
	path := t.TempDir() + "/hppd.db"
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var done atomic.Int32
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.Batch(func(tx store.Tx) error { return tx.PutSession(simpleSession(fmt.Sprint("s", i), "shop", t0)) })
			switch {
			case err == nil:
				done.Add(1)
			case !errors.Is(err, store.ErrClosed):
				t.Error(err)
			}
		}()
	}
	time.Sleep(time.Millisecond)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := db.Batch(func(store.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Batch after Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	db = openTestAt(t, path)
	mustView(t, db, func(tx *Tx) error {
		sessions, _, _, err := tx.Counts()
		if err != nil || sessions[core.SessionPending] != int(done.Load()) {
			t.Errorf("%d sessions stored, %d Batch calls succeeded (%v)", sessions[core.SessionPending], done.Load(), err)
		}
		return nil
	})
}

// A batch in which no function wrote (a lease claim that found the work
// taken, say) commits nothing, so it costs no fsync.
func TestBatchThatWritesNothingDoesNotCommit(t *testing.T) {
	db := openTest(t)
	txid := func() int {
		var id int
		if err := db.bolt.View(func(btx *bolt.Tx) error { id = btx.ID(); return nil }); err != nil {
			t.Fatal(err)
		}
		return id
	}
	before := txid()
	errRead := errors.New("only read")
	if err := db.Batch(func(tx store.Tx) error { _, _ = tx.Job("none"); return errRead }); !errors.Is(err, errRead) {
		t.Fatalf("batch: %v, want the function's own error", err)
	}
	if err := db.Batch(func(tx store.Tx) error {
		_, err := tx.Job("none")
		if core.IsNotFound(err) {
			return nil
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if after := txid(); after != before {
		t.Fatalf("transaction id %d after read-only batches, was %d: they committed", after, before)
	}
	if err := db.Batch(func(tx store.Tx) error { return tx.PutSession(simpleSession("s1", "shop", t0)) }); err != nil {
		t.Fatal(err)
	}
	if after := txid(); after != before+1 {
		t.Fatalf("transaction id %d after a writing batch, want %d", after, before+1)
	}
}
