package hpp

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna/klarnasim"
)

// Fuzz targets of the flows' pure parts: the status_update body decoder, the
// merchant_urls templating, and the storefront request validation, the last
// held to the simulator (which is "no kinder than Klarna"): whatever hppd
// accepts, the simulator must accept too, so that a storefront's mistake is a
// 400 from hppd and never a Klarna call that fails.

func FuzzDecodeCallback(f *testing.F) {
	f.Add([]byte(`{"event_id":"270b","session":{"session_id":"35bd","status":"IN_PROGRESS","updated_at":"2019-05-13T14:51:46.288Z","expires_at":"2019-05-15T13:51:43.507Z"}}`))
	f.Add([]byte(`{"event_id":"e2","session":{"session_id":"35bd","status":"COMPLETED","authorization_token":"at","order_id":"o"},"extra":[1,2]}`))
	f.Add([]byte(`{"event_id":"","session":{"session_id":"x","status":"WAITING"}}`))
	f.Add([]byte(`{"event_id":"e","session":{"session_id":"x","status":"PAID"}}`))
	f.Add([]byte(`{"event_id":"e","session":{"session_id":"x","status":"BACK","updated_at":1e999}}`))
	f.Add([]byte(`{"event_id":"e","session":{"session_id":"x","status":"BACK"}} {}`))
	f.Add([]byte(`{"event_id":7,"session":null}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		cb, err := DecodeCallback(body)
		if err != nil {
			e, ok := err.(*core.Error)
			if !ok || e.Code != core.CodeInvalid || e.Field == "" {
				t.Fatalf("DecodeCallback error %v is not an invalid error naming a field", err)
			}
			if cb != nil {
				t.Fatal("a callback and an error")
			}
			return
		}
		if cb.EventID == "" || len(cb.EventID) > 200 || cb.Session.SessionID == "" || cb.Session.Status == "" {
			t.Fatalf("accepted callback breaks the rules: %+v", cb)
		}
		// What was accepted survives a round trip through Klarna's shape.
		again, err := json.Marshal(map[string]any{"event_id": cb.EventID, "session": cb.Session})
		if err != nil {
			t.Fatal(err)
		}
		cb2, err := DecodeCallback(again)
		if err != nil || cb2.EventID != cb.EventID || cb2.Session.SessionID != cb.Session.SessionID || cb2.Session.Status != cb.Session.Status {
			t.Fatalf("round trip of %s: %+v, %v", again, cb2, err)
		}
	})
}

// fillSessionID is what Klarna does to a merchant URL when it uses it.
func fillSessionID(u, hppID string) string { return strings.ReplaceAll(u, "{{session_id}}", hppID) }

func FuzzMerchantURLs(f *testing.F) {
	secret, _ := NewSecret()
	f.Add("https://hppd.example", "ses_abcdefghijklmnopqrstuvwxyz", secret, "2OCkffK")
	f.Add("http://127.0.0.1:8080", "ses_x", "a&hppId=evil#frag", "h1")
	f.Add("https://hppd.example/base", "../../v1/sessions", "{{authorization_token}}", "{{order_id}}")
	f.Add("https://hppd.example", "a/b?c#d", "%zz+ /", "x y")
	f.Add("https://hppd.example", "{{session_id}}", "{{session_id}}", "{{session_id}}")
	f.Add("https://hppd.example", "é\x00\n", "\xff\xfe", "")
	f.Fuzz(func(t *testing.T, public, id, secret, hppID string) {
		if u, err := url.Parse(public); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			strings.ContainsAny(public, "?#") || strings.Contains(public, "{{") || u.Path != u.EscapedPath() {
			return // config.Load only lets plain absolute http(s) URLs through
		}
		public = strings.TrimRight(public, "/")
		if !utf8.ValidString(id) || !utf8.ValidString(secret) {
			return // Go strings from hppd's generators are always valid UTF-8
		}
		mu := MerchantURLs(public, id, secret)
		all := map[string]string{"success": mu.Success, "failure": mu.Failure, "cancel": mu.Cancel, "back": mu.Back, "error": mu.Error, "status_update": mu.StatusUpdate}
		// Klarna's ids are URL-safe; fill in a safe one where the fuzzed one is not.
		if hppID == "" || url.QueryEscape(hppID) != hppID || strings.Contains(hppID, "{{") {
			hppID = "2OCkffK"
		}
		for kind, raw := range all {
			// The only placeholder is hppd's own {{session_id}}: no id or
			// secret can smuggle in another one (or a second copy).
			if n := strings.Count(raw, "{{"); n != 1 || strings.Count(raw, "{{session_id}}") != 1 {
				t.Fatalf("%s URL %q has %d placeholders", kind, raw, n)
			}
			if !strings.HasPrefix(raw, public+"/") {
				t.Fatalf("%s URL %q does not start with the public URL %q", kind, raw, public)
			}
			u, err := url.Parse(fillSessionID(raw, hppID))
			if err != nil {
				t.Fatalf("%s URL %q does not parse once filled: %v", kind, raw, err)
			}
			q := u.Query()
			if got := q["hppId"]; len(got) != 1 || got[0] != hppID {
				t.Fatalf("%s URL %q: hppId %q, want %q", kind, u, got, hppID)
			}
			if u.Fragment != "" {
				t.Fatalf("%s URL %q has a fragment", kind, u)
			}
			rest := strings.TrimPrefix(u.EscapedPath(), strings.TrimRight(mustParse(t, public).EscapedPath(), "/"))
			segs := strings.Split(rest, "/")
			wantLen, idAt, last := 4, 2, kind
			if kind == "status_update" {
				wantLen, idAt, last = 5, 3, "status"
				if got := q["secret"]; len(got) != 1 || got[0] != secret {
					t.Fatalf("status_update URL %q: secret %q, want %q", u, got, secret)
				}
				if len(q) != 2 {
					t.Fatalf("status_update URL %q has query keys %v", u, q)
				}
			} else {
				// Shopper URLs end up in browser history: no secret there.
				if q.Has("secret") || len(q) != 1 {
					t.Fatalf("shopper URL %q carries more than hppId: %v", u, q)
				}
			}
			if len(segs) != wantLen || segs[len(segs)-1] != last {
				t.Fatalf("%s URL %q: path segments %q", kind, u, segs)
			}
			if got, err := url.PathUnescape(segs[idAt]); err != nil || got != id {
				t.Fatalf("%s URL %q: id segment %q, want %q (%v)", kind, u, got, id, err)
			}
		}
	})
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// gen turns fuzz bytes into a storefront request, steered towards the
// interesting edges: exact sums, amounts at the ceilings, strings at their
// length limits, multi-byte characters.
type gen struct{ b []byte }

func (g *gen) next() byte {
	if len(g.b) == 0 {
		return 0
	}
	c := g.b[0]
	g.b = g.b[1:]
	return c
}

func pick[T any](g *gen, vs ...T) T { return vs[int(g.next())%len(vs)] }

func (g *gen) amount() int64 {
	switch c := g.next(); {
	case c < 128:
		return int64(c)*int64(g.next()+1)*int64(g.next()+1) - 1000
	default:
		return pick(g, int64(0), 1, -1, 100, 101, 2500, 5000, 10000, core.MaxLineAmount, core.MaxLineAmount+1,
			-core.MaxLineAmount, -core.MaxLineAmount-1, 1<<40, math.MaxInt64, math.MinInt64)
	}
}

func (g *gen) str(limits ...int) string {
	n := 0
	switch g.next() % 8 {
	case 0:
		return ""
	case 1:
		return pick(g, "Cup", " ", "\t", "<script>", "{{session_id}}", "a\x00b", "é", "日本", "\U0001F600")
	default:
		if len(limits) == 0 {
			limits = []int{10, 99}
		}
		n = pick(g, limits...) + int(g.next()%3) - 1
	}
	if n < 0 {
		n = 0
	}
	unit := pick(g, "a", "é", "日")
	return strings.Repeat(unit, n)
}

func (g *gen) address() *core.Address {
	if g.next()%3 != 0 {
		return nil
	}
	return &core.Address{
		Attention: g.str(99), City: g.str(99), Country: pick(g, "", "SE", "se", "SWE"), Email: g.str(99),
		FamilyName: g.str(99), GivenName: g.str(99), OrganizationName: g.str(99), Phone: g.str(5, 99),
		PostalCode: g.str(10), Region: g.str(99), StreetAddress: g.str(99), StreetAddress2: g.str(99), Title: g.str(20),
	}
}

func (g *gen) purchase() core.Purchase {
	country := pick(g, "SE", "SE", "US", "DE", "GB", "XX", "se", "")
	currency := core.CountryCurrency[country]
	if g.next()%5 == 0 {
		currency = pick(g, "EUR", "SEK", "usd", "", "QQQ")
	}
	locale := pick(g, "sv-"+country, "en-"+country, "sv-SE", "en-US", "en_US", "", "sv-se")
	p := core.Purchase{PurchaseCountry: country, PurchaseCurrency: currency, Locale: locale,
		MerchantReference1: g.str(255), MerchantReference2: g.str(255)}
	exact := g.next()%4 != 0
	for n := 1 + int(g.next()%3); n > 0; n-- {
		l := core.OrderLine{
			Type: pick(g, "physical", "physical", "", "discount", "shipping_fee", "sales_tax", "digital", "gift_card", "store_credit", "surcharge", "coupon"),
			Name: g.str(255), Quantity: pick(g, int64(1), 1, 2, 3, 0, -1, 1<<33),
			UnitPrice: g.amount(), TotalDiscountAmount: pick(g, int64(0), 0, 0, 1, 50, -1),
			TaxRate:      pick(g, int64(2500), 2500, 0, 600, 1200, 10000, 10001, -1),
			QuantityUnit: pick(g, "", "pcs", "12345678", "123456789"), Reference: g.str(255, 256),
			MerchantData: g.str(255, 1024), ProductURL: pick(g, "", "https://shop.example/p", "javascript:alert(1)"),
		}
		if exact {
			l.TotalAmount = l.Quantity*l.UnitPrice - l.TotalDiscountAmount
			if l.TotalAmount >= -core.MaxLineAmount && l.TotalAmount <= core.MaxLineAmount && l.TaxRate >= 0 && l.TaxRate <= 10000 {
				l.TotalTaxAmount = core.ExpectedLineTax(l.TotalAmount, l.TaxRate) + int64(g.next()%5) - 2
			}
		} else {
			l.TotalAmount, l.TotalTaxAmount = g.amount(), g.amount()
		}
		if l.Type == "sales_tax" && g.next()%2 == 0 {
			l.TaxRate, l.TotalTaxAmount = 0, 0
		}
		if g.next()%6 == 0 {
			l.Subscription = &core.Subscription{Name: g.str(255), Interval: pick(g, "MONTH", "YEAR", "month", ""), IntervalCount: pick(g, int64(1), 12, 0)}
		}
		p.OrderLines = append(p.OrderLines, l)
	}
	for _, l := range p.OrderLines {
		p.OrderAmount += l.TotalAmount
		if l.Type == "sales_tax" {
			p.OrderTaxAmount += l.TotalAmount
		} else {
			p.OrderTaxAmount += l.TotalTaxAmount
		}
	}
	if !exact || g.next()%8 == 0 {
		p.OrderAmount += int64(g.next()%3) - 1
	}
	p.BillingAddress, p.ShippingAddress = g.address(), g.address()
	return p
}

// simOracle is an in-process simulator the storefront validation is held to.
type simOracle struct {
	sim   *klarnasim.Sim
	token string // a token that refuses every valid charge with 403 (no order is stored)
}

var (
	oracleOnce sync.Once
	oracle     *simOracle
)

func theOracle() *simOracle {
	oracleOnce.Do(func() {
		// The simulator is a validation oracle here, asked thousands of
		// times a second: its rate limit is not what is being checked.
		sim := klarnasim.New(klarnasim.Options{Seed: 1, CallbackRetries: -1, Unlimited: true})
		oracle = &simOracle{sim: sim, token: sim.CreateToken("TOKEN_FORBIDDEN", 0)}
	})
	return oracle
}

// post sends body to the simulator and returns its status and body.
func (o *simOracle) post(path string, body []byte) (int, string) {
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.SetBasicAuth("sim", "sim")
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	o.sim.Handler().ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// FuzzStorefrontRequestValidation: a session or charge request that hppd's
// validation accepts is accepted by the simulator's validation of the Klarna
// request hppd builds from it (KP session, customer token order).
func FuzzStorefrontRequestValidation(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 5, 2, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("a fairly long seed of bytes that steers through every choice the generator has"))
	f.Add(bytes.Repeat([]byte{2, 7, 130, 9, 1}, 30))
	f.Add(bytes.Repeat([]byte{0xff, 0x80, 0x01}, 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &gen{b: data}
		p := g.purchase()
		mode := pick(g, "", core.ModeNone, core.ModePlace, "place_order")
		integration := pick(g, "", core.IntegrationHPP, core.IntegrationSDK, "kp")
		token := pick(g, "", "tok", strings.Repeat("t", 256))
		urls := core.ReturnURLs{Success: pick(g, "https://shop.example/ok", "", "javascript:x", "/relative"), Failure: "https://shop.example/fail"}
		o := theOracle()

		sr := SessionRequest{Purchase: p, CustomerToken: token, PlaceOrderMode: mode, Integration: integration, ReturnURLs: urls}
		if err := sr.Validate(); err == nil {
			body, err := json.Marshal(kpSessionRequest(&sr.Purchase, sr.CustomerToken))
			if err != nil {
				t.Fatal(err)
			}
			if st, out := o.post("/payments/v1/sessions", body); st != http.StatusOK {
				t.Fatalf("hppd accepted a session request the simulator refuses (%d %s):\n%s", st, out, body)
			}
		} else if e, ok := err.(*core.Error); !ok || e.Code != core.CodeInvalid || e.Field == "" {
			t.Fatalf("session validation error %v does not name a field", err)
		}

		present := g.next()%2 == 0
		cr := ChargeRequest{CustomerToken: o.token, CustomerPresent: &present, Purchase: p, Integration: integration, ReturnURLs: urls}
		if err := cr.Validate(); err == nil {
			body, err := json.Marshal(tokenOrderRequest(&cr.Purchase, false))
			if err != nil {
				t.Fatal(err)
			}
			if st, out := o.post("/customer-token/v1/tokens/"+o.token+"/order", body); st == http.StatusBadRequest {
				t.Fatalf("hppd accepted a charge request the simulator refuses (%d %s):\n%s", st, out, body)
			}
		} else if e, ok := err.(*core.Error); !ok || e.Code != core.CodeInvalid || e.Field == "" {
			t.Fatalf("charge validation error %v does not name a field", err)
		}
	})
}

// What FuzzStorefrontRequestValidation found, as regular tests: requests
// hppd used to accept although Klarna's schemas refuse them (a 502 after a
// Klarna call, or a failed charge, instead of a 400 naming the field).
func TestFuzzFindingsAreRefusedUpFront(t *testing.T) {
	valid := func() core.Purchase {
		return core.Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 10000, OrderTaxAmount: 2000,
			OrderLines: []core.OrderLine{{Type: "physical", Name: "Cup", Quantity: 2, UnitPrice: 5000, TaxRate: 2500, TotalAmount: 10000, TotalTaxAmount: 2000}}}
	}
	urls := core.ReturnURLs{Success: "https://shop.example/ok", Failure: "https://shop.example/fail"}
	absent := false
	cases := []struct {
		name   string
		edit   func(p *core.Purchase)
		charge bool // the rule is the customer token API's only
		field  string
	}{
		{"line merchant_data over the token API's 255", func(p *core.Purchase) { p.OrderLines[0].MerchantData = strings.Repeat("m", 256) }, true, "order_lines[0].merchant_data"},
		{"billing given_name over 99 characters", func(p *core.Purchase) { p.BillingAddress = &core.Address{GivenName: strings.Repeat("a", 100)} }, false, "billing_address.given_name"},
		{"shipping postal_code over 10 characters", func(p *core.Purchase) { p.ShippingAddress = &core.Address{PostalCode: "12345678901"} }, false, "shipping_address.postal_code"},
		{"shipping title over 20 characters", func(p *core.Purchase) { p.ShippingAddress = &core.Address{Title: strings.Repeat("é", 21)} }, false, "shipping_address.title"},
		{"shipping phone under the token API's 5", func(p *core.Purchase) { p.ShippingAddress = &core.Address{Phone: "1234"} }, true, "shipping_address.phone"},
		{"subscription name over 255", func(p *core.Purchase) {
			p.OrderLines[0].Subscription = &core.Subscription{Name: strings.Repeat("s", 256), Interval: "MONTH", IntervalCount: 1}
		}, false, "order_lines[0].subscription.name"},
	}
	o := theOracle()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := valid()
			c.edit(&p)
			cr := ChargeRequest{CustomerToken: o.token, CustomerPresent: &absent, Purchase: p}
			err := cr.Validate()
			if e, ok := err.(*core.Error); !ok || e.Field != c.field {
				t.Fatalf("charge validation: %v, want invalid %s", err, c.field)
			}
			// The case is one Klarna refuses: the token order for a token
			// API rule, the KP session (also the fallback's) otherwise.
			path, body := "/payments/v1/sessions", mustJSON(t, kpSessionRequest(&p, ""))
			if c.charge {
				path, body = "/customer-token/v1/tokens/"+o.token+"/order", mustJSON(t, tokenOrderRequest(&p, false))
			}
			if st, out := o.post(path, body); st != http.StatusBadRequest || !strings.Contains(out, c.field) {
				t.Fatalf("the simulator answers %d %s; the case is not one Klarna refuses", st, out)
			}
			sr := SessionRequest{Purchase: p, ReturnURLs: urls}
			err = sr.Validate()
			if c.charge {
				if err != nil {
					t.Fatalf("session validation refuses what KP accepts: %v", err)
				}
				return
			}
			if e, ok := err.(*core.Error); !ok || e.Field != c.field {
				t.Fatalf("session validation: %v, want invalid %s", err, c.field)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
