package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
	"github.com/hppd/hppd/store/storetest"
)

// The store contract suite on a real file. bbolt lets one process open a
// file, so the two handles standing for two processes are one *DB; the
// suite's lease owners tell them apart. Check runs at the end of each test:
// whatever the suite did left every index and counter consistent.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, store.Store) {
		db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := db.Check(); err != nil {
				t.Errorf("check: %v", err)
			}
			if err := db.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		return db, db
	})
}

// A Batch that returned survives the process being killed right after: the
// suite's writer (started by TestMain's storetest.DurabilityChild) writes
// with fsync, as hppd runs.
func TestContractDurability(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	storetest.Durability(t, path, func(t *testing.T) store.Store {
		db, err := boltstore.Open(path, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := db.Check(); err != nil {
				t.Errorf("check after the kill: %v", err)
			}
			db.Close()
		})
		return db
	})
}
