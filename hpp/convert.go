package hpp

import (
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
)

func klarnaLines(lines []core.OrderLine) []klarna.OrderLine {
	out := make([]klarna.OrderLine, len(lines))
	for i, l := range lines {
		out[i] = klarna.OrderLine{
			Type: l.Type, Reference: l.Reference, Name: l.Name, Quantity: l.Quantity,
			QuantityUnit: l.QuantityUnit, UnitPrice: l.UnitPrice, TaxRate: l.TaxRate,
			TotalAmount: l.TotalAmount, TotalDiscountAmount: l.TotalDiscountAmount,
			TotalTaxAmount: l.TotalTaxAmount, MerchantData: l.MerchantData,
			ProductURL: l.ProductURL, ImageURL: l.ImageURL,
		}
		if s := l.Subscription; s != nil {
			out[i].Subscription = &klarna.Subscription{Name: s.Name, Interval: s.Interval, IntervalCount: s.IntervalCount}
		}
	}
	return out
}

func klarnaAddress(a *core.Address) *klarna.Address {
	if a == nil {
		return nil
	}
	k := klarna.Address(*a)
	return &k
}

// withSessionRef puts hppd's session id into merchant_reference2, or into
// merchant_reference1 when the storefront set only reference2, so the merchant
// finds an order in Klarna's portal even when hppd never learnt its id
// (FACTS 8.2). References the storefront set both stay as they are.
func withSessionRef(ref1, ref2, sessionID string) (string, string) {
	switch {
	case sessionID == "":
	case ref2 == "":
		ref2 = sessionID
	case ref1 == "":
		ref1 = sessionID
	}
	return ref1, ref2
}

// kpSessionRequest is the KP session for a purchase. A customer token, when
// given, goes into customer.customer_token with intent buy (FACTS 7.1).
func kpSessionRequest(p *core.Purchase, customerToken string) *klarna.KPSessionRequest {
	r := &klarna.KPSessionRequest{
		AcquiringChannel:   "ECOMMERCE",
		Intent:             "buy",
		PurchaseCountry:    p.PurchaseCountry,
		PurchaseCurrency:   p.PurchaseCurrency,
		Locale:             p.Locale,
		OrderAmount:        p.OrderAmount,
		OrderTaxAmount:     p.OrderTaxAmount,
		OrderLines:         klarnaLines(p.OrderLines),
		MerchantReference1: p.MerchantReference1,
		MerchantReference2: p.MerchantReference2,
		BillingAddress:     klarnaAddress(p.BillingAddress),
		ShippingAddress:    klarnaAddress(p.ShippingAddress),
	}
	if customerToken != "" {
		r.Customer = &klarna.Customer{CustomerToken: customerToken}
	}
	return r
}

// orderRequest is the KP place-order body: the same lines, amounts and
// addresses as the KP session, or Klarna answers 409.
func orderRequest(p *core.Purchase, autoCapture bool) *klarna.OrderRequest {
	return &klarna.OrderRequest{
		PurchaseCountry:    p.PurchaseCountry,
		PurchaseCurrency:   p.PurchaseCurrency,
		Locale:             p.Locale,
		OrderAmount:        p.OrderAmount,
		OrderTaxAmount:     p.OrderTaxAmount,
		OrderLines:         klarnaLines(p.OrderLines),
		MerchantReference1: p.MerchantReference1,
		MerchantReference2: p.MerchantReference2,
		AutoCapture:        autoCapture,
		BillingAddress:     klarnaAddress(p.BillingAddress),
		ShippingAddress:    klarnaAddress(p.ShippingAddress),
	}
}

// tokenOrderRequest is the customer token order body.
func tokenOrderRequest(p *core.Purchase, autoCapture bool) *klarna.TokenOrderRequest {
	return &klarna.TokenOrderRequest{
		PurchaseCurrency:   p.PurchaseCurrency,
		Locale:             p.Locale,
		OrderAmount:        p.OrderAmount,
		OrderTaxAmount:     p.OrderTaxAmount,
		OrderLines:         klarnaLines(p.OrderLines),
		MerchantReference1: p.MerchantReference1,
		MerchantReference2: p.MerchantReference2,
		AutoCapture:        autoCapture,
		ShippingAddress:    klarnaAddress(p.ShippingAddress),
	}
}

// kerr converts a Klarna failure into what hppd keeps of it.
func kerr(err error) *core.KlarnaError {
	var e *klarna.Error
	if !asKlarna(err, &e) {
		return &core.KlarnaError{Messages: []string{"no answer from klarna"}}
	}
	return &core.KlarnaError{HTTPStatus: e.HTTPStatus, Code: e.Code, Messages: e.Messages, CorrelationID: e.CorrelationID, Operation: e.Op}
}
