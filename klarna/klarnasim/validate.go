package klarnasim

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/hppd/hppd/klarna"
)

// markets maps each purchase_country the simulator accepts to the one
// purchase_currency Klarna takes there.
var markets = map[string]string{
	"SE": "SEK", "NO": "NOK", "DK": "DKK", "FI": "EUR", "DE": "EUR",
	"AT": "EUR", "NL": "EUR", "BE": "EUR", "FR": "EUR", "ES": "EUR",
	"IT": "EUR", "IE": "EUR", "PT": "EUR", "GR": "EUR", "PL": "PLN",
	"CZ": "CZK", "CH": "CHF", "GB": "GBP", "US": "USD", "CA": "CAD",
	"AU": "AUD", "NZ": "NZD", "RO": "RON", "HU": "HUF",
}

// currencies is the set of currencies of the markets table (for customer
// token orders, which carry no purchase_country).
var currencies = func() map[string]bool {
	m := make(map[string]bool)
	for _, c := range markets {
		m[c] = true
	}
	return m
}()

// Compiled on first use: hppd links the simulator for its sim command.
var (
	reCountry  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z]{2}$`) })
	reCurrency = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z]{3}$`) })
	reLocale   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z]{2}-[A-Za-z]{2}$`) })
	reColor    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^#[A-Fa-f0-9]{6}$`) })
	reSSN      = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([0-9]{4}|[0-9]{9})$`) })
	rePerson   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(person|organization)$`) })
)

// Limits from the OpenAPI documents.
const (
	maxUnitPrice   = 100000000 // order_line.unit_price and total_amount maximum (KP and CT)
	maxTaxRate     = 10000
	maxOrderLines  = 1000
	maxMerchantURL = 2000
	maxMerchData   = 6000
	maxReference   = 255
)

// negativeLineTypes may carry negative amounts (they reduce the order).
var negativeLineTypes = map[string]bool{"discount": true, "gift_card": true, "store_credit": true}

var lineTypes = []string{"physical", "discount", "shipping_fee", "sales_tax", "digital", "gift_card", "store_credit", "surcharge"}

// checker collects the paths of the fields that failed validation.
type checker struct {
	paths []string
	seen  map[string]bool
}

func (c *checker) bad(path string) {
	if c.seen == nil {
		c.seen = make(map[string]bool)
	}
	if c.seen[path] {
		return
	}
	c.seen[path] = true
	c.paths = append(c.paths, path)
}

func (c *checker) failed() bool { return len(c.paths) > 0 }

// messages renders the failures as Klarna's error_messages.
func (c *checker) messages() []string {
	out := make([]string, len(c.paths))
	for i, p := range c.paths {
		out[i] = "Bad value: " + p
	}
	return out
}

// jobj is one JSON object under validation, at a path.
type jobj struct {
	c    *checker
	path string
	m    map[string]json.RawMessage
}

// root decodes a request body that must be a JSON object.
func (c *checker) root(body []byte) (jobj, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		c.bad("request body")
		return jobj{}, false
	}
	return jobj{c: c, m: m}, true
}

func (o jobj) at(name string) string {
	if o.path == "" {
		return name
	}
	return o.path + "." + name
}

func isNull(r json.RawMessage) bool { return string(bytes.TrimSpace(r)) == "null" }

// raw returns a field that is present and not null.
func (o jobj) raw(name string) (json.RawMessage, bool) {
	r, ok := o.m[name]
	if !ok || isNull(r) {
		return nil, false
	}
	return r, true
}

func (o jobj) has(name string) bool {
	_, ok := o.raw(name)
	return ok
}

// str reads a string field with a length range in code points (max 0 = none).
func (o jobj) str(name string, required bool, minLen, maxLen int) (string, bool) {
	r, ok := o.raw(name)
	if !ok {
		if required {
			o.c.bad(o.at(name))
		}
		return "", false
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		o.c.bad(o.at(name))
		return "", false
	}
	n := utf8.RuneCountInString(s)
	if n < minLen || (maxLen > 0 && n > maxLen) {
		o.c.bad(o.at(name))
		return s, false
	}
	return s, true
}

func (o jobj) pattern(name string, required bool, re *regexp.Regexp) (string, bool) {
	s, ok := o.str(name, required, 0, 0)
	if ok && !re.MatchString(s) {
		o.c.bad(o.at(name))
		return s, false
	}
	return s, ok
}

func (o jobj) enum(name string, required bool, allowed ...string) (string, bool) {
	s, ok := o.str(name, required, 0, 0)
	if !ok {
		return s, false
	}
	for _, a := range allowed {
		if s == a {
			return s, true
		}
	}
	o.c.bad(o.at(name))
	return s, false
}

// integer reads an integral JSON number in [lo, hi].
func (o jobj) integer(name string, required bool, lo, hi int64) (int64, bool) {
	r, ok := o.raw(name)
	if !ok {
		if required {
			o.c.bad(o.at(name))
		}
		return 0, false
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(r)), 10, 64)
	if err != nil || v < lo || v > hi {
		o.c.bad(o.at(name))
		return v, false
	}
	return v, true
}

func (o jobj) boolean(name string) (bool, bool) {
	r, ok := o.raw(name)
	if !ok {
		return false, false
	}
	var b bool
	if err := json.Unmarshal(r, &b); err != nil {
		o.c.bad(o.at(name))
		return false, false
	}
	return b, true
}

func (o jobj) object(name string, required bool) (jobj, bool) {
	r, ok := o.raw(name)
	if !ok {
		if required {
			o.c.bad(o.at(name))
		}
		return jobj{}, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r, &m); err != nil {
		o.c.bad(o.at(name))
		return jobj{}, false
	}
	return jobj{c: o.c, path: o.at(name), m: m}, true
}

func (o jobj) array(name string, required bool, minItems, maxItems int) ([]json.RawMessage, bool) {
	r, ok := o.raw(name)
	if !ok {
		if required {
			o.c.bad(o.at(name))
		}
		return nil, false
	}
	var a []json.RawMessage
	if err := json.Unmarshal(r, &a); err != nil || len(a) < minItems || (maxItems > 0 && len(a) > maxItems) {
		o.c.bad(o.at(name))
		return nil, false
	}
	return a, true
}

// item decodes element i of array name as an object.
func (o jobj) item(name string, i int, r json.RawMessage) (jobj, bool) {
	p := o.at(name) + "[" + strconv.Itoa(i) + "]"
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r, &m); err != nil || m == nil {
		o.c.bad(p)
		return jobj{}, false
	}
	return jobj{c: o.c, path: p, m: m}, true
}

// strings reads an array of strings.
func (o jobj) strings(name string) []string {
	r, ok := o.raw(name)
	if !ok {
		return nil
	}
	var a []string
	if err := json.Unmarshal(r, &a); err != nil {
		o.c.bad(o.at(name))
		return nil
	}
	return a
}

// bodyKind says which request an order body belongs to.
type bodyKind int

const (
	kindSession    bodyKind = iota // POST /payments/v1/sessions (and a merged update)
	kindOrder                      // POST /payments/v1/authorizations/{token}/order
	kindTokenOrder                 // POST /customer-token/v1/tokens/{token}/order
)

// orderData is the part of a KP session or order body the simulator acts on.
type orderData struct {
	Country         string
	Currency        string
	Locale          string
	Amount          int64
	TaxAmount       int64
	Lines           []klarna.OrderLine
	Billing         *klarna.Address
	Shipping        *klarna.Address
	Customer        *klarna.Customer
	Intent          string
	Channel         string
	AutoCapture     bool
	ConfirmationURL string
}

// parseOrderBody validates a KP session, KP order or customer token order
// body and returns what the simulator needs of it.
func parseOrderBody(o jobj, kind bodyKind) orderData {
	var d orderData
	ct := kind == kindTokenOrder

	if !ct {
		if s, ok := o.pattern("purchase_country", true, reCountry()); ok {
			d.Country = strings.ToUpper(s)
			if _, known := markets[d.Country]; !known {
				o.c.bad("purchase_country")
				d.Country = ""
			}
		}
	}
	if s, ok := o.pattern("purchase_currency", true, reCurrency()); ok {
		d.Currency = strings.ToUpper(s)
		switch {
		case ct && !currencies[d.Currency]:
			o.c.bad("purchase_currency")
		case !ct && d.Country != "" && markets[d.Country] != d.Currency:
			o.c.bad("purchase_currency")
		}
	}
	if s, ok := o.pattern("locale", false, reLocale()); ok {
		d.Locale = s
		if !ct && d.Country != "" && !strings.EqualFold(s[3:], d.Country) {
			o.c.bad("locale")
		}
	}

	minAmount := int64(0)
	if ct {
		minAmount = 1
	}
	amount, amountOK := o.integer("order_amount", true, minAmount, math.MaxInt64)
	tax, taxOK := o.integer("order_tax_amount", ct, 0, math.MaxInt64)
	if !o.has("order_tax_amount") {
		taxOK = true // absent means 0 in KP; the sum must then be 0 too
	}
	d.Amount, d.TaxAmount = amount, tax

	rules := kpLineRules
	if ct {
		rules = ctLineRules
	}
	lines, linesOK := parseLines(o, rules)
	d.Lines = lines
	if linesOK && amountOK {
		sum := new(big.Int)
		for _, l := range lines {
			sum.Add(sum, big.NewInt(l.TotalAmount))
		}
		if sum.Cmp(big.NewInt(amount)) != 0 {
			o.c.bad("order_amount")
		}
	}
	if linesOK && taxOK {
		sum := new(big.Int)
		for _, l := range lines {
			if l.Type == "sales_tax" {
				sum.Add(sum, big.NewInt(l.TotalAmount))
			} else {
				sum.Add(sum, big.NewInt(l.TotalTaxAmount))
			}
		}
		if sum.Cmp(big.NewInt(tax)) != 0 {
			o.c.bad("order_tax_amount")
		}
	}

	o.str("merchant_reference1", false, 0, maxReference)
	o.str("merchant_reference2", false, 0, maxReference)
	o.str("merchant_data", false, 0, maxMerchData)
	if a, ok := o.object("attachment", false); ok {
		a.str("body", true, 0, 0)
		a.str("content_type", true, 0, 0)
	}
	if a, ok := o.object("shipping_address", false); ok {
		d.Shipping = parseAddress(a, ct)
	}
	if ct {
		if mu, ok := o.object("merchant_urls", false); ok {
			d.ConfirmationURL, _ = mu.str("confirmation", true, 0, maxMerchantURL)
			mu.str("push", false, 0, maxMerchantURL)
		}
		d.AutoCapture, _ = o.boolean("auto_capture")
		return d
	}

	if a, ok := o.object("billing_address", false); ok {
		d.Billing = parseAddress(a, false)
	}
	if cu, ok := o.object("customer", false); ok {
		d.Customer = parseCustomer(cu)
	}
	if mu, ok := o.object("merchant_urls", false); ok {
		d.ConfirmationURL, _ = mu.str("confirmation", false, 0, maxMerchantURL)
		mu.str("notification", false, 0, maxMerchantURL)
		mu.str("push", false, 0, maxMerchantURL)
		mu.str("authorization", false, 0, maxMerchantURL)
	}
	o.strings("custom_payment_method_ids")
	switch kind {
	case kindSession:
		d.Intent, _ = o.enum("intent", false, "buy", "tokenize", "buy_and_tokenize")
		d.Channel, _ = o.enum("acquiring_channel", false, "ECOMMERCE", "IN_STORE", "TELESALES")
		o.str("design", false, 0, 0)
		if op, ok := o.object("options", false); ok {
			for _, k := range []string{"color_border", "color_border_selected", "color_details", "color_text"} {
				op.pattern(k, false, reColor())
			}
			op.str("radius_border", false, 0, 0)
		}
	case kindOrder:
		d.AutoCapture, _ = o.boolean("auto_capture")
	}
	if d.Intent == "" {
		d.Intent = "buy"
	}
	if d.Channel == "" {
		d.Channel = "ECOMMERCE"
	}
	return d
}

// lineRules are the per-API differences of the order line schema.
type lineRules struct {
	merchantDataMax int
	referenceMax    int
}

var (
	kpLineRules = lineRules{merchantDataMax: 1024, referenceMax: 255}
	ctLineRules = lineRules{merchantDataMax: 255, referenceMax: 256}
)

// parseLines validates order_lines; ok is false when any line failed (the
// order sums are then not checked, to name only the real culprit).
func parseLines(o jobj, rules lineRules) ([]klarna.OrderLine, bool) {
	raws, ok := o.array("order_lines", true, 1, maxOrderLines)
	if !ok {
		return nil, false
	}
	lines := make([]klarna.OrderLine, 0, len(raws))
	allOK := true
	for i, r := range raws {
		lo, ok := o.item("order_lines", i, r)
		if !ok {
			allOK = false
			continue
		}
		l, ok := parseLine(lo, rules)
		lines = append(lines, l)
		allOK = allOK && ok
	}
	return lines, allOK
}

func parseLine(o jobj, rules lineRules) (klarna.OrderLine, bool) {
	before := len(o.c.paths)
	var l klarna.OrderLine
	l.Type, _ = o.enum("type", false, lineTypes...)
	neg := negativeLineTypes[l.Type]
	lo := int64(0)
	if neg {
		lo = math.MinInt64
	}
	l.Name, _ = o.str("name", true, 1, 255)
	l.Reference, _ = o.str("reference", false, 0, rules.referenceMax)
	qty, qtyOK := o.integer("quantity", true, 0, math.MaxInt64)
	l.Quantity = qty
	l.QuantityUnit, _ = o.str("quantity_unit", false, 1, 8)
	price, priceOK := o.integer("unit_price", true, lo, maxUnitPrice)
	l.UnitPrice = price
	rate, rateOK := o.integer("tax_rate", false, 0, maxTaxRate)
	if !o.has("tax_rate") {
		rateOK = true
	}
	l.TaxRate = rate
	total, totalOK := o.integer("total_amount", true, lo, maxUnitPrice)
	l.TotalAmount = total
	disc, discOK := o.integer("total_discount_amount", false, 0, math.MaxInt64)
	if !o.has("total_discount_amount") {
		discOK = true
	}
	l.TotalDiscountAmount = disc
	tta, ttaOK := o.integer("total_tax_amount", false, math.MinInt64, math.MaxInt64)
	if !o.has("total_tax_amount") {
		ttaOK = true
	}
	l.TotalTaxAmount = tta
	l.MerchantData, _ = o.str("merchant_data", false, 0, rules.merchantDataMax)
	l.ProductURL, _ = o.str("product_url", false, 0, 1024)
	l.ImageURL, _ = o.str("image_url", false, 0, 1024)
	if p, ok := o.object("product_identifiers", false); ok {
		var pi klarna.ProductIdentifiers
		pi.Brand, _ = p.str("brand", false, 0, 70)
		pi.CategoryPath, _ = p.str("category_path", false, 0, 750)
		pi.GlobalTradeItemNumber, _ = p.str("global_trade_item_number", false, 0, 50)
		pi.ManufacturerPartNumber, _ = p.str("manufacturer_part_number", false, 0, 70)
		pi.Color, _ = p.str("color", false, 0, 64)
		pi.Size, _ = p.str("size", false, 0, 64)
		l.ProductIdentifiers = &pi
	}
	if s, ok := o.object("subscription", false); ok {
		var sub klarna.Subscription
		sub.Name, _ = s.str("name", true, 1, 255)
		sub.Interval, _ = s.enum("interval", true, "DAY", "WEEK", "MONTH", "YEAR")
		sub.IntervalCount, _ = s.integer("interval_count", true, 1, math.MaxInt64)
		l.Subscription = &sub
	}

	// total_amount = quantity*unit_price - total_discount_amount
	if qtyOK && priceOK && discOK && totalOK {
		want := new(big.Int).Mul(big.NewInt(qty), big.NewInt(price))
		want.Sub(want, big.NewInt(disc))
		if want.Cmp(big.NewInt(total)) != 0 {
			o.c.bad(o.at("total_amount"))
			totalOK = false
		}
	}
	// |total_tax_amount - total_amount*tax_rate/(10000+tax_rate)| <= 1, that is
	// |total_tax_amount*(10000+tax_rate) - total_amount*tax_rate| <= 10000+tax_rate.
	if totalOK && rateOK && ttaOK {
		den := big.NewInt(10000 + rate)
		diff := new(big.Int).Mul(big.NewInt(tta), den)
		diff.Sub(diff, new(big.Int).Mul(big.NewInt(total), big.NewInt(rate)))
		if diff.Abs(diff).Cmp(den) > 0 {
			o.c.bad(o.at("total_tax_amount"))
		}
	}
	return l, len(o.c.paths) == before
}

func parseAddress(o jobj, ct bool) *klarna.Address {
	var a klarna.Address
	a.Attention, _ = o.str("attention", false, 0, 99)
	a.City, _ = o.str("city", false, 0, 99)
	a.Country, _ = o.pattern("country", false, reCountry())
	a.Email, _ = o.str("email", false, 0, 99)
	a.FamilyName, _ = o.str("family_name", false, 0, 99)
	a.GivenName, _ = o.str("given_name", false, 0, 99)
	a.OrganizationName, _ = o.str("organization_name", false, 0, 99)
	minPhone := 0
	if ct {
		minPhone = 5
	}
	a.Phone, _ = o.str("phone", false, minPhone, 99)
	a.PostalCode, _ = o.str("postal_code", false, 0, 10)
	a.Region, _ = o.str("region", false, 0, 99)
	a.StreetAddress, _ = o.str("street_address", false, 0, 99)
	a.StreetAddress2, _ = o.str("street_address2", false, 0, 99)
	a.Title, _ = o.str("title", false, 0, 20)
	return &a
}

func parseCustomer(o jobj) *klarna.Customer {
	var c klarna.Customer
	c.DateOfBirth, _ = o.str("date_of_birth", false, 0, 0)
	c.Type, _ = o.pattern("type", false, rePerson())
	c.CustomerToken, _ = o.str("customer_token", false, 0, 0)
	o.str("gender", false, 0, 0)
	o.pattern("last_four_ssn", false, reSSN())
	o.str("national_identification_number", false, 0, 0)
	o.enum("organization_entity_type", false, "LIMITED_COMPANY", "PUBLIC_LIMITED_COMPANY",
		"ENTREPRENEURIAL_COMPANY", "LIMITED_PARTNERSHIP_LIMITED_COMPANY", "LIMITED_PARTNERSHIP",
		"GENERAL_PARTNERSHIP", "REGISTERED_SOLE_TRADER", "SOLE_TRADER", "CIVIL_LAW_PARTNERSHIP",
		"PUBLIC_INSTITUTION", "OTHER")
	o.str("organization_registration_id", false, 0, 0)
	o.str("title", false, 0, 0)
	o.str("vat_id", false, 0, 0)
	return &c
}
