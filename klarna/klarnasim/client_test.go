package klarnasim

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hppd/hppd/klarna"
)

// client returns hppd's Klarna client pointed at the simulator, with fast
// resends.
func (e *env) client() *klarna.Client {
	e.t.Helper()
	c, err := klarna.New(klarna.Config{
		BaseURL: e.srv.URL, Username: "sim", Password: "sim",
		BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, MaxAttempts: 4,
		CreateSessionRate: -1, OtherRate: -1, TokenOrderRate: -1,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func sampleLines() []klarna.OrderLine {
	return []klarna.OrderLine{
		{Type: "physical", Name: "Shoe", Quantity: 2, UnitPrice: 10000, TaxRate: 2500, TotalAmount: 20000, TotalTaxAmount: 4000},
		{Type: "shipping_fee", Name: "Post", Quantity: 1, UnitPrice: 4900, TaxRate: 2500, TotalAmount: 4900, TotalTaxAmount: 980},
	}
}

// TestClientFallbackFlow runs hppd's client through the whole fallback
// purchase of FACTS 3.3 against the simulator.
func TestClientFallbackFlow(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	ctx := context.Background()
	tok := e.sim.CreateToken(BehaviorUnavailable, 0)
	charge := &klarna.TokenOrderRequest{PurchaseCurrency: "SEK", OrderAmount: 24900, OrderTaxAmount: 4980, OrderLines: sampleLines()}

	_, err := c.CreateTokenOrder(ctx, tok, charge, "charge-1")
	if !klarna.IsFallbackTrigger(err) {
		t.Fatalf("want a fallback trigger, got %v", err)
	}
	kp, err := c.CreateKPSession(ctx, &klarna.KPSessionRequest{
		Intent: "buy", AcquiringChannel: "ECOMMERCE", PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE",
		OrderAmount: 24900, OrderTaxAmount: 4980, OrderLines: sampleLines(),
		Customer: &klarna.Customer{CustomerToken: tok},
	})
	if err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, nil)
	h, err := c.CreateHPPSession(ctx, &klarna.HPPSessionRequest{
		PaymentSessionURL: c.PaymentSessionURL(kp.SessionID),
		MerchantURLs: &klarna.HPPMerchantURLs{
			Success:      "https://shop.example/ok?hpp={{session_id}}&t={{authorization_token}}",
			StatusUpdate: rc.srv.URL + "/cb?hppId={{session_id}}&secret=x",
		},
		Options: &klarna.HPPOptions{PlaceOrderMode: klarna.PlaceOrderModeNone},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.sim.Act(h.SessionID, ActionPay); err != nil {
		t.Fatal(err)
	}
	st, err := c.ReadHPPSession(ctx, h.SessionID)
	if err != nil || st.Status != klarna.HPPCompleted || st.AuthorizationToken == "" {
		t.Fatalf("read %+v %v", st, err)
	}

	// The first place-order answer is lost (503 after the effect); the
	// client resends the same bytes and gets the same order.
	e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{OpPlaceOrder: {{ErrorRate: 1, AfterEffect: true}}}})
	order := &klarna.OrderRequest{PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE",
		OrderAmount: 24900, OrderTaxAmount: 4980, OrderLines: sampleLines()}
	if _, err := c.PlaceOrder(ctx, st.AuthorizationToken, order, "place-"+h.SessionID); !klarna.IsTransient(err) {
		t.Fatalf("want a transient failure while the fault lasts, got %v", err)
	}
	e.sim.SetFaults(Faults{})
	o, err := c.PlaceOrder(ctx, st.AuthorizationToken, order, "place-"+h.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	orders := e.sim.Orders()
	if len(orders) != 1 || orders[0].OrderID != o.OrderID {
		t.Fatalf("orders %+v, answer %s", orders, o.OrderID)
	}
	var placeCalls int
	var firstBody string
	for _, r := range e.sim.Requests() {
		if r.Operation != OpPlaceOrder {
			continue
		}
		placeCalls++
		if firstBody == "" {
			firstBody = r.Body
		}
		if r.Body != firstBody || r.IdempotencyKey != "place-"+h.SessionID {
			t.Fatalf("a resend changed the body or key: %+v", r)
		}
	}
	if placeCalls != 5 {
		t.Fatalf("%d place-order calls, want 4 attempts then 1", placeCalls)
	}

	// The token is recovered.
	if _, err := c.CreateTokenOrder(ctx, tok, charge, "charge-2"); err != nil {
		t.Fatalf("charge after the fallback: %v", err)
	}
	waitCallbacks(t, e.sim)
	if got := rc.statuses(); len(got) != 2 || got[1] != klarna.HPPCompleted {
		t.Fatalf("callbacks %v", got)
	}
}

// TestClientResendsThrough429 checks the 429 burst against the client's
// resend policy: the burst is absorbed and one order results.
func TestClientResendsThrough429(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	tok := e.sim.CreateToken(BehaviorOK, 0)
	e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
		OpCreateTokenOrder: {{Burst429: &Burst{Every: 100, Length: 2}}},
	}})
	req := &klarna.TokenOrderRequest{PurchaseCurrency: "SEK", OrderAmount: 24900, OrderTaxAmount: 4980, OrderLines: sampleLines()}
	if _, err := c.CreateTokenOrder(context.Background(), tok, req, "k-429"); err != nil {
		t.Fatal(err)
	}
	var statuses []int
	for _, r := range e.sim.Requests() {
		statuses = append(statuses, r.Status)
	}
	if len(statuses) != 3 || statuses[0] != http.StatusTooManyRequests || statuses[2] != http.StatusOK || len(e.sim.Orders()) != 1 {
		t.Fatalf("statuses %v, %d orders", statuses, len(e.sim.Orders()))
	}
}
