package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// hppd compact refuses a file the daemon holds and changes nothing; once the
// daemon is stopped it rewrites a file that retention emptied into a smaller
// one that still holds every record that was left.
func TestCompactCommand(t *testing.T) {
	e := newEnv(t, true)
	db := e.vars["HPPD_DB"]
	id, _ := e.mustSession("shop-a")

	_, _, err := e.cli(nil, "compact")
	if err == nil || !strings.Contains(err.Error(), "stop hppd first") || !strings.Contains(err.Error(), db) {
		t.Fatalf("compact while the daemon runs: %v", err)
	}
	if _, err := os.Stat(db + ".compact"); !os.IsNotExist(err) {
		t.Fatalf("a copy was left: %v", err)
	}
	e.stop()

	// A year of final sessions, then retention deletes all but the API's one.
	s, err := boltstore.Open(db, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for b := 0; b < 6; b++ {
		if err := s.Update(func(tx store.Tx) error {
			for i := 0; i < 500; i++ {
				sid := fmt.Sprintf("ses_bulk_%d_%d", b, i)
				at := old.Add(time.Duration(b*500+i) * time.Minute)
				if err := tx.PutSession(&core.Session{ID: sid, Storefront: "shop-b", Integration: core.IntegrationHPP, Status: core.SessionOrderPlaced,
					HPPSessionID: "hpp-" + sid, KPSessionID: "kp-" + sid, Purchase: core.Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK",
						OrderLines: []core.OrderLine{{Name: strings.Repeat("a product name ", 20), Quantity: 1, UnitPrice: 100, TotalAmount: 100}}},
					CreatedAt: at, UpdatedAt: at}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	p := s.NewPruner(store.PruneConfig{Retention: 180 * 24 * time.Hour, PerTx: 1000, Txs: 100})
	if r, err := p.Run(time.Now()); err != nil || r.Sessions != 3000 {
		t.Fatalf("pruned %+v, %v", r, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}

	out := e.mustCLI("compact")
	after, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() >= fi.Size() || !strings.Contains(out, fmt.Sprintf("(%d bytes) -> ", fi.Size())) || !strings.Contains(out, fmt.Sprintf("(%d bytes)\n", after.Size())) {
		t.Fatalf("compact: %d -> %d bytes, printed %q", fi.Size(), after.Size(), out)
	}
	if after.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", after.Mode().Perm())
	}
	if out := e.mustCLI("sessions", "list"); !strings.Contains(out, id) {
		t.Fatalf("the API's session is gone after compact:\n%s", out)
	}
	s, err = boltstore.Open(db, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// hppd config shows the retention variables with their defaults.
func TestConfigShowsRetention(t *testing.T) {
	e := newEnv(t, false)
	out := e.mustCLI("config")
	if !hasRow(out, "HPPD_RETENTION", "180d", "default") || !hasRow(out, "HPPD_IDEMPOTENCY_TTL", "24h", "default") {
		t.Fatalf("config:\n%s", out)
	}
	out, _, err := e.cli(map[string]string{"HPPD_RETENTION": "4320h", "HPPD_IDEMPOTENCY_TTL": "2h"}, "config")
	if err != nil || !hasRow(out, "HPPD_RETENTION", "180d", "env") || !hasRow(out, "HPPD_IDEMPOTENCY_TTL", "2h", "env") {
		t.Fatalf("config: %v\n%s", err, out)
	}
}
