package daemon_test

import (
	"net/http"
	"testing"

	"github.com/hppd/hppd/store"
)

// A customer token belongs to the storefront that first charged it: another
// storefront gets 404 for it, on a read and on a charge, Klarna is not
// called and nothing changes; a storefront the owner shares its tokens with
// may use it.
func TestTokensHaveAnOwner(t *testing.T) {
	t.Parallel()
	s := newShopsEnv(t, "    share_tokens_with: [shop-c]\n", "", "")
	tok := s.sim.CreateToken("ok", 0)
	shopA, shopB := s.as(shopAKey1, "shop-a"), s.as(shopBOwn, "shop-b")
	withKey := func(h map[string]string, k string) map[string]string {
		out := map[string]string{"Idempotency-Key": k}
		for n, v := range h {
			out[n] = v
		}
		return out
	}
	st, c := s.do("POST", "/v1/charges", chargeBody(tok, false), withKey(shopA, "a-1"))
	if st != http.StatusCreated || c["status"] != "charged" {
		t.Fatalf("shop-a charges its token: %d %v", st, c["_raw"])
	}
	reads, orders := s.countRequests("read_customer_token"), s.countRequests("create_token_order")
	chargesBefore := s.chargeCount()

	if st, out := s.do("GET", "/v1/tokens/"+tok, nil, shopB); st != http.StatusNotFound {
		t.Fatalf("shop-b reads shop-a's token: %d %v", st, out["_raw"])
	}
	if st, out := s.do("POST", "/v1/charges", chargeBody(tok, false), withKey(shopB, "b-1")); st != http.StatusNotFound {
		t.Fatalf("shop-b charges shop-a's token: %d %v", st, out["_raw"])
	}
	if st, out := s.do("POST", "/v1/charges", chargeBody(tok, true), withKey(shopB, "b-2")); st != http.StatusNotFound {
		t.Fatalf("shop-b charges shop-a's token, customer present: %d %v", st, out["_raw"])
	}
	recovery := sessionBody(10000, "")
	recovery["customer_token"] = tok
	if st, out := s.do("POST", "/v1/sessions", recovery, shopB); st != http.StatusNotFound {
		t.Fatalf("shop-b links a session to shop-a's token: %d %v", st, out["_raw"])
	}
	if r, o := s.countRequests("read_customer_token"), s.countRequests("create_token_order"); r != reads || o != orders {
		t.Fatalf("Klarna was called for shop-b: %d reads (was %d), %d token orders (was %d)", r, reads, o, orders)
	}
	if s.countRequests("create_kp_session") != 0 {
		t.Fatal("a KP session was created for shop-b's recovery session")
	}
	if chargesAfter := s.chargeCount(); chargesAfter != chargesBefore {
		t.Fatalf("%d charges after shop-b's attempts, %d before", chargesAfter, chargesBefore)
	}
	if n := s.chargesAtKlarna(tok); n != 1 {
		t.Fatalf("the token was charged %d times", n)
	}

	// The owner and the storefront it shares with still use it.
	if st, out := s.do("GET", "/v1/tokens/"+tok, nil, shopA); st != http.StatusOK {
		t.Fatalf("shop-a reads its token: %d %v", st, out["_raw"])
	}
	shopC := map[string]string{"Authorization": "Bearer " + s.tokenFor("shop-c")} // the global key
	if st, out := s.do("GET", "/v1/tokens/"+tok, nil, shopC); st != http.StatusOK {
		t.Fatalf("shop-c, shared with, reads the token: %d %v", st, out["_raw"])
	}
	if st, out := s.do("POST", "/v1/charges", chargeBody(tok, false), withKey(shopC, "c-1")); st != http.StatusCreated || out["status"] != "charged" {
		t.Fatalf("shop-c, shared with, charges the token: %d %v", st, out["_raw"])
	}
}

// chargeCount is the number of charges in the store.
func (s *shopsEnv) chargeCount() int {
	s.t.Helper()
	n := 0
	if err := s.m.DB.View(func(tx store.Tx) error {
		_, charges, _, err := tx.Counts()
		for _, c := range charges {
			n += c
		}
		return err
	}); err != nil {
		s.t.Fatal(err)
	}
	return n
}
