package core

import (
	"math"
	"math/big"
	"strings"
	"testing"
)

// The money rules of an order line, as Klarna states them (FACTS 2.2 and the
// OpenAPI order_line schema), computed exactly with math/big. They are the
// oracle the unit tests and the fuzz targets hold Validate to.

// exactLineTaxOK is |tax − total×rate/(10000+rate)| ≤ 1, exactly.
func exactLineTaxOK(tax, total, rate int64) bool {
	den := big.NewInt(10000 + rate)
	d := new(big.Int).Mul(big.NewInt(tax), den)
	d.Sub(d, new(big.Int).Mul(big.NewInt(total), big.NewInt(rate)))
	return d.Abs(d).Cmp(den) <= 0
}

// exactLineTotal is quantity×unit_price − total_discount_amount.
func exactLineTotal(qty, price, disc int64) *big.Int {
	t := new(big.Int).Mul(big.NewInt(qty), big.NewInt(price))
	return t.Sub(t, big.NewInt(disc))
}

func TestMulOKAgreesWithBigInts(t *testing.T) {
	cases := [][2]int64{
		{0, math.MaxInt64}, {math.MaxInt64, 0}, {1, math.MaxInt64}, {math.MaxInt64, 2},
		{math.MinInt64, 1}, {math.MinInt64, -1}, {-1, math.MinInt64}, {math.MinInt64, 2},
		{3037000499, 3037000499}, {3037000500, 3037000500}, {-3037000500, 3037000500},
		{-3037000499, -3037000499}, {100_000_000, 92233720368}, {100_000_000, 92233720369},
		{math.MaxInt64, -1}, {-1, -1}, {2, 4611686018427387904}, {-2, 4611686018427387904},
	}
	for _, c := range cases {
		got, ok := mulOK(c[0], c[1])
		want := new(big.Int).Mul(big.NewInt(c[0]), big.NewInt(c[1]))
		fits := want.IsInt64()
		if ok != fits || (ok && got != want.Int64()) {
			t.Errorf("mulOK(%d, %d) = %d, %v; exact %s", c[0], c[1], got, ok, want)
		}
	}
}

func TestAddOKAgreesWithBigInts(t *testing.T) {
	cases := [][2]int64{
		{0, 0}, {math.MaxInt64, 0}, {math.MaxInt64, 1}, {math.MinInt64, -1}, {math.MinInt64, 0},
		{math.MaxInt64, math.MinInt64}, {-1, math.MinInt64}, {1, math.MaxInt64}, {-1, math.MaxInt64},
		{math.MaxInt64 / 2, math.MaxInt64/2 + 1}, {math.MaxInt64 / 2, math.MaxInt64/2 + 2},
	}
	for _, c := range cases {
		got, ok := addOK(c[0], c[1])
		want := new(big.Int).Add(big.NewInt(c[0]), big.NewInt(c[1]))
		fits := want.IsInt64()
		if ok != fits || (ok && got != want.Int64()) {
			t.Errorf("addOK(%d, %d) = %d, %v; exact %s", c[0], c[1], got, ok, want)
		}
	}
}

// ExpectedLineTax rounds the exact tax to nearest, so it is always within
// half a minor unit of it and therefore always accepted.
func TestExpectedLineTaxIsTheNearestInteger(t *testing.T) {
	cases := []struct{ total, rate, want int64 }{
		{10000, 2500, 2000},
		{101, 2500, 20}, // 20.2
		{0, 2500, 0},
		{12345, 0, 0},
		{-1000, 2500, -200}, // discount line
		{25, 10000, 13},     // 12.5 rounds away from zero
		{-25, 10000, -13},
		{MaxLineAmount, 10000, MaxLineAmount / 2},
		{-MaxLineAmount, 10000, -MaxLineAmount / 2},
		{99_999_999, 2500, 20_000_000}, // 19999999.8
		{1, 1, 0},
	}
	for _, c := range cases {
		got := ExpectedLineTax(c.total, c.rate)
		if got != c.want {
			t.Errorf("ExpectedLineTax(%d, %d) = %d, want %d", c.total, c.rate, got, c.want)
		}
		// 2×|got×(10000+rate) − total×rate| ≤ 10000+rate: within one half.
		den := big.NewInt(10000 + c.rate)
		d := new(big.Int).Mul(big.NewInt(got), den)
		d.Sub(d, new(big.Int).Mul(big.NewInt(c.total), big.NewInt(c.rate)))
		d.Abs(d).Lsh(d, 1)
		if d.Cmp(den) > 0 {
			t.Errorf("ExpectedLineTax(%d, %d) = %d is more than half a unit from the exact tax", c.total, c.rate, got)
		}
		if !exactLineTaxOK(got, c.total, c.rate) {
			t.Errorf("ExpectedLineTax(%d, %d) = %d is outside Klarna's tolerance", c.total, c.rate, got)
		}
	}
}

// line returns a valid physical line of total 10000 at 25% tax.
func line() OrderLine {
	return OrderLine{Type: "physical", Name: "Cup", Quantity: 2, UnitPrice: 5000, TaxRate: 2500, TotalAmount: 10000, TotalTaxAmount: 2000}
}

func purchaseOf(lines ...OrderLine) Purchase {
	p := Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderLines: lines}
	for _, l := range lines {
		p.OrderAmount += l.TotalAmount
		if l.Type == "sales_tax" {
			p.OrderTaxAmount += l.TotalAmount
		} else {
			p.OrderTaxAmount += l.TotalTaxAmount
		}
	}
	return p
}

func TestOrderLineMoney(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(l *OrderLine)
		field string // "" = valid
	}{
		{"valid", func(*OrderLine) {}, ""},
		{"total is quantity times price minus discount", func(l *OrderLine) { l.TotalDiscountAmount, l.TotalAmount, l.TotalTaxAmount = 1000, 9000, 1800 }, ""},
		{"total off by one", func(l *OrderLine) { l.TotalAmount = 10001 }, ".total_amount"},
		{"discount not subtracted", func(l *OrderLine) { l.TotalDiscountAmount = 1000 }, ".total_amount"},
		{"negative quantity", func(l *OrderLine) { l.Quantity, l.TotalAmount = -2, -10000 }, ".quantity"},
		{"negative discount", func(l *OrderLine) { l.TotalDiscountAmount, l.TotalAmount = -1, 10001 }, ".total_discount_amount"},
		{"zero quantity", func(l *OrderLine) { l.Quantity, l.TotalAmount, l.TotalTaxAmount = 0, 0, 0 }, ""},
		{"unit price above the ceiling", func(l *OrderLine) { l.Quantity, l.UnitPrice, l.TotalAmount = 1, MaxLineAmount+1, MaxLineAmount+1 }, ".unit_price"},
		{"unit price at the ceiling", func(l *OrderLine) {
			l.Quantity, l.UnitPrice, l.TotalAmount, l.TotalTaxAmount = 1, MaxLineAmount, MaxLineAmount, ExpectedLineTax(MaxLineAmount, 2500)
		}, ""},
		{"total above the ceiling", func(l *OrderLine) { l.Quantity, l.TotalAmount = 30000, 150_000_000 }, ".total_amount"},
		{"quantity times price overflows int64", func(l *OrderLine) { l.Quantity, l.UnitPrice, l.TotalAmount = math.MaxInt64, 2, 0 }, ".total_amount"},
		{"quantity times price overflows to the total", func(l *OrderLine) {
			// 2^62 × 4 wraps to 0 in int64 arithmetic.
			l.Quantity, l.UnitPrice, l.TotalAmount, l.TotalTaxAmount = 1<<62, 4, 0, 0
		}, ".total_amount"},
		{"negative unit price on a physical line", func(l *OrderLine) {
			l.Quantity, l.UnitPrice, l.TotalAmount, l.TotalTaxAmount = 1, -100, -100, -20
		}, ".unit_price"},
		{"negative total on a physical line", func(l *OrderLine) {
			l.Quantity, l.UnitPrice, l.TotalDiscountAmount, l.TotalAmount, l.TotalTaxAmount = 1, 100, 200, -100, -20
		}, ".total_amount"},
		{"negative amounts on a discount line", func(l *OrderLine) {
			l.Type, l.Quantity, l.UnitPrice, l.TotalAmount, l.TotalTaxAmount = "discount", 1, -1000, -1000, -200
		}, ""},
		{"negative amounts on a gift card line", func(l *OrderLine) {
			l.Type, l.Quantity, l.UnitPrice, l.TaxRate, l.TotalAmount, l.TotalTaxAmount = "gift_card", 1, -1000, 0, -1000, 0
		}, ""},
		{"tax rate above 100%", func(l *OrderLine) { l.TaxRate = 10001 }, ".tax_rate"},
		{"negative tax rate", func(l *OrderLine) { l.TaxRate = -1 }, ".tax_rate"},
		{"tax one above the exact value", func(l *OrderLine) { l.TotalTaxAmount = 2001 }, ""},
		{"tax one below the exact value", func(l *OrderLine) { l.TotalTaxAmount = 1999 }, ""},
		{"tax two off", func(l *OrderLine) { l.TotalTaxAmount = 2002 }, ".total_tax_amount"},
		{"huge tax", func(l *OrderLine) { l.TotalTaxAmount = math.MaxInt64 }, ".total_tax_amount"},
		{"hugely negative tax", func(l *OrderLine) { l.TotalTaxAmount = math.MinInt64 }, ".total_tax_amount"},
		// Exact tax 20.2: Klarna accepts 20 and 21 (within 1 of 20.2) but not
		// 19, which is within 1 of the rounded 20 only.
		{"tax within one of the rounded but not of the exact value", func(l *OrderLine) {
			l.Quantity, l.UnitPrice, l.TotalAmount, l.TotalTaxAmount = 1, 101, 101, 19
		}, ".total_tax_amount"},
		{"tax 0.8 above the exact value", func(l *OrderLine) {
			l.Quantity, l.UnitPrice, l.TotalAmount, l.TotalTaxAmount = 1, 101, 101, 21
		}, ""},
		// Exact tax 12.5 (25 at 100%): 12 and 13 are within 0.5, 11.5 and
		// 13.5 are exactly 1 away (not integers), 11 and 14 are out.
		{"half unit exact tax, low", func(l *OrderLine) {
			l.Quantity, l.UnitPrice, l.TaxRate, l.TotalAmount, l.TotalTaxAmount = 1, 25, 10000, 25, 12
		}, ""},
		{"half unit exact tax, too low", func(l *OrderLine) {
			l.Quantity, l.UnitPrice, l.TaxRate, l.TotalAmount, l.TotalTaxAmount = 1, 25, 10000, 25, 11
		}, ".total_tax_amount"},
		{"half unit exact tax, too high", func(l *OrderLine) {
			l.Quantity, l.UnitPrice, l.TaxRate, l.TotalAmount, l.TotalTaxAmount = 1, 25, 10000, 25, 14
		}, ".total_tax_amount"},
		{"discount line tax is negative", func(l *OrderLine) {
			l.Type, l.Quantity, l.UnitPrice, l.TotalAmount, l.TotalTaxAmount = "discount", 1, -1000, -1000, 200
		}, ".total_tax_amount"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := line()
			c.edit(&l)
			err := l.validate("order_lines[0]")
			if c.field == "" {
				if err != nil {
					t.Fatalf("valid line refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("invalid line accepted: %+v", l)
			}
			e, ok := err.(*Error)
			if !ok || e.Code != CodeInvalid || e.Field != "order_lines[0]"+c.field {
				t.Fatalf("error %v (field %q), want invalid order_lines[0]%s", err, e.Field, c.field)
			}
		})
	}
}

// The oracle agrees with every case above that is about the arithmetic.
func TestOracleMatchesTheDocumentedTolerance(t *testing.T) {
	if !exactLineTaxOK(21, 101, 2500) || exactLineTaxOK(19, 101, 2500) || !exactLineTaxOK(20, 101, 2500) {
		t.Fatal("oracle disagrees with ±1 of 20.2")
	}
	if exactLineTotal(2, 5000, 1000).Int64() != 9000 {
		t.Fatal("oracle total")
	}
}

func TestPurchaseSums(t *testing.T) {
	discount := OrderLine{Type: "discount", Name: "Welcome", Quantity: 1, UnitPrice: -1000, TaxRate: 2500, TotalAmount: -1000, TotalTaxAmount: -200}
	shipping := OrderLine{Type: "shipping_fee", Name: "Post", Quantity: 1, UnitPrice: 4900, TaxRate: 2500, TotalAmount: 4900, TotalTaxAmount: 980}
	us := func() Purchase {
		goods := OrderLine{Type: "physical", Name: "Mug", Quantity: 1, UnitPrice: 10000, TotalAmount: 10000}
		tax := OrderLine{Type: "sales_tax", Name: "Sales tax", Quantity: 1, UnitPrice: 800, TotalAmount: 800}
		p := purchaseOf(goods, tax)
		p.PurchaseCountry, p.PurchaseCurrency, p.Locale = "US", "USD", "en-US"
		return p
	}
	cases := []struct {
		name  string
		p     func() Purchase
		field string
	}{
		{"one line", func() Purchase { return purchaseOf(line()) }, ""},
		{"with discount and shipping", func() Purchase { return purchaseOf(line(), discount, shipping) }, ""},
		{"order amount does not sum", func() Purchase { p := purchaseOf(line(), shipping); p.OrderAmount++; return p }, "order_amount"},
		{"order tax does not sum", func() Purchase { p := purchaseOf(line(), shipping); p.OrderTaxAmount--; return p }, "order_tax_amount"},
		{"negative order amount", func() Purchase { p := purchaseOf(line()); p.OrderAmount = -10000; return p }, "order_amount"},
		{"negative order tax", func() Purchase { p := purchaseOf(line()); p.OrderTaxAmount = -1; return p }, "order_tax_amount"},
		{"discount larger than the goods", func() Purchase {
			d := discount
			d.UnitPrice, d.TotalAmount, d.TotalTaxAmount = -10000, -10000, -2000
			return purchaseOf(line(), d)
		}, "order_amount"},
		{"huge order amount", func() Purchase { p := purchaseOf(line()); p.OrderAmount = math.MaxInt64; return p }, "order_amount"},
		// A sales_tax line counts with its total_amount towards
		// order_tax_amount (Klarna's US tax model, FACTS 2.2).
		{"US sales tax line", us, ""},
		{"US sales tax left out of the order tax", func() Purchase { p := us(); p.OrderTaxAmount = 0; return p }, "order_tax_amount"},
		{"no lines", func() Purchase { p := purchaseOf(line()); p.OrderLines = nil; return p }, "order_lines"},
		{"1001 lines", func() Purchase {
			ls := make([]OrderLine, MaxOrderLines+1)
			for i := range ls {
				ls[i] = line()
			}
			return purchaseOf(ls...)
		}, "order_lines"},
		{"1000 lines at the ceiling", func() Purchase {
			ls := make([]OrderLine, MaxOrderLines)
			for i := range ls {
				ls[i] = OrderLine{Name: "Big", Quantity: 1, UnitPrice: MaxLineAmount, TaxRate: 2500, TotalAmount: MaxLineAmount, TotalTaxAmount: ExpectedLineTax(MaxLineAmount, 2500)}
			}
			return purchaseOf(ls...)
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.p()
			err := p.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("valid purchase refused: %v", err)
				}
				return
			}
			e, ok := err.(*Error)
			if !ok || e.Code != CodeInvalid || e.Field != c.field {
				t.Fatalf("error %v, want invalid %s", err, c.field)
			}
			if strings.TrimSpace(e.Message) == "" {
				t.Fatal("error without a message")
			}
		})
	}
}
