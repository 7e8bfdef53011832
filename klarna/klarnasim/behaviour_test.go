package klarnasim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/klarna"
)

// The harsher replay modes answer a repeated place-order the way Klarna's
// error page lists (FACTS 8.2), with an identical or a different body; the
// order is not placed twice, and the answers are what the OpenAPI documents
// allow (newEnv checks every answer).
func TestReplayModes(t *testing.T) {
	for _, tc := range []struct {
		mode         string
		status       int
		code, msgSub string
	}{
		{ReplayConsumed, http.StatusForbidden, "INVALID_OPERATION", "already consumed"},
		{ReplaySessionCompleted, http.StatusNotFound, "SESSION_COMPLETED", "already been completed"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Behaviour = Behaviour{Replay: tc.mode} })
			id := e.createKP(kpBody())
			tok, err := e.sim.Authorize(id, true)
			if err != nil {
				t.Fatal(err)
			}
			path := "/payments/v1/authorizations/" + tok + "/order"
			r := e.do("POST", path, orderBody())
			expectStatus(t, r, http.StatusOK)
			for _, body := range []map[string]any{orderBody(), func() map[string]any { b := orderBody(); b["merchant_reference2"] = "x"; return b }()} {
				r = e.do("POST", path, body)
				expectStatus(t, r, tc.status)
				if eb := r.errBody(t); eb.ErrorCode != tc.code || len(eb.ErrorMessages) != 1 || !strings.Contains(eb.ErrorMessages[0], tc.msgSub) {
					t.Fatalf("replay answered %s", r.body)
				}
				if !klarna.IsAlreadyOrdered(&klarna.Error{HTTPStatus: r.status, Code: r.errBody(t).ErrorCode, Messages: r.errBody(t).ErrorMessages}) {
					t.Fatalf("hppd's client would not read %s as an existing order", r.body)
				}
			}
			if n := len(e.sim.Orders()); n != 1 {
				t.Fatalf("%d orders", n)
			}
		})
	}
	t.Run(ReplayIdentical, func(t *testing.T) {
		e := newEnv(t, nil)
		if b := e.sim.CurrentBehaviour(); b.Replay != ReplayIdentical {
			t.Fatalf("default behaviour %+v", b)
		}
		id := e.createKP(kpBody())
		tok, _ := e.sim.Authorize(id, true)
		path := "/payments/v1/authorizations/" + tok + "/order"
		first := e.do("POST", path, orderBody())
		again := e.do("POST", path, orderBody())
		expectStatus(t, again, http.StatusOK)
		if !bytes.Equal(first.body, again.body) {
			t.Fatalf("identical replay answered %s, first %s", again.body, first.body)
		}
	})
}

// The HPP read carries the order id of the order placed through KP, unless
// the behaviour hides it.
func TestHPPReadOrderIDOfKPOrder(t *testing.T) {
	for _, hidden := range []bool{false, true} {
		e := newEnv(t, func(o *Options) { o.Behaviour = Behaviour{HPPOrderIDHidden: hidden} })
		kpID := e.createKP(kpBody())
		h := e.createHPP(kpID, nil, map[string]any{"place_order_mode": "NONE"})
		if _, _, err := e.sim.Act(h.SessionID, ActionPay); err != nil {
			t.Fatal(err)
		}
		st := e.readHPP(h.SessionID)
		if st.Status != klarna.HPPCompleted || st.AuthorizationToken == "" || st.OrderID != "" {
			t.Fatalf("before the order: %+v", st)
		}
		r := e.do("POST", "/payments/v1/authorizations/"+st.AuthorizationToken+"/order", orderBody())
		expectStatus(t, r, http.StatusOK)
		var o klarna.Order
		r.json(t, &o)
		st = e.readHPP(h.SessionID)
		if want := map[bool]string{false: o.OrderID, true: ""}[hidden]; st.OrderID != want {
			t.Fatalf("hidden=%v: HPP read order_id %q, want %q", hidden, st.OrderID, want)
		}
	}
}

// With PaymentMethodString the order answers carry the guides' string form
// (not what the OpenAPI documents say, so this test talks to the handler
// directly).
func TestPaymentMethodString(t *testing.T) {
	sim := New(Options{Seed: 1, Behaviour: Behaviour{PaymentMethodString: true}})
	defer sim.Close()
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	post := func(path string, body any) (int, map[string]json.RawMessage) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", srv.URL+path, bytes.NewReader(b))
		req.SetBasicAuth("sim", "sim")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	code, kp := post("/payments/v1/sessions", kpBody())
	if code != 200 {
		t.Fatalf("create KP: %d", code)
	}
	var kpID string
	_ = json.Unmarshal(kp["session_id"], &kpID)
	tok, err := sim.Authorize(kpID, true)
	if err != nil {
		t.Fatal(err)
	}
	code, order := post("/payments/v1/authorizations/"+tok+"/order", orderBody())
	if code != 200 || string(order["authorized_payment_method"]) != `"invoice"` {
		t.Fatalf("place order: %d %s", code, order["authorized_payment_method"])
	}
	ct := sim.CreateToken(BehaviorOK, 0)
	code, order = post("/customer-token/v1/tokens/"+ct+"/order", tokenOrderBody())
	if code != 200 || string(order["authorized_payment_method"]) != `"card"` {
		t.Fatalf("token order: %d %s", code, order["authorized_payment_method"])
	}
}

// A garbled answer is cut off after the effect: the order exists.
func TestGarbleFault(t *testing.T) {
	sim := New(Options{Seed: 1, Now: func() time.Time { return t0 }})
	defer sim.Close()
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	sim.SetFaults(Faults{Operations: map[string][]FaultRule{OpCreateTokenOrder: {{GarbleRate: 1}}}})
	b, _ := json.Marshal(tokenOrderBody())
	req, _ := http.NewRequest("POST", srv.URL+"/customer-token/v1/tokens/"+sim.CreateToken(BehaviorOK, 0)+"/order", bytes.NewReader(b))
	req.SetBasicAuth("sim", "sim")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v any
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&v) == nil {
		t.Fatalf("status %d, body decodes: %v", resp.StatusCode, v)
	}
	if n := len(sim.Orders()); n != 1 {
		t.Fatalf("%d orders", n)
	}
}

func TestBehaviourDriver(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/_sim/behaviour", map[string]any{"replay": "consumed", "hpp_order_id_hidden": true})
	expectStatus(t, r, http.StatusOK)
	if b := e.sim.CurrentBehaviour(); b.Replay != ReplayConsumed || !b.HPPOrderIDHidden || b.PaymentMethodString {
		t.Fatalf("behaviour %+v", b)
	}
	expectStatus(t, e.do("POST", "/_sim/behaviour", map[string]any{"replay": "kind"}), http.StatusBadRequest)
	expectStatus(t, e.do("POST", "/_sim/behaviour", map[string]any{"unknown": 1}), http.StatusBadRequest)
	if b := e.sim.CurrentBehaviour(); b.Replay != ReplayConsumed {
		t.Fatalf("a refused change changed the behaviour: %+v", b)
	}
}
