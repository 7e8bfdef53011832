package hpp

import (
	"path/filepath"
	"testing"

	"github.com/hppd/hppd/store/boltstore"
)

// Ids derived from an Idempotency-Key are an HMAC under the file's secret:
// not the plain hash anyone could compute, the same for the same key (and
// after a restart on the same file), another for another file; a record made
// under the plain hash before the upgrade is still found by its retry.
func TestKeyedIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	db, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	none := func(string) (bool, error) { return false, nil }
	svc := New(db, nil, Config{})
	id, err := svc.keyedID("ses_", "shop-a", "cart-42", none)
	if err != nil {
		t.Fatal(err)
	}
	if id == legacyKeyedID("ses_", "shop-a", "cart-42") {
		t.Fatal("the id is the plain sha256 of (prefix, storefront, key)")
	}
	if again, _ := svc.keyedID("ses_", "shop-a", "cart-42", none); again != id {
		t.Fatalf("same key, another id: %s then %s", id, again)
	}
	if other, _ := svc.keyedID("ses_", "shop-b", "cart-42", none); other == id {
		t.Fatal("two storefronts' equal keys give one id")
	}
	if len(id) != len("ses_")+26 {
		t.Fatalf("id %q is not prefix + 26 characters", id)
	}
	// The legacy id is used only when its record exists and the HMAC one's
	// does not.
	legacy := legacyKeyedID("chg_", "shop-a", "charge-1\x00scope")
	got, err := svc.keyedID("chg_", "shop-a", "charge-1\x00scope", func(id string) (bool, error) { return id == legacy, nil })
	if err != nil || got != legacy {
		t.Fatalf("a pre-upgrade record: got %q, %v; want %q", got, err, legacy)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if after, _ := New(db, nil, Config{}).keyedID("ses_", "shop-a", "cart-42", none); after != id {
		t.Fatalf("after reopening the file: %s, before %s", after, id)
	}
	other, err := boltstore.Open(filepath.Join(t.TempDir(), "other.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if elsewhere, _ := New(other, nil, Config{}).keyedID("ses_", "shop-a", "cart-42", none); elsewhere == id {
		t.Fatal("another data file derives the same id: the secret is not per file")
	}
}
