package klarna

import (
	"context"
	"testing"

	"github.com/hppd/hppd/internal/klarnaspec"
)

// TestMerchantURLsMatchOpenAPI checks the merchant_urls hppd sends (the
// authorization callback on a KP session, the fraud notification on a KP
// order) and an Order Management read against Klarna's OpenAPI documents.
func TestMerchantURLsMatchOpenAPI(t *testing.T) {
	spec := klarnaspec.MustLoad(t)
	srv := newRecorder(t, jsonReply(200, `{}`))
	c, _ := testClient(t, srv.URL, nil)
	ctx := context.Background()
	lines := []OrderLine{{Type: "physical", Name: "Shoe", Quantity: 1, UnitPrice: 2500, TaxRate: 2500, TotalAmount: 2500, TotalTaxAmount: 500}}
	_, _ = c.CreateKPSession(ctx, &KPSessionRequest{
		Intent: "buy", PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 2500, OrderTaxAmount: 500, OrderLines: lines,
		MerchantURLs: &KPMerchantURLs{Authorization: "https://hppd.example/klarna/kp/ses_1/authorization?secret=s3cr3t"},
	})
	_, _ = c.PlaceOrder(ctx, "auth-1", &OrderRequest{
		PurchaseCountry: "SE", PurchaseCurrency: "SEK", OrderAmount: 2500, OrderTaxAmount: 500, OrderLines: lines,
		MerchantURLs: &KPMerchantURLs{Notification: "https://hppd.example/klarna/kp/ses_1/notification?secret=s3cr3t"},
	}, "")
	_, _ = c.ReadOrder(ctx, "ord-1")
	reqs := srv.requests()
	if len(reqs) != 3 {
		t.Fatalf("server saw %d requests, want 3", len(reqs))
	}
	for _, r := range reqs {
		if err := spec.ValidateRequest(r.Method, r.URI, r.Header, r.Body); err != nil {
			t.Errorf("%s %s: %v", r.Method, r.URI, err)
		}
	}
	// A merchant URL over 2000 characters is one Klarna refuses: the
	// validation above has teeth.
	long := make([]byte, 2001)
	for i := range long {
		long[i] = 'a'
	}
	_, _ = c.CreateKPSession(ctx, &KPSessionRequest{
		PurchaseCountry: "SE", PurchaseCurrency: "SEK", OrderAmount: 2500, OrderTaxAmount: 500, OrderLines: lines,
		MerchantURLs: &KPMerchantURLs{Authorization: "https://hppd.example/" + string(long)},
	})
	r := srv.requests()[3]
	if err := spec.ValidateRequest(r.Method, r.URI, r.Header, r.Body); err == nil {
		t.Fatal("a 2001-character merchant_urls.authorization passed validation")
	}
}

func TestReadOrderNotFound(t *testing.T) {
	srv := newRecorder(t, jsonReply(404, `{"error_code":"NO_SUCH_ORDER","error_messages":["Order not found"],"correlation_id":"c-1"}`))
	c, _ := testClient(t, srv.URL, nil)
	_, err := c.ReadOrder(context.Background(), "ord-x")
	if !IsNotFound(err) {
		t.Fatalf("err = %v, want not found", err)
	}
	if _, err := c.ReadOrder(context.Background(), ""); err == nil {
		t.Fatal("empty order id accepted")
	}
}
