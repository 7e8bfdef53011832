package pgstore_test

import (
	"context"
	"testing"

	"github.com/hppd/hppd/internal/pgtest"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/pgstore"
	"github.com/hppd/hppd/store/storetest"
)

// contractChild plays the writer of the contract suite's SIGKILL test
// when this binary was started as one.
func contractChild() {
	storetest.DurabilityChild(func(url string) (store.Store, error) {
		return pgstore.Open(context.Background(), url, pgstore.Options{})
	})
}

// The store contract suite on a real server. The two handles are two pools
// on one database, standing for two replicas as they run: nothing they
// share but the database.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, store.Store) {
		url := pgtest.DB(t)
		a, b := open(t, url), open(t, url)
		t.Cleanup(func() {
			if err := a.Check(); err != nil {
				t.Errorf("check: %v", err)
			}
		})
		return a, b
	})
}

// A Batch that returned is on the server when its process is killed right
// after.
func TestContractDurability(t *testing.T) {
	url := pgtest.DB(t)
	open(t, url) // migrated before the writer starts
	storetest.Durability(t, url, func(t *testing.T) store.Store { return open(t, url) })
}
