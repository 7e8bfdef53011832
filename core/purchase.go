package core

import (
	"fmt"
	"math"
	"math/big"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// OrderLine mirrors Klarna's order line schema (the same in KP, HPP and the
// customer token API). Amounts are minor units; TaxRate has two implicit
// decimals (2500 is 25%).
type OrderLine struct {
	Type                string        `json:"type,omitempty"`
	Reference           string        `json:"reference,omitempty"`
	Name                string        `json:"name"`
	Quantity            int64         `json:"quantity"`
	QuantityUnit        string        `json:"quantity_unit,omitempty"`
	UnitPrice           int64         `json:"unit_price"`
	TaxRate             int64         `json:"tax_rate"`
	TotalAmount         int64         `json:"total_amount"`
	TotalDiscountAmount int64         `json:"total_discount_amount,omitempty"`
	TotalTaxAmount      int64         `json:"total_tax_amount"`
	MerchantData        string        `json:"merchant_data,omitempty"`
	ProductURL          string        `json:"product_url,omitempty"`
	ImageURL            string        `json:"image_url,omitempty"`
	Subscription        *Subscription `json:"subscription,omitempty"`
}

// Subscription marks a recurring order line.
type Subscription struct {
	Name          string `json:"name"`
	Interval      string `json:"interval"`
	IntervalCount int64  `json:"interval_count"`
}

// Address is a billing or shipping address (Klarna's field names).
type Address struct {
	Attention        string `json:"attention,omitempty"`
	City             string `json:"city,omitempty"`
	Country          string `json:"country,omitempty"`
	Email            string `json:"email,omitempty"`
	FamilyName       string `json:"family_name,omitempty"`
	GivenName        string `json:"given_name,omitempty"`
	OrganizationName string `json:"organization_name,omitempty"`
	Phone            string `json:"phone,omitempty"`
	PostalCode       string `json:"postal_code,omitempty"`
	Region           string `json:"region,omitempty"`
	StreetAddress    string `json:"street_address,omitempty"`
	StreetAddress2   string `json:"street_address2,omitempty"`
	Title            string `json:"title,omitempty"`
}

// Purchase is what a shopper buys: the fields hppd sends to Klarna for a KP
// session, a KP order or a token order.
type Purchase struct {
	PurchaseCountry    string      `json:"purchase_country"`
	PurchaseCurrency   string      `json:"purchase_currency"`
	Locale             string      `json:"locale"`
	OrderAmount        int64       `json:"order_amount"`
	OrderTaxAmount     int64       `json:"order_tax_amount"`
	OrderLines         []OrderLine `json:"order_lines"`
	MerchantReference1 string      `json:"merchant_reference1,omitempty"`
	MerchantReference2 string      `json:"merchant_reference2,omitempty"`
	BillingAddress     *Address    `json:"billing_address,omitempty"`
	ShippingAddress    *Address    `json:"shipping_address,omitempty"`
}

// ReturnURLs are the storefront pages a shopper lands on after the payment page.
type ReturnURLs struct {
	Success string `json:"success,omitempty"`
	Failure string `json:"failure,omitempty"`
	Cancel  string `json:"cancel,omitempty"`
	Back    string `json:"back,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Limits from Klarna's OpenAPI documents.
const (
	MaxOrderLines   = 1000
	MaxLineAmount   = 100_000_000 // unit_price/total_amount ceiling of the KP and CT OpenAPI documents
	MaxOrderAmount  = math.MaxInt64 / 4
	maxNameLen      = 255
	maxReferenceLen = 255
	maxURLLen       = 2000
	maxQuantityUnit = 8
	maxLineURLLen   = 1024
	maxMerchantData = 1024
	taxRateMax      = 10000
)

var (
	countryRe  = regexp.MustCompile(`^[A-Z]{2}$`)
	currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)
	localeRe   = regexp.MustCompile(`^[a-z]{2}-[A-Z]{2}$`)
)

// LineTypes are Klarna's order line types.
var LineTypes = map[string]bool{
	"": true, "physical": true, "discount": true, "shipping_fee": true, "sales_tax": true,
	"digital": true, "gift_card": true, "store_credit": true, "surcharge": true,
}

// negativeLineTypes may carry negative amounts.
var negativeLineTypes = map[string]bool{"discount": true, "gift_card": true, "store_credit": true}

var intervals = map[string]bool{"DAY": true, "WEEK": true, "MONTH": true, "YEAR": true}

// CountryCurrency is the currency Klarna expects for each market it serves.
var CountryCurrency = map[string]string{
	"SE": "SEK", "NO": "NOK", "DK": "DKK", "FI": "EUR", "DE": "EUR", "AT": "EUR", "NL": "EUR",
	"BE": "EUR", "FR": "EUR", "ES": "EUR", "IT": "EUR", "IE": "EUR", "PT": "EUR", "GR": "EUR",
	"PL": "PLN", "CZ": "CZK", "CH": "CHF", "GB": "GBP", "US": "USD", "CA": "CAD", "AU": "AUD",
	"NZ": "NZD", "RO": "RON", "HU": "HUF",
}

// ExpectedLineTax is the tax Klarna expects in a line of total amount total at
// tax rate rate: total − total×10000/(10000+rate), rounded to nearest.
func ExpectedLineTax(total, rate int64) int64 {
	if rate == 0 {
		return 0
	}
	net := float64(total) * 10000 / float64(10000+rate)
	return int64(math.Round(float64(total) - net))
}

// TaxWithinTolerance reports whether a line's tax is within ±1 of
// total×rate/(10000+rate), Klarna's tolerance, computed exactly:
// |tax×(10000+rate) − total×rate| ≤ 10000+rate.
func TaxWithinTolerance(total, rate, tax int64) bool {
	den := big.NewInt(10000 + rate)
	diff := new(big.Int).Mul(big.NewInt(tax), den)
	diff.Sub(diff, new(big.Int).Mul(big.NewInt(total), big.NewInt(rate)))
	return diff.Abs(diff).Cmp(den) <= 0
}

// mulOK multiplies without overflow.
func mulOK(a, b int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	c := a * b
	if c/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) {
		return 0, false
	}
	return c, true
}

// addOK adds without overflow.
func addOK(a, b int64) (int64, bool) {
	c := a + b
	if (c > a) != (b > 0) {
		return 0, false
	}
	return c, true
}

// Validate checks a purchase the way Klarna does before hppd sends it anywhere,
// so that a storefront's mistake costs no Klarna call. The returned *Error
// names the first offending field with its JSON path.
func (p *Purchase) Validate() error {
	if p.PurchaseCountry == "" {
		return Invalid("purchase_country", "is required")
	}
	if !countryRe.MatchString(p.PurchaseCountry) {
		return Invalid("purchase_country", "must be an ISO 3166-1 alpha-2 code such as SE")
	}
	if p.PurchaseCurrency == "" {
		return Invalid("purchase_currency", "is required")
	}
	if !currencyRe.MatchString(p.PurchaseCurrency) {
		return Invalid("purchase_currency", "must be an ISO 4217 code such as SEK")
	}
	if want, ok := CountryCurrency[p.PurchaseCountry]; !ok {
		return Invalid("purchase_country", "%s is not a Klarna market", p.PurchaseCountry)
	} else if want != p.PurchaseCurrency {
		return Invalid("purchase_currency", "%s is not the currency of %s (%s)", p.PurchaseCurrency, p.PurchaseCountry, want)
	}
	if p.Locale == "" {
		return Invalid("locale", "is required")
	}
	if !localeRe.MatchString(p.Locale) {
		return Invalid("locale", "must be an RFC 1766 tag such as sv-SE")
	}
	if p.Locale[3:] != p.PurchaseCountry {
		return Invalid("locale", "must be a locale of the purchase country (e.g. sv-%s or en-%s)", p.PurchaseCountry, p.PurchaseCountry)
	}
	if len(p.MerchantReference1) > maxReferenceLen {
		return Invalid("merchant_reference1", "is longer than %d characters", maxReferenceLen)
	}
	if len(p.MerchantReference2) > maxReferenceLen {
		return Invalid("merchant_reference2", "is longer than %d characters", maxReferenceLen)
	}
	if p.OrderAmount < 0 {
		return Invalid("order_amount", "must not be negative")
	}
	if p.OrderTaxAmount < 0 {
		return Invalid("order_tax_amount", "must not be negative")
	}
	if len(p.OrderLines) == 0 {
		return Invalid("order_lines", "must have at least one line")
	}
	if len(p.OrderLines) > MaxOrderLines {
		return Invalid("order_lines", "must have at most %d lines", MaxOrderLines)
	}
	var sum, taxSum int64
	for i := range p.OrderLines {
		if err := p.OrderLines[i].validate(fmt.Sprintf("order_lines[%d]", i)); err != nil {
			return err
		}
		var ok bool
		if sum, ok = addOK(sum, p.OrderLines[i].TotalAmount); !ok {
			return Invalid("order_amount", "overflows")
		}
		lineTax := p.OrderLines[i].TotalTaxAmount
		if p.OrderLines[i].Type == "sales_tax" {
			lineTax = p.OrderLines[i].TotalAmount // US tax model: the tax is a line of its own
		}
		if taxSum, ok = addOK(taxSum, lineTax); !ok {
			return Invalid("order_tax_amount", "overflows")
		}
	}
	if p.OrderAmount != sum {
		return Invalid("order_amount", "is %d but the order lines' total_amount sum to %d", p.OrderAmount, sum)
	}
	if p.OrderTaxAmount != taxSum {
		return Invalid("order_tax_amount", "is %d but the order lines' tax (total_tax_amount, or total_amount of sales_tax lines) sums to %d", p.OrderTaxAmount, taxSum)
	}
	if p.OrderAmount == 0 {
		return Invalid("order_amount", "must be positive")
	}
	if err := p.BillingAddress.validate("billing_address"); err != nil {
		return err
	}
	return p.ShippingAddress.validate("shipping_address")
}

// validate checks an address against Klarna's address schema (the same in
// KP and the customer token API): an alpha-2 country and the field lengths,
// counted in characters as Klarna does. A nil address is valid.
func (a *Address) validate(path string) error {
	if a == nil {
		return nil
	}
	if a.Country != "" && !countryRe.MatchString(a.Country) {
		return Invalid(path+".country", "must be an ISO 3166-1 alpha-2 code")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"attention", a.Attention, 99}, {"city", a.City, 99}, {"email", a.Email, 99},
		{"family_name", a.FamilyName, 99}, {"given_name", a.GivenName, 99},
		{"organization_name", a.OrganizationName, 99}, {"phone", a.Phone, 99},
		{"postal_code", a.PostalCode, 10}, {"region", a.Region, 99},
		{"street_address", a.StreetAddress, 99}, {"street_address2", a.StreetAddress2, 99},
		{"title", a.Title, 20},
	} {
		if utf8.RuneCountInString(f.v) > f.max {
			return Invalid(path+"."+f.name, "is longer than %d characters", f.max)
		}
	}
	return nil
}

func (l *OrderLine) validate(path string) error {
	if strings.TrimSpace(l.Name) == "" {
		return Invalid(path+".name", "is required")
	}
	if len(l.Name) > maxNameLen {
		return Invalid(path+".name", "is longer than %d characters", maxNameLen)
	}
	if len(l.Reference) > maxReferenceLen {
		return Invalid(path+".reference", "is longer than %d characters", maxReferenceLen)
	}
	if len(l.QuantityUnit) > maxQuantityUnit {
		return Invalid(path+".quantity_unit", "is longer than %d characters", maxQuantityUnit)
	}
	if len(l.MerchantData) > maxMerchantData {
		return Invalid(path+".merchant_data", "is longer than %d characters", maxMerchantData)
	}
	for f, u := range map[string]string{"product_url": l.ProductURL, "image_url": l.ImageURL} {
		if u == "" {
			continue
		}
		if len(u) > maxLineURLLen {
			return Invalid(path+"."+f, "is longer than %d characters", maxLineURLLen)
		}
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") {
			return Invalid(path+"."+f, "must be an http(s) URL")
		}
	}
	if !LineTypes[l.Type] {
		return Invalid(path+".type", "%q is not a Klarna order line type", l.Type)
	}
	if l.Quantity < 0 {
		return Invalid(path+".quantity", "must not be negative")
	}
	lo := int64(0)
	if negativeLineTypes[l.Type] {
		lo = -MaxLineAmount
	}
	if l.UnitPrice > MaxLineAmount || l.UnitPrice < lo {
		return Invalid(path+".unit_price", "must be between %d and %d for a %q line", lo, MaxLineAmount, l.Type)
	}
	if l.TotalAmount > MaxLineAmount || l.TotalAmount < lo {
		return Invalid(path+".total_amount", "must be between %d and %d for a %q line", lo, MaxLineAmount, l.Type)
	}
	if l.TotalDiscountAmount < 0 {
		return Invalid(path+".total_discount_amount", "must not be negative")
	}
	if l.TaxRate < 0 || l.TaxRate > taxRateMax {
		return Invalid(path+".tax_rate", "must be between 0 and %d", taxRateMax)
	}
	gross, ok := mulOK(l.Quantity, l.UnitPrice)
	if !ok || gross > MaxOrderAmount || gross < -MaxOrderAmount {
		return Invalid(path+".total_amount", "quantity × unit_price overflows")
	}
	if want := gross - l.TotalDiscountAmount; l.TotalAmount != want {
		return Invalid(path+".total_amount", "is %d but quantity × unit_price − total_discount_amount is %d", l.TotalAmount, want)
	}
	if !TaxWithinTolerance(l.TotalAmount, l.TaxRate, l.TotalTaxAmount) {
		return Invalid(path+".total_tax_amount", "is %d but total_amount at tax_rate %d gives %d (±1)", l.TotalTaxAmount, l.TaxRate, ExpectedLineTax(l.TotalAmount, l.TaxRate))
	}
	if s := l.Subscription; s != nil {
		if s.Name == "" {
			return Invalid(path+".subscription.name", "is required")
		}
		if len(s.Name) > maxNameLen {
			return Invalid(path+".subscription.name", "is longer than %d characters", maxNameLen)
		}
		if !intervals[s.Interval] {
			return Invalid(path+".subscription.interval", "must be DAY, WEEK, MONTH or YEAR")
		}
		if s.IntervalCount < 1 {
			return Invalid(path+".subscription.interval_count", "must be at least 1")
		}
	}
	return nil
}

// ValidateReturnURLs checks the storefront pages; success and failure are required.
func (r *ReturnURLs) Validate(prefix string) error {
	for _, f := range []struct {
		name, v  string
		required bool
	}{
		{"success", r.Success, true}, {"failure", r.Failure, true},
		{"cancel", r.Cancel, false}, {"back", r.Back, false}, {"error", r.Error, false},
	} {
		field := prefix + "." + f.name
		if f.v == "" {
			if f.required {
				return Invalid(field, "is required")
			}
			continue
		}
		if len(f.v) > maxURLLen {
			return Invalid(field, "is longer than %d characters", maxURLLen)
		}
		u, err := url.Parse(f.v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Invalid(field, "must be an absolute http(s) URL")
		}
	}
	return nil
}
