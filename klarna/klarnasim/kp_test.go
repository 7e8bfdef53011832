package klarnasim

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/klarna"
)

func TestAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name, user, pass string
	}{
		{"missing", "", ""},
		{"wrong password", "sim", "nope"},
		{"wrong user", "simx", "sim"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.doAuth("POST", "/payments/v1/sessions", kpBody(), c.user, c.pass)
			expectStatus(t, r, http.StatusUnauthorized)
			if r.errBody(t).ErrorCode != "UNAUTHORIZED" {
				t.Fatalf("body %s", r.body)
			}
			if r.header.Get("Klarna-Correlation-Id") == "" {
				t.Fatal("no Klarna-Correlation-Id")
			}
		})
	}
	if n := len(e.sim.kp); n != 0 {
		t.Fatalf("%d sessions created without credentials", n)
	}
	t.Run("driver", func(t *testing.T) {
		r := e.doAuth("GET", "/_sim/orders", nil, "", "")
		expectStatus(t, r, http.StatusUnauthorized)
	})
	t.Run("custom credentials", func(t *testing.T) {
		e2 := newEnv(t, func(o *Options) { o.Username, o.Password = "DemoMerchant", "DemoPassword" })
		expectStatus(t, e2.doAuth("POST", "/payments/v1/sessions", kpBody(), "DemoMerchant", "DemoPassword"), http.StatusOK)
		expectStatus(t, e2.do("POST", "/payments/v1/sessions", kpBody()), http.StatusUnauthorized)
	})
}

func TestCommonHeadersAndErrorBody(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("GET", "/payments/v1/sessions/unknown", nil)
	expectStatus(t, r, http.StatusNotFound)
	corr := r.header.Get("Klarna-Correlation-Id")
	eb := r.errBody(t)
	if eb.ErrorCode != "NOT_FOUND" || len(eb.ErrorMessages) == 0 || eb.CorrelationID != corr || corr == "" {
		t.Fatalf("error body %s, header correlation %q", r.body, corr)
	}
	for _, h := range []string{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"} {
		if r.header.Get(h) == "" {
			t.Errorf("missing %s", h)
		}
	}
	if got := r.header.Get("X-Ratelimit-Limit"); got != "200, 200;w=1" {
		t.Errorf("X-Ratelimit-Limit %q", got)
	}
	r = e.do("POST", "/payments/v1/sessions", kpBody())
	if got := r.header.Get("X-Ratelimit-Limit"); got != "40, 40;w=1" {
		t.Errorf("create session X-Ratelimit-Limit %q", got)
	}
	if e.validated.Load() < 2 {
		t.Fatalf("only %d responses validated against the OpenAPI documents", e.validated.Load())
	}
	t.Run("unknown path", func(t *testing.T) {
		r := e.do("GET", "/payments/v1/nothing/here", nil)
		expectStatus(t, r, http.StatusNotFound)
		if r.errBody(t).ErrorCode != "NOT_FOUND" {
			t.Fatalf("body %s", r.body)
		}
	})
}

func TestKPSessionLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	body := kpBody()
	body["customer"] = map[string]any{"customer_token": "tok-1", "type": "person"}
	body["merchant_reference1"] = "ref-1"
	id := e.createKP(body)

	r := e.do("GET", "/payments/v1/sessions/"+id, nil)
	expectStatus(t, r, http.StatusOK)
	var read map[string]any
	r.json(t, &read)
	if read["status"] != "incomplete" || read["purchase_country"] != "SE" || read["merchant_reference1"] != "ref-1" {
		t.Fatalf("read %s", r.body)
	}
	if cu, _ := read["customer"].(map[string]any); cu["customer_token"] != "tok-1" {
		t.Fatalf("customer not echoed: %s", r.body)
	}
	if read["expires_at"] != t0.Add(48*time.Hour).Format(timeLayout) {
		t.Fatalf("expires_at %v", read["expires_at"])
	}
	if _, has := read["authorization_token"]; has {
		t.Fatal("authorization_token before any authorization")
	}

	t.Run("update", func(t *testing.T) {
		upd := map[string]any{
			"order_amount": 30000, "order_tax_amount": 6000,
			"order_lines": []map[string]any{line("Boot", 1, 30000)},
		}
		expectStatus(t, e.do("POST", "/payments/v1/sessions/"+id, upd), http.StatusNoContent)
		r := e.do("GET", "/payments/v1/sessions/"+id, nil)
		var read map[string]any
		r.json(t, &read)
		if toInt(read["order_amount"]) != 30000 || read["merchant_reference1"] != "ref-1" {
			t.Fatalf("after update %s", r.body)
		}
	})
	t.Run("update inconsistent", func(t *testing.T) {
		// New lines without a new order_amount: the merged session is refused.
		upd := map[string]any{"order_lines": []map[string]any{line("Boot", 2, 30000)}}
		expectBadValue(t, e.do("POST", "/payments/v1/sessions/"+id, upd), "order_amount")
	})
	t.Run("unknown", func(t *testing.T) {
		expectStatus(t, e.do("GET", "/payments/v1/sessions/nope", nil), http.StatusNotFound)
		expectStatus(t, e.do("POST", "/payments/v1/sessions/nope", map[string]any{"locale": "sv-SE"}), http.StatusNotFound)
	})
	t.Run("authorized read shows token", func(t *testing.T) {
		tok, err := e.sim.Authorize(id, true)
		if err != nil {
			t.Fatal(err)
		}
		var read map[string]any
		e.do("GET", "/payments/v1/sessions/"+id, nil).json(t, &read)
		if read["authorization_token"] != tok {
			t.Fatalf("authorization_token %v, want %s", read["authorization_token"], tok)
		}
	})
	t.Run("expiry", func(t *testing.T) {
		e.sim.Advance(48*time.Hour - time.Second)
		expectStatus(t, e.do("GET", "/payments/v1/sessions/"+id, nil), http.StatusOK)
		e.sim.Advance(time.Second)
		expectStatus(t, e.do("GET", "/payments/v1/sessions/"+id, nil), http.StatusNotFound)
		expectStatus(t, e.do("POST", "/payments/v1/sessions/"+id, map[string]any{"locale": "sv-SE"}), http.StatusNotFound)
	})
}

func TestPlaceOrder(t *testing.T) {
	e := newEnv(t, nil)
	id := e.createKP(kpBody())
	tok, err := e.sim.Authorize(id, true)
	if err != nil {
		t.Fatal(err)
	}
	path := "/payments/v1/authorizations/" + tok + "/order"

	t.Run("not matching", func(t *testing.T) {
		other := orderBody(line("Shoe", 3, 10000))
		r := e.do("POST", path, other)
		expectStatus(t, r, http.StatusConflict)
		eb := r.errBody(t)
		if eb.ErrorCode != "BAD_VALUE" || len(eb.ErrorMessages) != 1 ||
			eb.ErrorMessages[0] != "Not matching fields: [order_amount, order_tax_amount, order_lines]" {
			t.Fatalf("body %s", r.body)
		}
		shipping := orderBody()
		shipping["shipping_address"] = map[string]any{"city": "Stockholm"}
		r = e.do("POST", path, shipping)
		expectStatus(t, r, http.StatusConflict)
		if !strings.Contains(string(r.body), "shipping_address") {
			t.Fatalf("body %s", r.body)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		b := orderBody()
		delete(b, "purchase_currency")
		expectBadValue(t, e.do("POST", path, b), "purchase_currency")
	})

	first := `{"purchase_country":"SE","purchase_currency":"SEK","locale":"sv-SE","order_amount":22500,"order_tax_amount":4500,` +
		`"order_lines":[{"type":"physical","name":"Shoe","quantity":2,"unit_price":10000,"tax_rate":2500,"total_amount":20000,"total_tax_amount":4000},` +
		`{"type":"physical","name":"Sock","quantity":1,"unit_price":2500,"tax_rate":2500,"total_amount":2500,"total_tax_amount":500}],` +
		`"merchant_reference1":"order-7","merchant_urls":{"confirmation":"https://shop.example/done/{order.id}"}}`
	r := e.do("POST", path, first, "Klarna-Idempotency-Key", "k-1")
	expectStatus(t, r, http.StatusOK)
	var order klarna.Order
	r.json(t, &order)
	if order.OrderID == "" || order.FraudStatus != "ACCEPTED" || order.RedirectURL == "" {
		t.Fatalf("order %s", r.body)
	}

	orders := e.sim.Orders()
	if len(orders) != 1 || orders[0].OrderID != order.OrderID || orders[0].AuthorizationToken != tok ||
		orders[0].Source != SourceKP || orders[0].KPSessionID != id || orders[0].IdempotencyKey != "k-1" ||
		string(orders[0].Request) != first {
		t.Fatalf("orders %+v", orders)
	}
	var read map[string]any
	e.do("GET", "/payments/v1/sessions/"+id, nil).json(t, &read)
	if read["status"] != "complete" {
		t.Fatalf("session status %v", read["status"])
	}

	t.Run("identical replay", func(t *testing.T) {
		// Same JSON, other whitespace and key order: the same order.
		replay := strings.Replace(first, `"purchase_country":"SE","purchase_currency":"SEK"`, `"purchase_currency" : "SEK", "purchase_country":"SE"`, 1)
		r := e.do("POST", path, replay)
		expectStatus(t, r, http.StatusOK)
		var again klarna.Order
		r.json(t, &again)
		if again.OrderID != order.OrderID {
			t.Fatalf("replay gave order %s, want %s", again.OrderID, order.OrderID)
		}
		if n := len(e.sim.Orders()); n != 1 {
			t.Fatalf("%d orders after replay", n)
		}
	})
	t.Run("different body", func(t *testing.T) {
		different := strings.Replace(first, "order-7", "order-8", 1)
		r := e.do("POST", path, different)
		expectStatus(t, r, http.StatusConflict)
		eb := r.errBody(t)
		if eb.ErrorCode != "BAD_VALUE" || eb.ErrorMessages[0] != "order has been already completed with different request body" {
			t.Fatalf("body %s", r.body)
		}
	})
	t.Run("redirect", func(t *testing.T) {
		res, err := noRedirect.Get(order.RedirectURL)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "https://shop.example/done/"+order.OrderID {
			t.Fatalf("redirect %d %q", res.StatusCode, res.Header.Get("Location"))
		}
	})
	t.Run("no new authorization after the order", func(t *testing.T) {
		if _, err := e.sim.Authorize(id, true); err == nil {
			t.Fatal("authorized a complete session")
		}
	})
	t.Run("no update after the order", func(t *testing.T) {
		expectCode(t, e.do("POST", "/payments/v1/sessions/"+id, map[string]any{"merchant_reference2": "x"}), http.StatusForbidden, "INVALID_OPERATION")
	})
	t.Run("cancel consumed", func(t *testing.T) {
		expectStatus(t, e.do("DELETE", "/payments/v1/authorizations/"+tok, nil), http.StatusForbidden)
	})
}

func TestAuthorizationLifetime(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("valid until 60 min", func(t *testing.T) {
		id := e.createKP(kpBody())
		tok, _ := e.sim.Authorize(id, true)
		e.sim.Advance(59 * time.Minute)
		expectStatus(t, e.do("POST", "/payments/v1/authorizations/"+tok+"/order", orderBody()), http.StatusOK)
	})
	t.Run("expired at 60 min", func(t *testing.T) {
		id := e.createKP(kpBody())
		tok, _ := e.sim.Authorize(id, true)
		e.sim.Advance(60 * time.Minute)
		r := e.do("POST", "/payments/v1/authorizations/"+tok+"/order", orderBody())
		expectStatus(t, r, http.StatusNotFound)
		if eb := r.errBody(t); eb.ErrorCode != "NOT_FOUND" || eb.ErrorMessages[0] != "Invalid authorization token" {
			t.Fatalf("body %s", r.body)
		}
		expectStatus(t, e.do("DELETE", "/payments/v1/authorizations/"+tok, nil), http.StatusNotFound)
	})
	t.Run("superseded", func(t *testing.T) {
		id := e.createKP(kpBody())
		old, _ := e.sim.Authorize(id, true)
		newer, _ := e.sim.Authorize(id, true)
		expectStatus(t, e.do("POST", "/payments/v1/authorizations/"+old+"/order", orderBody()), http.StatusNotFound)
		expectStatus(t, e.do("POST", "/payments/v1/authorizations/"+newer+"/order", orderBody()), http.StatusOK)
	})
	t.Run("cancelled", func(t *testing.T) {
		id := e.createKP(kpBody())
		tok, _ := e.sim.Authorize(id, true)
		expectStatus(t, e.do("DELETE", "/payments/v1/authorizations/"+tok, nil), http.StatusNoContent)
		expectStatus(t, e.do("POST", "/payments/v1/authorizations/"+tok+"/order", orderBody()), http.StatusNotFound)
		expectStatus(t, e.do("DELETE", "/payments/v1/authorizations/"+tok, nil), http.StatusNotFound)
	})
	t.Run("unknown", func(t *testing.T) {
		expectStatus(t, e.do("POST", "/payments/v1/authorizations/nope/order", orderBody()), http.StatusNotFound)
		expectStatus(t, e.do("DELETE", "/payments/v1/authorizations/nope", nil), http.StatusNotFound)
	})
	t.Run("declined and unknown session", func(t *testing.T) {
		id := e.createKP(kpBody())
		if _, err := e.sim.Authorize(id, false); err != ErrDeclined {
			t.Fatalf("decline: %v", err)
		}
		if _, err := e.sim.Authorize("nope", true); err != ErrNotFound {
			t.Fatalf("unknown: %v", err)
		}
	})
}
