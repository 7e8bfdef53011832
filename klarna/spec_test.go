package klarna

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hppd/hppd/internal/klarnaspec"
)

// TestRequestsMatchOpenAPI sends every operation through the client and
// validates each request (method, path, headers, body) against Klarna's
// OpenAPI documents in ../shared/klarna/openapi, and each canned answer the
// other tests decode against the declared responses. Without ../shared the
// test is skipped, or fails when CI is set.
func TestRequestsMatchOpenAPI(t *testing.T) {
	spec := klarnaspec.MustLoad(t)
	for _, tc := range opCases(t) {
		t.Run(tc.op, func(t *testing.T) {
			rep := reply{status: tc.status}
			if tc.respBody != "" {
				rep = jsonReply(tc.status, tc.respBody)
			}
			srv := newRecorder(t, rep)
			c, _ := testClient(t, srv.URL, nil)
			if _, err := tc.call(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			r := srv.requests()[0]
			if err := spec.ValidateRequest(r.Method, r.URI, r.Header, r.Body); err != nil {
				t.Fatalf("request does not match the OpenAPI documents: %v", err)
			}
			respHeader := http.Header{}
			for k, v := range rep.header {
				respHeader.Set(k, v)
			}
			if err := spec.ValidateResponse(r.Method, r.URI, r.Header, r.Body, rep.status, respHeader, []byte(rep.body)); err != nil {
				t.Fatalf("canned answer does not match the OpenAPI documents: %v", err)
			}
		})
	}
}

// TestRequestVariantsMatchOpenAPI covers request shapes the fixed cases do
// not: the fallback KP session with a customer token (FACTS 7.1), HPP
// options with a single category, SMS distribution, and a token order with
// a shipping address and every optional line field.
func TestRequestVariantsMatchOpenAPI(t *testing.T) {
	spec := klarnaspec.MustLoad(t)
	srv := newRecorder(t, jsonReply(200, `{}`))
	c, _ := testClient(t, srv.URL, nil)
	ctx := context.Background()

	lines := []OrderLine{
		{Type: "physical", Reference: "SKU-1", Name: "Shoe", Quantity: 1, QuantityUnit: "pcs", UnitPrice: 12000, TaxRate: 2000,
			TotalAmount: 10000, TotalDiscountAmount: 2000, TotalTaxAmount: 1667, MerchantData: "m", ProductURL: "https://shop.example/p/1",
			ImageURL: "https://shop.example/i/1.png", ProductIdentifiers: &ProductIdentifiers{Brand: "B", CategoryPath: "Shoes > Running",
				GlobalTradeItemNumber: "4912345678904", ManufacturerPartNumber: "AD-1", Color: "white", Size: "42"},
			Subscription: &Subscription{Name: "Monthly socks", Interval: "MONTH", IntervalCount: 1}},
		{Type: "shipping_fee", Name: "Shipping", Quantity: 1, UnitPrice: 500, TaxRate: 2000, TotalAmount: 500, TotalTaxAmount: 83},
	}
	addr := &Address{GivenName: "Testperson-se", FamilyName: "Approved", Email: "customer@email.se", Phone: "+46765260000",
		StreetAddress: "Sveavägen 46", PostalCode: "11134", City: "Stockholm", Country: "SE", Title: "Mr"}
	_, _ = c.CreateKPSession(ctx, &KPSessionRequest{
		AcquiringChannel: "ECOMMERCE", Intent: "buy", PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE",
		OrderAmount: 10500, OrderTaxAmount: 1750, OrderLines: lines, MerchantReference1: "o-1", MerchantReference2: "c-1",
		MerchantData: `{"charge":"c-1"}`, BillingAddress: addr, ShippingAddress: addr,
		Customer: &Customer{Type: "person", DateOfBirth: "1970-01-01", CustomerToken: "krn:partner:eu:playground:identity:customer-token:abc"},
	})
	_, _ = c.CreateHPPSession(ctx, &HPPSessionRequest{
		PaymentSessionURL: c.PaymentSessionURL("kp-1"), ProfileID: "87ab3565-5e06-4006-9ada-8eedc6926703",
		Options: &HPPOptions{PlaceOrderMode: PlaceOrderModeCapture, PaymentMethodCategory: "PAY_NOW", ShowSubtotalDetail: "HIDE",
			LogoURL: "https://shop.example/logo.png", PageTitle: "Pay"},
	})
	_ = c.DistributeHPPSession(ctx, "h-1", &DistributionRequest{Method: "sms", ContactInformation: DistributionContact{Phone: "07000212345", PhoneCountry: "SE"}})
	_, _ = c.PlaceOrder(ctx, "auth-1", &OrderRequest{PurchaseCountry: "SE", PurchaseCurrency: "SEK", OrderAmount: 10500, OrderTaxAmount: 1750,
		OrderLines: lines, AutoCapture: true, BillingAddress: addr, ShippingAddress: addr, MerchantData: "x"}, "k-1")
	_, _ = c.CreateTokenOrder(ctx, "ct-1", &TokenOrderRequest{PurchaseCurrency: "SEK", OrderAmount: 10500, OrderTaxAmount: 1750,
		OrderLines: lines, ShippingAddress: addr, MerchantReference2: "r2", MerchantData: "x"}, "k-2")

	reqs := srv.requests()
	if len(reqs) != 5 {
		t.Fatalf("server saw %d requests, want 5", len(reqs))
	}
	for _, r := range reqs {
		if err := spec.ValidateRequest(r.Method, r.URI, r.Header, r.Body); err != nil {
			t.Errorf("%s %s: %v", r.Method, r.URI, err)
		}
	}
}

// TestOpenAPIRejectsBadBodies proves the validation above has teeth: the
// same path with a body Klarna would refuse fails.
func TestOpenAPIRejectsBadBodies(t *testing.T) {
	spec := klarnaspec.MustLoad(t)
	srv := newRecorder(t, jsonReply(200, `{}`))
	c, _ := testClient(t, srv.URL, nil)
	_, _ = c.CreateKPSession(context.Background(), &KPSessionRequest{PurchaseCountry: "Sweden", PurchaseCurrency: "SEK", OrderAmount: 1})
	r := srv.requests()[0]
	err := spec.ValidateRequest(r.Method, r.URI, r.Header, r.Body)
	if err == nil || !strings.Contains(err.Error(), "purchase_country") {
		t.Fatalf("err = %v, want a purchase_country violation", err)
	}
}
