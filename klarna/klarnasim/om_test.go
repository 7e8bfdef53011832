package klarnasim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/hppd/hppd/klarna"
)

// hits records the callbacks a merchant endpoint receives.
type hits struct {
	mu   sync.Mutex
	srv  *httptest.Server
	got  []hit
	code int
}

type hit struct {
	path, query string
	body        map[string]string
}

func newHits(t *testing.T) *hits {
	h := &hits{code: http.StatusOK}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]string
		_ = json.Unmarshal(b, &m)
		h.mu.Lock()
		h.got = append(h.got, hit{path: r.URL.Path, query: r.URL.RawQuery, body: m})
		code := h.code
		h.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hits) all() []hit {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hit(nil), h.got...)
}

func TestAuthorizationCallback(t *testing.T) {
	e := newEnv(t, nil)
	h := newHits(t)
	b := kpBody()
	b["merchant_urls"] = map[string]any{"authorization": h.srv.URL + "/auth?secret=s3cr3t&kp={session.id}"}
	kp := e.createKP(b)
	tok, err := e.sim.Authorize(kp, true)
	if err != nil {
		t.Fatal(err)
	}
	waitCallbacks(t, e.sim)
	got := h.all()
	if len(got) != 1 || got[0].path != "/auth" || got[0].query != "secret=s3cr3t&kp="+kp ||
		got[0].body["authorization_token"] != tok || got[0].body["session_id"] != kp || len(got[0].body) != 2 {
		t.Fatalf("callbacks %+v", got)
	}
	var read klarna.KPSessionRead
	e.do("GET", "/payments/v1/sessions/"+kp, nil).json(t, &read)
	if read.AuthorizationToken != tok {
		t.Fatalf("session read authorization_token %q, want %q", read.AuthorizationToken, tok)
	}

	t.Run("faults of another kind spare it", func(t *testing.T) {
		e.sim.SetFaults(Faults{Callbacks: &CallbackFaults{DropRate: 1, Kinds: []string{CallbackStatusUpdate}}})
		if _, err := e.sim.Authorize(kp, true); err != nil {
			t.Fatal(err)
		}
		waitCallbacks(t, e.sim)
		if n := len(h.all()); n != 2 {
			t.Fatalf("%d callbacks, want 2", n)
		}
	})
	t.Run("its own faults drop it", func(t *testing.T) {
		e.sim.SetFaults(Faults{Callbacks: &CallbackFaults{DropRate: 1, Kinds: []string{CallbackAuthorization}}})
		if _, err := e.sim.Authorize(kp, true); err != nil {
			t.Fatal(err)
		}
		waitCallbacks(t, e.sim)
		if n := len(h.all()); n != 2 {
			t.Fatalf("%d callbacks, want 2 (the third dropped)", n)
		}
		cbs := e.sim.Callbacks()
		if last := cbs[len(cbs)-1]; !last.Dropped || last.Kind != CallbackAuthorization || last.SessionID != kp {
			t.Fatalf("last callback record %+v", last)
		}
	})
	t.Run("a refusal is retried", func(t *testing.T) {
		e.sim.SetFaults(Faults{})
		h.mu.Lock()
		h.code = http.StatusServiceUnavailable
		h.mu.Unlock()
		if _, err := e.sim.Authorize(kp, true); err != nil {
			t.Fatal(err)
		}
		waitCallbacks(t, e.sim)
		if n := len(h.all()); n != 2+4 {
			t.Fatalf("%d callbacks, want 2 + 4 attempts", n)
		}
	})
}

func TestAuthorizationURLMustBeHTTPS(t *testing.T) {
	e := newEnv(t, nil)
	b := kpBody()
	b["merchant_urls"] = map[string]any{"authorization": "http://shop.example/auth"}
	expectBadValue(t, e.do("POST", "/payments/v1/sessions", b), "merchant_urls.authorization")
	o := orderBody()
	o["merchant_urls"] = map[string]any{"notification": "http://shop.example/notify"}
	kp := e.createKP(kpBody())
	tok, err := e.sim.Authorize(kp, true)
	if err != nil {
		t.Fatal(err)
	}
	expectBadValue(t, e.do("POST", "/payments/v1/authorizations/"+tok+"/order", o), "merchant_urls.notification")
}

func TestFraudReview(t *testing.T) {
	e := newEnv(t, nil)
	h := newHits(t)
	kp := e.createKP(kpBody())
	if err := e.sim.HoldForFraudReview(kp); err != nil {
		t.Fatal(err)
	}
	tok, err := e.sim.Authorize(kp, true)
	if err != nil {
		t.Fatal(err)
	}
	o := orderBody()
	o["merchant_urls"] = map[string]any{"notification": h.srv.URL + "/notify?secret=s3cr3t&order={order.id}"}
	r := e.do("POST", "/payments/v1/authorizations/"+tok+"/order", o)
	expectStatus(t, r, http.StatusOK)
	var order klarna.Order
	r.json(t, &order)
	if order.FraudStatus != klarna.FraudPending {
		t.Fatalf("order %s", r.body)
	}
	read := func() klarna.OMOrder {
		t.Helper()
		r := e.do("GET", "/ordermanagement/v1/orders/"+order.OrderID, nil)
		expectStatus(t, r, http.StatusOK)
		var om klarna.OMOrder
		r.json(t, &om)
		return om
	}
	if om := read(); om.OrderID != order.OrderID || om.FraudStatus != klarna.FraudPending || om.Status != "AUTHORIZED" {
		t.Fatalf("order management read %+v", om)
	}
	expectStatus(t, e.do("POST", "/_sim/orders/"+order.OrderID+"/fraud", map[string]string{"decision": "MAYBE"}), http.StatusBadRequest)
	expectStatus(t, e.do("POST", "/_sim/orders/"+order.OrderID+"/fraud", map[string]string{"decision": "REJECTED"}), http.StatusOK)
	waitCallbacks(t, e.sim)
	got := h.all()
	if len(got) != 1 || got[0].query != "secret=s3cr3t&order="+order.OrderID ||
		got[0].body["order_id"] != order.OrderID || got[0].body["event_type"] != klarna.FraudRiskRejected {
		t.Fatalf("notifications %+v", got)
	}
	if om := read(); om.FraudStatus != klarna.FraudRejected || om.Status != "CANCELLED" {
		t.Fatalf("after the decision %+v", om)
	}
	if err := e.sim.DecideFraud(order.OrderID, klarna.FraudAccepted); !errors.Is(err, ErrConflict) {
		t.Fatalf("second decision: %v", err)
	}
	if err := e.sim.DecideFraud("no-such-order", klarna.FraudAccepted); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown order: %v", err)
	}
	r = e.do("GET", "/ordermanagement/v1/orders/no-such-order", nil)
	expectStatus(t, r, http.StatusNotFound)
	if r.errBody(t).ErrorCode != "NO_SUCH_ORDER" {
		t.Fatalf("unknown order %s", r.body)
	}

	t.Run("orders not held are accepted and may still be stopped", func(t *testing.T) {
		kp := e.createKP(kpBody())
		tok, _ := e.sim.Authorize(kp, true)
		r := e.do("POST", "/payments/v1/authorizations/"+tok+"/order", orderBody())
		var order klarna.Order
		r.json(t, &order)
		if order.FraudStatus != klarna.FraudAccepted {
			t.Fatalf("order %s", r.body)
		}
		if err := e.sim.DecideFraud(order.OrderID, klarna.FraudStopped); err != nil {
			t.Fatal(err)
		}
		if err := e.sim.DecideFraud(order.OrderID, klarna.FraudRejected); !errors.Is(err, ErrConflict) {
			t.Fatalf("after STOPPED: %v", err)
		}
	})
	t.Run("held tokens", func(t *testing.T) {
		r := e.do("POST", "/_sim/tokens", map[string]any{"fraud_review": true})
		expectStatus(t, r, http.StatusCreated)
		var tk map[string]string
		r.json(t, &tk)
		r = e.charge(tk["customer_token"], "k-fraud-1")
		expectStatus(t, r, http.StatusOK)
		var order klarna.Order
		r.json(t, &order)
		if order.FraudStatus != klarna.FraudPending {
			t.Fatalf("token order %s", r.body)
		}
	})
	if err := e.sim.HoldForFraudReview("nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("hold unknown: %v", err)
	}
	if e.validated.Load() == 0 {
		t.Fatal("no answer was checked against the OpenAPI documents")
	}
}
