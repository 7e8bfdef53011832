package boltstore

import (
	"encoding/base32"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hppd/hppd/core"
)

// t0 is the tests' fixed clock.
var t0 = time.Date(2025, 11, 25, 12, 0, 0, 0, time.UTC)

// openTest opens a fresh store in t.TempDir() and, at cleanup, checks it
// (bbolt's page check plus every index and counter) and closes it.
func openTest(t testing.TB) *DB {
	t.Helper()
	return openTestAt(t, filepath.Join(t.TempDir(), "hppd.db"))
}

func openTestAt(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("check at cleanup: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return db
}

func mustUpdate(t testing.TB, db *DB, fn func(*Tx) error) {
	t.Helper()
	if err := db.update(fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

func mustView(t testing.TB, db *DB, fn func(*Tx) error) {
	t.Helper()
	if err := db.view(fn); err != nil {
		t.Fatalf("view: %v", err)
	}
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var productNames = []string{"Running shoes", "Rain jacket", "Wool socks, 3-pack", "Backpack 28 l", "Water bottle", "Headlamp", "Trail map"}

// realisticSession is a pending hosted-page session the way hppd stores one
// after creating it at Klarna: a purchase of 1 to 3 lines, the storefront's
// return URLs, Klarna's ids and URLs, a secret hash and a history entry.
func realisticSession(r *rand.Rand, storefront string, created time.Time) *core.Session {
	id := randomID(r, "ses_")
	hpp := uuid.NewString()
	// Real clocks have nanoseconds, which JSON keeps (and which compress
	// worse than whole seconds).
	created = created.Add(time.Duration(r.IntN(1e9)))
	var lines []core.OrderLine
	var amount, tax int64
	for i := 0; i < 1+r.IntN(3); i++ {
		price := int64(1000 + r.IntN(200000))
		qty := int64(1 + r.IntN(3))
		total := price * qty
		lt := core.ExpectedLineTax(total, 2500)
		lines = append(lines, core.OrderLine{
			Type: "physical", Reference: fmt.Sprintf("SKU-%06d", r.IntN(1000000)), Name: productNames[r.IntN(len(productNames))],
			Quantity: qty, UnitPrice: price, TaxRate: 2500, TotalAmount: total, TotalTaxAmount: lt,
			ProductURL: fmt.Sprintf("https://%s.example.com/products/%d", storefront, r.IntN(100000)),
		})
		amount += total
		tax += lt
	}
	order := fmt.Sprintf("%s-%08d", storefront, r.IntN(100000000))
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(r.IntN(256))
	}
	base := "https://" + storefront + ".example.com/checkout/"
	return &core.Session{
		ID: id, Storefront: storefront, Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone, Status: core.SessionPending,
		Purchase: core.Purchase{
			PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: amount, OrderTaxAmount: tax,
			OrderLines: lines, MerchantReference1: order,
		},
		ReturnURLs: core.ReturnURLs{
			Success: base + "success?order=" + order, Failure: base + "failure?order=" + order,
			Cancel: base + "cancel?order=" + order, Back: base + "back?order=" + order,
		},
		KPSessionID:     uuid.NewString(),
		HPPSessionID:    hpp,
		RedirectURL:     "https://pay.playground.klarna.com/eu/hpp/payments/" + hpp[:8],
		QRCodeURL:       "https://pay.playground.klarna.com/eu/hpp/payments/" + hpp[:8] + "/qr",
		DistributionURL: "https://api.playground.klarna.com/hpp/v1/sessions/" + hpp + "/distribution",
		SecretHash:      secret,
		KlarnaStatus:    core.KlarnaWaiting,
		CreatedAt:       created, UpdatedAt: created,
		ExpiresAt: created.Add(47 * time.Hour),
		CheckAt:   created.Add(core.DefaultPolicy.StaleAfter),
		History:   []core.Change{{At: created, To: string(core.SessionPending), KlarnaStatus: core.KlarnaWaiting, Source: core.SourceAPI, Reason: "created"}},
	}
}

// randomID is an id the way hppd's flows make them: prefix + 26 lowercase
// base32 characters of 130 random bits.
func randomID(r *rand.Rand, prefix string) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// simpleSession is a small session with the given id for index tests.
func simpleSession(id, storefront string, created time.Time) *core.Session {
	return &core.Session{
		ID: id, Storefront: storefront, Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone,
		Status:       core.SessionPending,
		HPPSessionID: "hpp-" + id, KPSessionID: "kp-" + id,
		Purchase:  core.Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 100, OrderLines: []core.OrderLine{{Name: "x", Quantity: 1, UnitPrice: 100, TotalAmount: 100}}},
		CreatedAt: created, UpdatedAt: created, ExpiresAt: created.Add(47 * time.Hour),
		CheckAt: created.Add(2 * time.Minute),
	}
}

func simpleCharge(id, storefront string, created time.Time) *core.Charge {
	return &core.Charge{
		ID: id, Storefront: storefront, CustomerToken: "tok-" + id, Status: core.ChargePending,
		Purchase:  core.Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 100},
		CreatedAt: created, UpdatedAt: created,
	}
}

func fileMode(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
