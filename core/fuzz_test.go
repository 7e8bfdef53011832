package core

import (
	"encoding/json"
	"math"
	"math/big"
	"strings"
	"testing"
)

// Fuzz targets of the money arithmetic. Each holds core to an exact oracle
// (math/big) of Klarna's rules; `make fuzz` runs each for a few seconds and the
// seed corpora in testdata/fuzz run as regular tests.

func FuzzMulAddOK(f *testing.F) {
	f.Add(int64(0), int64(0))
	f.Add(int64(math.MaxInt64), int64(2))
	f.Add(int64(math.MinInt64), int64(-1))
	f.Add(int64(-1), int64(math.MinInt64))
	f.Add(int64(3037000500), int64(3037000500))
	f.Add(int64(1)<<62, int64(4))
	f.Fuzz(func(t *testing.T, a, b int64) {
		m, ok := mulOK(a, b)
		want := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
		if ok != want.IsInt64() || (ok && m != want.Int64()) {
			t.Fatalf("mulOK(%d, %d) = %d, %v; exact %s", a, b, m, ok, want)
		}
		s, ok := addOK(a, b)
		want = new(big.Int).Add(big.NewInt(a), big.NewInt(b))
		if ok != want.IsInt64() || (ok && s != want.Int64()) {
			t.Fatalf("addOK(%d, %d) = %d, %v; exact %s", a, b, s, ok, want)
		}
	})
}

// lineTypeOf maps a fuzzed byte onto the line types (and one unknown).
func lineTypeOf(b uint8) string {
	types := []string{"", "physical", "discount", "shipping_fee", "sales_tax", "digital", "gift_card", "store_credit", "surcharge", "coupon"}
	return types[int(b&0x3f)%len(types)]
}

// klarnaAcceptsLine is Klarna's rule for the money fields of one line (FACTS
// 2.2, the OpenAPI order_line schema; negative amounts only on discount,
// gift_card and store_credit lines), plus hppd's two extra bounds: negative
// amounts stay above −MaxLineAmount, and |quantity × unit_price| stays within
// MaxOrderAmount (so no intermediate value can overflow int64).
func klarnaAcceptsLine(typ string, qty, price, disc, total, rate, tax int64) bool {
	if !LineTypes[typ] || qty < 0 || disc < 0 || rate < 0 || rate > taxRateMax {
		return false
	}
	lo := int64(0)
	if negativeLineTypes[typ] {
		lo = -MaxLineAmount
	}
	if price > MaxLineAmount || price < lo || total > MaxLineAmount || total < lo {
		return false
	}
	gross := new(big.Int).Mul(big.NewInt(qty), big.NewInt(price))
	if gross.CmpAbs(big.NewInt(MaxOrderAmount)) > 0 {
		return false
	}
	if exactLineTotal(qty, price, disc).Cmp(big.NewInt(total)) != 0 {
		return false
	}
	return exactLineTaxOK(tax, total, rate)
}

// FuzzOrderLineMoney: a line passes validation exactly when Klarna's
// arithmetic accepts it (never kinder, so a storefront's mistake costs no
// Klarna call; never stricter, so a valid purchase is not refused).
func FuzzOrderLineMoney(f *testing.F) {
	f.Add(uint8(1), int64(2), int64(5000), int64(0), int64(10000), int64(2500), int64(2000))
	f.Add(uint8(1), int64(1), int64(101), int64(0), int64(101), int64(2500), int64(19))
	f.Add(uint8(2), int64(1), int64(-1000), int64(0), int64(-1000), int64(2500), int64(-200))
	f.Add(uint8(1), int64(1), int64(-100), int64(0), int64(-100), int64(2500), int64(-20))
	f.Add(uint8(1), int64(math.MaxInt64), int64(2), int64(0), int64(0), int64(0), int64(0))
	f.Add(uint8(1), int64(1)<<62, int64(4), int64(0), int64(0), int64(0), int64(0))
	f.Add(uint8(1), int64(1), int64(25), int64(0), int64(25), int64(10000), int64(12))
	f.Add(uint8(4), int64(1), int64(800), int64(0), int64(800), int64(0), int64(0))
	f.Add(uint8(1), int64(1), int64(100), int64(0), int64(100), int64(2500), int64(math.MinInt64))
	f.Add(uint8(0xc1), int64(3), int64(3333), int64(7), int64(0), int64(12345), int64(-2))
	f.Add(uint8(0xc2), int64(4), int64(-2499), int64(0), int64(0), int64(-600), int64(1))
	f.Fuzz(func(t *testing.T, typ uint8, qty, price, disc, total, rate, tax int64) {
		// The high bits of typ steer the fuzzer towards the boundary: a
		// total that is the exact line total, a rate in range, and a tax
		// within two units of the rounded one.
		if typ&0x40 != 0 && rate != math.MinInt64 {
			rate = max(rate, -rate) % (taxRateMax + 1)
		}
		if typ&0x80 != 0 {
			if exact := exactLineTotal(qty, price, disc); exact.IsInt64() {
				total = exact.Int64()
			}
			if total >= -MaxLineAmount && total <= MaxLineAmount && rate >= 0 && rate <= taxRateMax {
				tax = ExpectedLineTax(total, rate) + tax%3
			}
		}
		l := OrderLine{Type: lineTypeOf(typ), Name: "x", Quantity: qty, UnitPrice: price, TotalDiscountAmount: disc,
			TotalAmount: total, TaxRate: rate, TotalTaxAmount: tax}
		err := l.validate("order_lines[3]")
		want := klarnaAcceptsLine(l.Type, qty, price, disc, total, rate, tax)
		if (err == nil) != want {
			t.Fatalf("validate(%+v) = %v, Klarna's arithmetic accepts: %v", l, err, want)
		}
		if err != nil {
			e, ok := err.(*Error)
			if !ok || e.Code != CodeInvalid || !strings.HasPrefix(e.Field, "order_lines[3].") {
				t.Fatalf("error %v does not name a field of the line", err)
			}
		}
		// The tax hppd would suggest is always inside the tolerance.
		if total >= -MaxLineAmount && total <= MaxLineAmount && rate >= 0 && rate <= taxRateMax {
			if s := ExpectedLineTax(total, rate); !exactLineTaxOK(s, total, rate) || !TaxWithinTolerance(total, rate, s) {
				t.Fatalf("ExpectedLineTax(%d, %d) = %d is outside the tolerance", total, rate, s)
			}
		}
	})
}

// FuzzPurchaseJSON decodes arbitrary JSON as a purchase (the way the HTTP
// layer does) and validates it: no input panics, and an accepted purchase
// satisfies every sum exactly.
func FuzzPurchaseJSON(f *testing.F) {
	f.Add([]byte(`{"purchase_country":"SE","purchase_currency":"SEK","locale":"sv-SE","order_amount":10000,"order_tax_amount":2000,"order_lines":[{"type":"physical","name":"Cup","quantity":2,"unit_price":5000,"tax_rate":2500,"total_amount":10000,"total_tax_amount":2000}]}`))
	f.Add([]byte(`{"purchase_country":"US","purchase_currency":"USD","locale":"en-US","order_amount":10800,"order_tax_amount":800,"order_lines":[{"name":"Mug","quantity":1,"unit_price":10000,"total_amount":10000},{"type":"sales_tax","name":"Tax","quantity":1,"unit_price":800,"total_amount":800}]}`))
	f.Add([]byte(`{"purchase_country":"SE","purchase_currency":"SEK","locale":"sv-SE","order_amount":9000,"order_tax_amount":1800,"order_lines":[{"name":"Cup","quantity":1,"unit_price":10000,"tax_rate":2500,"total_amount":10000,"total_tax_amount":2000},{"type":"discount","name":"Off","quantity":1,"unit_price":-1000,"tax_rate":2500,"total_amount":-1000,"total_tax_amount":-200}]}`))
	f.Add([]byte(`{"order_amount":-1,"order_lines":[{"quantity":9223372036854775807,"unit_price":2}]}`))
	f.Add([]byte(`{"purchase_country":"SE","purchase_currency":"SEK","locale":"sv-SE","order_amount":0,"order_lines":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Purchase
		if json.Unmarshal(data, &p) != nil {
			return
		}
		if err := p.Validate(); err != nil {
			e, ok := err.(*Error)
			if !ok || e.Code != CodeInvalid || e.Field == "" {
				t.Fatalf("Validate = %v: not an invalid error naming a field", err)
			}
			return
		}
		sum, tax := new(big.Int), new(big.Int)
		for i, l := range p.OrderLines {
			if !klarnaAcceptsLine(l.Type, l.Quantity, l.UnitPrice, l.TotalDiscountAmount, l.TotalAmount, l.TaxRate, l.TotalTaxAmount) {
				t.Fatalf("accepted line %d breaks Klarna's arithmetic: %+v", i, l)
			}
			sum.Add(sum, big.NewInt(l.TotalAmount))
			if l.Type == "sales_tax" {
				tax.Add(tax, big.NewInt(l.TotalAmount))
			} else {
				tax.Add(tax, big.NewInt(l.TotalTaxAmount))
			}
		}
		if p.OrderAmount <= 0 || sum.Cmp(big.NewInt(p.OrderAmount)) != 0 || tax.Cmp(big.NewInt(p.OrderTaxAmount)) != 0 {
			t.Fatalf("accepted purchase does not add up: amount %d (lines %s), tax %d (lines %s)", p.OrderAmount, sum, p.OrderTaxAmount, tax)
		}
		if len(p.OrderLines) < 1 || len(p.OrderLines) > MaxOrderLines {
			t.Fatalf("accepted %d lines", len(p.OrderLines))
		}
	})
}
