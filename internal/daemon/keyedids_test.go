package daemon_test

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// plainID is how ids were derived from an Idempotency-Key before they were
// HMACs: anyone who guessed the key could compute it.
func plainID(prefix, storefront, scopedKey string) string {
	h := sha256.Sum256([]byte(prefix + "\x00" + storefront + "\x00" + scopedKey))
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:16]))
}

// Ids derived from an Idempotency-Key are not the plain hash of what the
// storefront sent; the same key replays the same id.
func TestKeyedIDsAreNotComputable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	hdr := map[string]string{"Idempotency-Key": "cart-1001"}
	st, s1 := e.do("POST", "/v1/sessions", sessionBody(10000, ""), hdr)
	if st != http.StatusCreated {
		t.Fatalf("create: %d %v", st, s1["_raw"])
	}
	id := s1["id"].(string)
	var scope string
	if err := e.m.DB.View(func(tx store.Tx) error {
		rec, err := tx.Idempotency("shop-a", "cart-1001")
		scope = rec.Scope
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cart-1001", "cart-1001\x00" + scope} {
		if plainID("ses_", "shop-a", k) == id {
			t.Fatalf("the session id is the plain sha256 of %q", k)
		}
	}
	if _, s2 := e.do("POST", "/v1/sessions", sessionBody(10000, ""), hdr); s2["id"] != id {
		t.Fatalf("replay: %v, first %s", s2["id"], id)
	}
	// The secret is the file's, made once.
	secret, err := e.m.DB.IDSecret()
	if err != nil || len(secret) != 32 {
		t.Fatalf("id secret: %d bytes, %v", len(secret), err)
	}
	if strings.Contains(s1["_raw"].(string), base32.StdEncoding.EncodeToString(secret)) {
		t.Fatal("the answer shows the id secret")
	}
}

// A retry of a charge request that was in flight when hppd was upgraded
// finds the charge under the id it was given then (the plain hash), and the
// token is not charged again.
func TestRetryFromBeforeHMACIdsFindsItsCharge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("ok", 0)
	_, seed := e.do("POST", "/v1/charges", chargeBody(tok, false), map[string]string{"Idempotency-Key": "seed-1"})
	const scope = "00112233aabbccdd"
	legacy := plainID("chg_", "shop-a", "renewal-u\x00"+scope)
	// What an older hppd left: a pending charge under the plain-hash id
	// (its attempt sent to Klarna, the answer lost) and its key's record in
	// progress, owned by the dead run.
	if err := e.m.DB.Update(func(tx store.Tx) error {
		cur, err := tx.Charge(seed["id"].(string))
		if err != nil {
			return err
		}
		cur.ID, cur.Status, cur.History = legacy, core.ChargePending, cur.History[:1]
		if err := tx.PutCharge(cur); err != nil {
			return err
		}
		b, _ := json.Marshal(chargeBody(tok, false))
		h := sha256.Sum256(append([]byte("POST /v1/charges\n"), b...))
		return tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop-a", Key: "renewal-u", RequestHash: h[:], Owner: "a-dead-run", CreatedAt: e.clock.Now(), Scope: scope})
	}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	st, c := e.do("POST", "/v1/charges", chargeBody(tok, false), map[string]string{"Idempotency-Key": "renewal-u"})
	if st != http.StatusCreated || c["id"] != legacy || c["status"] != "charged" {
		t.Fatalf("retry: %d %v; want charge %s charged", st, c["_raw"], legacy)
	}
	// The resent attempt carried the first attempt's key: Klarna replayed
	// its order instead of making a second.
	if n := e.chargesAtKlarna(tok); n != 1 {
		t.Fatalf("token charged %d times", n)
	}
}
