package klarnasim

import (
	"net/http"
	"testing"

	"github.com/hppd/hppd/klarna"
)

func (e *env) charge(token, key string) resp {
	e.t.Helper()
	path := "/customer-token/v1/tokens/" + token + "/order"
	if key == "" {
		return e.do("POST", path, tokenOrderBody())
	}
	return e.do("POST", path, tokenOrderBody(), "Klarna-Idempotency-Key", key)
}

func expectCode(t *testing.T, r resp, status int, code string) {
	t.Helper()
	expectStatus(t, r, status)
	if got := r.errBody(t).ErrorCode; got != code {
		t.Fatalf("error_code %q, want %q", got, code)
	}
}

func TestTokenRead(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		behavior string
		status   int
		token    string
	}{
		{BehaviorOK, http.StatusOK, "ACTIVE"},
		{BehaviorUnavailable, http.StatusOK, "ACTIVE"},
		{BehaviorFailed, http.StatusOK, "ACTIVE"},
		{"PAYMENT_METHOD_CURRENCY_MISMATCH", http.StatusOK, "ACTIVE"},
		{"TOKEN_CANCELLED", http.StatusOK, "CANCELLED"},
		{"TOKEN_SUSPENDED", http.StatusOK, "SUSPENDED"},
		{"TOKEN_FORBIDDEN", http.StatusForbidden, ""},
		{"TOKEN_NOT_FOUND", http.StatusNotFound, ""},
	}
	for _, c := range cases {
		t.Run(c.behavior, func(t *testing.T) {
			tok := e.sim.CreateToken(c.behavior, 1)
			r := e.do("GET", "/customer-token/v1/tokens/"+tok, nil)
			expectStatus(t, r, c.status)
			if c.status != http.StatusOK {
				return
			}
			var ct klarna.CustomerToken
			r.json(t, &ct)
			if ct.Status != c.token || ct.PaymentMethodType != "CARD" || ct.Card == nil || ct.Card.MaskedNumber == "" {
				t.Fatalf("token %s", r.body)
			}
		})
	}
}

func TestTokenCharges(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("ok", func(t *testing.T) {
		tok := e.sim.CreateToken(BehaviorOK, 0)
		r := e.charge(tok, "")
		expectStatus(t, r, http.StatusOK)
		var o klarna.Order
		r.json(t, &o)
		if o.OrderID == "" || o.FraudStatus != "ACCEPTED" || o.RedirectURL == "" {
			t.Fatalf("order %s", r.body)
		}
		orders := e.sim.Orders()
		last := orders[len(orders)-1]
		if last.OrderID != o.OrderID || last.CustomerToken != tok || last.Source != SourceCustomerToken || last.OrderAmount != 22500 {
			t.Fatalf("record %+v", last)
		}
	})
	t.Run("final codes", func(t *testing.T) {
		for _, code := range []string{"TOKEN_CANCELLED", "TOKEN_SUSPENDED", "TOKEN_FORBIDDEN", "PAYMENT_METHOD_CURRENCY_MISMATCH"} {
			tok := e.sim.CreateToken(code, 0)
			expectCode(t, e.charge(tok, ""), http.StatusForbidden, code)
		}
		expectCode(t, e.charge(e.sim.CreateToken("TOKEN_NOT_FOUND", 0), ""), http.StatusNotFound, "TOKEN_NOT_FOUND")
	})
	t.Run("failed N times", func(t *testing.T) {
		tok := e.sim.CreateToken(BehaviorFailed, 2)
		expectCode(t, e.charge(tok, "f-1"), http.StatusForbidden, "PAYMENT_METHOD_FAILED")
		// Replaying a key gives the original decline and does not count as an attempt.
		expectCode(t, e.charge(tok, "f-1"), http.StatusForbidden, "PAYMENT_METHOD_FAILED")
		expectCode(t, e.charge(tok, "f-2"), http.StatusForbidden, "PAYMENT_METHOD_FAILED")
		expectStatus(t, e.charge(tok, "f-3"), http.StatusOK)
		expectStatus(t, e.charge(tok, ""), http.StatusOK)
	})
	t.Run("idempotency key", func(t *testing.T) {
		tok := e.sim.CreateToken(BehaviorOK, 0)
		before := len(e.sim.Orders())
		r1 := e.charge(tok, "idem-1")
		expectStatus(t, r1, http.StatusOK)
		// Only the key matters: a changed body still gets the original answer.
		b := tokenOrderBody()
		b["merchant_reference1"] = "changed"
		r2 := e.do("POST", "/customer-token/v1/tokens/"+tok+"/order", b, "Klarna-Idempotency-Key", "idem-1")
		expectStatus(t, r2, http.StatusOK)
		var o1, o2 klarna.Order
		r1.json(t, &o1)
		r2.json(t, &o2)
		if o1.OrderID != o2.OrderID {
			t.Fatalf("replay order %s, want %s", o2.OrderID, o1.OrderID)
		}
		if n := len(e.sim.Orders()) - before; n != 1 {
			t.Fatalf("%d charges for one key", n)
		}
		var keyed int
		for _, rq := range e.sim.Requests() {
			if rq.IdempotencyKey == "idem-1" {
				keyed++
			}
		}
		if keyed != 2 {
			t.Fatalf("%d requests recorded with the key", keyed)
		}
	})
	t.Run("cancel by PATCH", func(t *testing.T) {
		tok := e.sim.CreateToken(BehaviorOK, 0)
		path := "/customer-token/v1/tokens/" + tok + "/status"
		expectBadValue(t, e.do("PATCH", path, map[string]any{"status": "ACTIVE"}), "status")
		expectStatus(t, e.do("PATCH", path, map[string]any{"status": "CANCELLED"}), http.StatusAccepted)
		expectCode(t, e.charge(tok, ""), http.StatusForbidden, "TOKEN_CANCELLED")
		var ct klarna.CustomerToken
		e.do("GET", "/customer-token/v1/tokens/"+tok, nil).json(t, &ct)
		if ct.Status != "CANCELLED" {
			t.Fatalf("status %s", ct.Status)
		}
		expectStatus(t, e.do("PATCH", "/customer-token/v1/tokens/nope/status", map[string]any{"status": "CANCELLED"}), http.StatusNotFound)
	})
	t.Run("create token panics on unknown behaviour", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		e.sim.CreateToken("sometimes", 0)
	})
}

func TestTokenRecovery(t *testing.T) {
	fallback := func(tok, intent string) map[string]any {
		b := kpBody()
		b["intent"] = intent
		b["customer"] = map[string]any{"customer_token": tok}
		return b
	}
	t.Run("by HPP place order", func(t *testing.T) {
		e := newEnv(t, nil)
		tok := e.sim.CreateToken(BehaviorUnavailable, 0)
		expectCode(t, e.charge(tok, ""), http.StatusForbidden, "UNAVAILABLE_PAYMENT_METHOD")
		h := e.createHPP(e.createKP(fallback(tok, "buy")), nil, map[string]any{"place_order_mode": klarna.PlaceOrderModePlace})
		// Unfinished fallback: still unavailable.
		if _, _, err := e.sim.Act(h.SessionID, ActionDecline); err != nil {
			t.Fatal(err)
		}
		expectCode(t, e.charge(tok, ""), http.StatusForbidden, "UNAVAILABLE_PAYMENT_METHOD")
		if _, _, err := e.sim.Act(h.SessionID, ActionPay); err != nil {
			t.Fatal(err)
		}
		expectStatus(t, e.charge(tok, ""), http.StatusOK)
	})
	t.Run("by KP place order", func(t *testing.T) {
		e := newEnv(t, nil)
		tok := e.sim.CreateToken(BehaviorUnavailable, 0)
		h := e.createHPP(e.createKP(fallback(tok, "buy")), nil, nil)
		if _, _, err := e.sim.Act(h.SessionID, ActionPay); err != nil {
			t.Fatal(err)
		}
		// Authorized, but no order yet.
		expectCode(t, e.charge(tok, ""), http.StatusForbidden, "UNAVAILABLE_PAYMENT_METHOD")
		st := e.readHPP(h.SessionID)
		expectStatus(t, e.do("POST", "/payments/v1/authorizations/"+st.AuthorizationToken+"/order", orderBody()), http.StatusOK)
		expectStatus(t, e.charge(tok, ""), http.StatusOK)
	})
	t.Run("not with another intent or token", func(t *testing.T) {
		e := newEnv(t, nil)
		tok := e.sim.CreateToken(BehaviorUnavailable, 0)
		for _, b := range []map[string]any{fallback(tok, "buy_and_tokenize"), fallback("other-token", "buy")} {
			h := e.createHPP(e.createKP(b), nil, map[string]any{"place_order_mode": klarna.PlaceOrderModeCapture})
			if _, _, err := e.sim.Act(h.SessionID, ActionPay); err != nil {
				t.Fatal(err)
			}
		}
		expectCode(t, e.charge(tok, ""), http.StatusForbidden, "UNAVAILABLE_PAYMENT_METHOD")
	})
}
