package klarna

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FACTS section 4: DemoMerchant:DemoPassword → RGVtb01lcmNoYW50OkRlbW9QYXNzd29yZA==.
const (
	testUser   = "DemoMerchant"
	testPass   = "DemoPassword"
	testBasic  = "Basic RGVtb01lcmNoYW50OkRlbW9QYXNzd29yZA=="
	authToken  = "b4bd3423-24e3-auth/tok en"
	custToken  = "9a1f-ct/token"
	idemKey    = "0b8f7a60-2f43-4b5e-9d5f-4a0c1a7d8e11"
	hppID      = "hpp/1 2"
	kpID       = "kp-session-1"
	userAgentV = "1.2.3"
)

// seen is one request as the test server received it.
type seen struct {
	Method, URI string // URI is the escaped request URI
	Header      http.Header
	Body        []byte
}

// recorder is an httptest.Server that records requests and answers from a
// script (one reply per request, the last one repeated).
type recorder struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []seen
	replies []reply
}

type reply struct {
	status int
	header map[string]string
	body   string
	hang   bool // wait until the client gives up
}

func jsonReply(status int, body string) reply {
	return reply{status: status, header: map[string]string{"Content-Type": "application/json"}, body: body}
}

func newRecorder(t *testing.T, replies ...reply) *recorder {
	t.Helper()
	r := &recorder{replies: replies}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		n := len(r.reqs)
		r.reqs = append(r.reqs, seen{Method: req.Method, URI: req.RequestURI, Header: req.Header.Clone(), Body: body})
		rep := reply{status: http.StatusOK}
		if len(r.replies) > 0 {
			rep = r.replies[min(n, len(r.replies)-1)]
		}
		r.mu.Unlock()
		if rep.hang {
			<-req.Context().Done()
			return
		}
		for k, v := range rep.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) requests() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.reqs...)
}

// testClient returns a client for base whose backoff sleeps are recorded
// instead of waited for.
func testClient(t *testing.T, base string, mod func(*Config)) (*Client, *sleeps) {
	t.Helper()
	cfg := Config{
		BaseURL:     base,
		Username:    testUser,
		Password:    testPass,
		Version:     userAgentV,
		BackoffBase: time.Millisecond,
		BackoffMax:  5 * time.Second,
		OtherRate:   -1,
		Timeout:     5 * time.Second,
	}
	cfg.CreateSessionRate = -1
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &sleeps{}
	c.sleep = s.sleep
	return c, s
}

type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
	// hook, if set, runs instead of returning nil.
	hook func(ctx context.Context) error
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		return hook(ctx)
	}
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func testLines() []OrderLine {
	return []OrderLine{{
		Type: "physical", Reference: "SKU-1", Name: "Running shoe", Quantity: 2, QuantityUnit: "pcs",
		UnitPrice: 5000, TaxRate: 2500, TotalAmount: 10000, TotalTaxAmount: 2000,
	}}
}

func testKPSessionRequest() *KPSessionRequest {
	return &KPSessionRequest{
		AcquiringChannel: "ECOMMERCE", Intent: "buy", PurchaseCountry: "SE", PurchaseCurrency: "SEK",
		Locale: "sv-SE", OrderAmount: 10000, OrderTaxAmount: 2000, OrderLines: testLines(),
		MerchantReference1: "order-42", Customer: &Customer{CustomerToken: "krn:partner:eu:playground:identity:customer-token:abc"},
	}
}

func testOrderRequest() *OrderRequest {
	return &OrderRequest{
		PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 10000, OrderTaxAmount: 2000,
		OrderLines: testLines(), MerchantReference1: "order-42",
		BillingAddress: &Address{GivenName: "Testperson", FamilyName: "Approved", Email: "t@example.com", Country: "SE"},
	}
}

func testTokenOrderRequest() *TokenOrderRequest {
	return &TokenOrderRequest{
		PurchaseCurrency: "EUR", Locale: "de-DE", OrderAmount: 10000, OrderTaxAmount: 2000,
		OrderLines: testLines(), MerchantReference1: "charge-7", AutoCapture: true,
	}
}

func testHPPSessionRequest() *HPPSessionRequest {
	return &HPPSessionRequest{
		PaymentSessionURL: "https://api.playground.klarna.com/payments/v1/sessions/" + kpID,
		MerchantURLs: &HPPMerchantURLs{
			Success:      "https://shop.example/success?hppId={{session_id}}&token={{authorization_token}}",
			Cancel:       "https://shop.example/cancel?hppId={{session_id}}",
			Back:         "https://shop.example/back?hppId={{session_id}}",
			Failure:      "https://shop.example/failure?hppId={{session_id}}",
			Error:        "https://shop.example/error?hppId={{session_id}}",
			StatusUpdate: "https://hppd.example/klarna/status?hppId={{session_id}}&secret=s3cr3t",
		},
		Options: &HPPOptions{PlaceOrderMode: PlaceOrderModeNone, PaymentMethodCategories: []string{"PAY_LATER", "PAY_OVER_TIME"}, PurchaseType: "BUY"},
	}
}

func testDistribution() *DistributionRequest {
	return &DistributionRequest{Method: "email", ContactInformation: DistributionContact{Email: "shopper@example.com"}}
}

// opCase is one operation with its expected wire form and a canned answer.
type opCase struct {
	op        string
	method    string
	uri       string
	status    int
	respBody  string
	wantKey   bool   // sends Klarna-Idempotency-Key
	wantBody  string // JSON the request body must equal, "" for no body
	wantJSON  bool   // sends Accept: application/json
	call      func(ctx context.Context, c *Client) (any, error)
	checkResp func(t *testing.T, got any)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func opCases(t *testing.T) []opCase {
	return []opCase{
		{
			op: OpCreateKPSession, method: "POST", uri: "/payments/v1/sessions", status: 200,
			respBody: `{"session_id":"kp-session-1","client_token":"eyJ","payment_method_categories":[{"identifier":"pay_later","name":"Pay later"}]}`,
			wantBody: mustJSON(t, testKPSessionRequest()), wantJSON: true,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CreateKPSession(ctx, testKPSessionRequest())
			},
			checkResp: func(t *testing.T, got any) {
				s := got.(*KPSession)
				if s.SessionID != kpID || s.ClientToken != "eyJ" || len(s.PaymentMethodCategories) != 1 || s.PaymentMethodCategories[0].Identifier != "pay_later" {
					t.Fatalf("decoded %+v", s)
				}
			},
		},
		{
			op: OpReadKPSession, method: "GET", uri: "/payments/v1/sessions/kp-session-1", status: 200,
			respBody: `{"status":"complete","authorization_token":"at-1","purchase_country":"SE","purchase_currency":"SEK","order_amount":10000,"order_lines":[{"name":"Running shoe","quantity":2,"unit_price":5000,"total_amount":10000}],"expires_at":"2038-01-19T03:14:07Z"}`,
			wantJSON: true,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.ReadKPSession(ctx, kpID) },
			checkResp: func(t *testing.T, got any) {
				s := got.(*KPSessionRead)
				if s.Status != "complete" || s.AuthorizationToken != "at-1" || s.OrderAmount != 10000 || len(s.OrderLines) != 1 || s.ExpiresAt == nil || s.ExpiresAt.Year() != 2038 {
					t.Fatalf("decoded %+v", s)
				}
			},
		},
		{
			op: OpPlaceOrder, method: "POST", uri: "/payments/v1/authorizations/b4bd3423-24e3-auth%2Ftok%20en/order", status: 200,
			respBody: `{"order_id":"o-1","fraud_status":"ACCEPTED","redirect_url":"https://credit.klarna.com/x","authorized_payment_method":{"type":"invoice","number_of_days":30}}`,
			wantKey:  true, wantBody: mustJSON(t, testOrderRequest()), wantJSON: true,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.PlaceOrder(ctx, authToken, testOrderRequest(), idemKey)
			},
			checkResp: func(t *testing.T, got any) {
				o := got.(*Order)
				if o.OrderID != "o-1" || o.FraudStatus != "ACCEPTED" || o.AuthorizedPaymentMethod == nil || o.AuthorizedPaymentMethod.NumberOfDays != 30 {
					t.Fatalf("decoded %+v", o)
				}
			},
		},
		{
			op: OpCancelAuthorization, method: "DELETE", uri: "/payments/v1/authorizations/b4bd3423-24e3-auth%2Ftok%20en", status: 204,
			call: func(ctx context.Context, c *Client) (any, error) { return nil, c.CancelAuthorization(ctx, authToken) },
		},
		{
			op: OpCreateHPPSession, method: "POST", uri: "/hpp/v1/sessions", status: 201,
			respBody: `{"session_id":"hpp-1","session_url":"https://api.klarna.com/hpp/v1/sessions/hpp-1","redirect_url":"https://pay.klarna.com/eu/hpp/payments/2OCkffK","distribution_url":"https://api.klarna.com/hpp/v1/sessions/hpp-1/distribution","expires_at":"2038-01-19T03:14:07.000Z","distribution_module":{"token":"t","standalone_url":"s","generation_url":"g"}}`,
			wantBody: mustJSON(t, testHPPSessionRequest()), wantJSON: true,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CreateHPPSession(ctx, testHPPSessionRequest())
			},
			checkResp: func(t *testing.T, got any) {
				s := got.(*HPPSession)
				if s.SessionID != "hpp-1" || s.RedirectURL != "https://pay.klarna.com/eu/hpp/payments/2OCkffK" || s.ExpiresAt == nil || s.DistributionModule == nil || s.DistributionModule.Token != "t" {
					t.Fatalf("decoded %+v", s)
				}
			},
		},
		{
			op: OpReadHPPSession, method: "GET", uri: "/hpp/v1/sessions/hpp%2F1%202", status: 200,
			respBody: `{"session_id":"hpp/1 2","status":"COMPLETED","authorization_token":"at-9","updated_at":"2024-05-13T14:51:46.288Z","expires_at":"2024-05-15T13:51:43.507Z","klarna_reference":"ffc25786","customer":{"given_name":"A"}}`,
			wantJSON: true,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.ReadHPPSession(ctx, hppID) },
			checkResp: func(t *testing.T, got any) {
				s := got.(*HPPSessionStatus)
				if s.SessionID != hppID || s.Status != HPPCompleted || s.AuthorizationToken != "at-9" || s.UpdatedAt == nil || s.Customer == nil || s.Customer.GivenName != "A" {
					t.Fatalf("decoded %+v", s)
				}
			},
		},
		{
			op: OpDisableHPPSession, method: "DELETE", uri: "/hpp/v1/sessions/hpp%2F1%202", status: 204,
			call: func(ctx context.Context, c *Client) (any, error) { return nil, c.DisableHPPSession(ctx, hppID) },
		},
		{
			op: OpDistributeHPPSession, method: "POST", uri: "/hpp/v1/sessions/hpp%2F1%202/distribution", status: 201,
			wantBody: mustJSON(t, testDistribution()),
			call: func(ctx context.Context, c *Client) (any, error) {
				return nil, c.DistributeHPPSession(ctx, hppID, testDistribution())
			},
		},
		{
			op: OpReadCustomerToken, method: "GET", uri: "/customer-token/v1/tokens/9a1f-ct%2Ftoken", status: 200,
			respBody: `{"status":"ACTIVE","payment_method_type":"CARD","card":{"brand":"VISA","expiry_date":"12/2030","masked_number":"************1234"}}`,
			wantJSON: true,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.ReadCustomerToken(ctx, custToken) },
			checkResp: func(t *testing.T, got any) {
				tok := got.(*CustomerToken)
				if tok.Status != "ACTIVE" || tok.PaymentMethodType != "CARD" || tok.Card == nil || tok.Card.Brand != "VISA" {
					t.Fatalf("decoded %+v", tok)
				}
			},
		},
		{
			op: OpCreateTokenOrder, method: "POST", uri: "/customer-token/v1/tokens/9a1f-ct%2Ftoken/order", status: 200,
			respBody: `{"order_id":"a89e","fraud_status":"ACCEPTED","redirect_url":"https://credit.klarna.com/y"}`,
			wantKey:  true, wantBody: mustJSON(t, testTokenOrderRequest()), wantJSON: true,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CreateTokenOrder(ctx, custToken, testTokenOrderRequest(), idemKey)
			},
			checkResp: func(t *testing.T, got any) {
				o := got.(*Order)
				if o.OrderID != "a89e" || o.FraudStatus != "ACCEPTED" {
					t.Fatalf("decoded %+v", o)
				}
			},
		},
		{
			op: OpReadOrder, method: "GET", uri: "/ordermanagement/v1/orders/a89e%2F1", status: 200,
			respBody: `{"order_id":"a89e/1","status":"AUTHORIZED","fraud_status":"PENDING","order_amount":10000,"original_order_amount":10000,"captured_amount":0,"purchase_currency":"SEK","created_at":"2024-05-13T14:51:46.288Z","order_lines":[],"captures":[],"refunds":[]}`,
			wantJSON: true,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.ReadOrder(ctx, "a89e/1") },
			checkResp: func(t *testing.T, got any) {
				o := got.(*OMOrder)
				if o.OrderID != "a89e/1" || o.FraudStatus != "PENDING" || o.Status != "AUTHORIZED" || o.OrderAmount != 10000 || o.CreatedAt == nil {
					t.Fatalf("decoded %+v", o)
				}
			},
		},
	}
}

var userAgentRE = regexp.MustCompile(`^Library/hppd_1\.2\.3 Language/Go_[0-9][^ ]* OS/[a-z0-9]+_[a-z0-9]+$`)

func TestOperations(t *testing.T) {
	cases := opCases(t)
	if len(cases) != len(Ops) {
		t.Fatalf("%d cases for %d operations", len(cases), len(Ops))
	}
	for _, tc := range cases {
		t.Run(tc.op, func(t *testing.T) {
			var rep reply
			if tc.respBody != "" {
				rep = jsonReply(tc.status, tc.respBody)
			} else {
				rep = reply{status: tc.status}
			}
			srv := newRecorder(t, rep)
			var observed []string
			c, _ := testClient(t, srv.URL, func(cfg *Config) {
				cfg.Observer = func(op string, status int, _ time.Duration, err error) {
					observed = append(observed, op)
					if status != tc.status || err != nil {
						t.Errorf("observer got status %d err %v", status, err)
					}
				}
			})
			got, err := tc.call(context.Background(), c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if tc.checkResp != nil {
				tc.checkResp(t, got)
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != tc.method || r.URI != tc.uri {
				t.Fatalf("request %s %s, want %s %s", r.Method, r.URI, tc.method, tc.uri)
			}
			if got := r.Header.Get("Authorization"); got != testBasic {
				t.Fatalf("Authorization %q, want %q", got, testBasic)
			}
			if ua := r.Header.Get("User-Agent"); !userAgentRE.MatchString(ua) {
				t.Fatalf("User-Agent %q does not follow Klarna's convention", ua)
			}
			if got := r.Header.Get(IdempotencyKeyHeader); (got == idemKey) != tc.wantKey || (!tc.wantKey && got != "") {
				t.Fatalf("%s = %q, want key: %v", IdempotencyKeyHeader, got, tc.wantKey)
			}
			if got := r.Header.Get("Accept"); (got == "application/json") != tc.wantJSON {
				t.Fatalf("Accept %q, want JSON: %v", got, tc.wantJSON)
			}
			if tc.wantBody == "" {
				if len(r.Body) != 0 || r.Header.Get("Content-Type") != "" {
					t.Fatalf("unexpected body %q (Content-Type %q)", r.Body, r.Header.Get("Content-Type"))
				}
			} else {
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Fatalf("Content-Type %q", ct)
				}
				if string(r.Body) != tc.wantBody {
					t.Fatalf("body\n%s\nwant\n%s", r.Body, tc.wantBody)
				}
			}
			if len(observed) != 1 || observed[0] != tc.op {
				t.Fatalf("observer saw %v, want [%s]", observed, tc.op)
			}
		})
	}
}

func TestRequestBodiesUseKlarnaFieldNames(t *testing.T) {
	srv := newRecorder(t, jsonReply(200, `{"order_id":"o"}`))
	c, _ := testClient(t, srv.URL, nil)
	if _, err := c.PlaceOrder(context.Background(), authToken, testOrderRequest(), idemKey); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(srv.requests()[0].Body, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"purchase_country", "purchase_currency", "order_amount", "order_tax_amount", "order_lines", "merchant_reference1", "billing_address", "locale"} {
		if _, ok := m[k]; !ok {
			t.Errorf("body lacks %q: %v", k, m)
		}
	}
	line := m["order_lines"].([]any)[0].(map[string]any)
	for k, want := range map[string]float64{"quantity": 2, "unit_price": 5000, "tax_rate": 2500, "total_amount": 10000, "total_tax_amount": 2000} {
		if line[k] != want {
			t.Errorf("order line %s = %v, want %v (minor units)", k, line[k], want)
		}
	}
}

func TestRawBodiesAreSentByteForByte(t *testing.T) {
	// Odd spacing and field order: hppd persists these bytes and replays them.
	raw := []byte("{ \"order_lines\":[{\"name\":\"x\",\"quantity\":1,\"unit_price\":100,\"total_amount\":100}],\n \"purchase_currency\":\"EUR\", \"order_amount\":100,\"purchase_country\":\"DE\",\"order_tax_amount\":0 }")
	srv := newRecorder(t, jsonReply(200, `{"order_id":"o-raw"}`))
	c, _ := testClient(t, srv.URL, nil)
	o, err := c.PlaceOrderRaw(context.Background(), authToken, raw, idemKey)
	if err != nil || o.OrderID != "o-raw" {
		t.Fatalf("PlaceOrderRaw = %+v, %v", o, err)
	}
	o, err = c.CreateTokenOrderRaw(context.Background(), custToken, raw, idemKey)
	if err != nil || o.OrderID != "o-raw" {
		t.Fatalf("CreateTokenOrderRaw = %+v, %v", o, err)
	}
	for i, r := range srv.requests() {
		if !bytes.Equal(r.Body, raw) {
			t.Fatalf("request %d body %q, want %q", i, r.Body, raw)
		}
	}
}

func TestInvalidArgumentsSendNothing(t *testing.T) {
	srv := newRecorder(t)
	c, _ := testClient(t, srv.URL, nil)
	ctx := context.Background()
	calls := map[string]func() error{
		"create kp nil":        func() error { _, err := c.CreateKPSession(ctx, nil); return err },
		"read kp empty":        func() error { _, err := c.ReadKPSession(ctx, ""); return err },
		"place order nil":      func() error { _, err := c.PlaceOrder(ctx, authToken, nil, idemKey); return err },
		"place order no token": func() error { _, err := c.PlaceOrderRaw(ctx, "", []byte("{}"), idemKey); return err },
		"place order no body":  func() error { _, err := c.PlaceOrderRaw(ctx, authToken, nil, idemKey); return err },
		"cancel empty":         func() error { return c.CancelAuthorization(ctx, "") },
		"create hpp nil":       func() error { _, err := c.CreateHPPSession(ctx, nil); return err },
		"create hpp no kp url": func() error { _, err := c.CreateHPPSession(ctx, &HPPSessionRequest{}); return err },
		"read hpp empty":       func() error { _, err := c.ReadHPPSession(ctx, ""); return err },
		"disable empty":        func() error { return c.DisableHPPSession(ctx, "") },
		"distribute empty":     func() error { return c.DistributeHPPSession(ctx, "", testDistribution()) },
		"distribute nil":       func() error { return c.DistributeHPPSession(ctx, hppID, nil) },
		"read token empty":     func() error { _, err := c.ReadCustomerToken(ctx, ""); return err },
		"token order nil":      func() error { _, err := c.CreateTokenOrder(ctx, custToken, nil, idemKey); return err },
		"token order no token": func() error { _, err := c.CreateTokenOrderRaw(ctx, "", []byte("{}"), idemKey); return err },
		"token order no body":  func() error { _, err := c.CreateTokenOrderRaw(ctx, custToken, []byte{}, idemKey); return err },
		// "." and ".." pass url.PathEscape and would name another path.
		"read token ..":  func() error { _, err := c.ReadCustomerToken(ctx, ".."); return err },
		"read token .":   func() error { _, err := c.ReadCustomerToken(ctx, "."); return err },
		"token order ..": func() error { _, err := c.CreateTokenOrderRaw(ctx, "..", []byte("{}"), idemKey); return err },
		"read kp ..":     func() error { _, err := c.ReadKPSession(ctx, ".."); return err },
		"place order ..": func() error { _, err := c.PlaceOrderRaw(ctx, "..", []byte("{}"), idemKey); return err },
		"read hpp ..":    func() error { _, err := c.ReadHPPSession(ctx, ".."); return err },
		"disable hpp ..": func() error { return c.DisableHPPSession(ctx, "..") },
		"read order ..":  func() error { _, err := c.ReadOrder(ctx, ".."); return err },
	}
	for name, f := range calls {
		t.Run(name, func(t *testing.T) {
			err := f()
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("err = %v, want ErrInvalidRequest", err)
			}
			if IsTransient(err) || IsFinal(err) {
				t.Fatalf("invalid argument classified as transient or final: %v", err)
			}
		})
	}
	if n := len(srv.requests()); n != 0 {
		t.Fatalf("server saw %d requests", n)
	}
}

func TestBaseURLFor(t *testing.T) {
	cases := []struct{ region, env, want, wantErr string }{
		{"", "", "https://api.playground.klarna.com", ""},
		{"eu", "production", "https://api.klarna.com", ""},
		{"eu", "playground", "https://api.playground.klarna.com", ""},
		{"na", "production", "https://api-na.klarna.com", ""},
		{"na", "playground", "https://api-na.playground.klarna.com", ""},
		{"oc", "production", "https://api-oc.klarna.com", ""},
		{"OC", "", "https://api-oc.playground.klarna.com", ""},
		{"us", "production", "", "Region"},
		{"eu", "staging", "", "Environment"},
	}
	for _, tc := range cases {
		got, err := BaseURLFor(tc.region, tc.env)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("BaseURLFor(%q, %q) err = %v, want one naming %s", tc.region, tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("BaseURLFor(%q, %q) = %q, %v; want %q", tc.region, tc.env, got, err, tc.want)
		}
	}
}

func TestNewValidatesConfig(t *testing.T) {
	ok := Config{Username: testUser, Password: testPass}
	cases := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"unknown region", func(c *Config) { c.Region = "mars" }, "Region"},
		{"unknown environment", func(c *Config) { c.Environment = "qa" }, "Environment"},
		{"relative base url", func(c *Config) { c.BaseURL = "api.klarna.com" }, "BaseURL"},
		{"base url with credentials", func(c *Config) { c.BaseURL = "https://u:p@api.klarna.com" }, "BaseURL"},
		{"no username", func(c *Config) { c.Username = "" }, "Username"},
		{"no password", func(c *Config) { c.Password = "" }, "Password"},
		{"colon in username", func(c *Config) { c.Username = "a:b" }, "Username"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "Timeout"},
		{"negative attempts", func(c *Config) { c.MaxAttempts = -1 }, "MaxAttempts"},
		{"negative backoff", func(c *Config) { c.BackoffBase = -1 }, "BackoffBase"},
		{"max below base", func(c *Config) { c.BackoffBase, c.BackoffMax = time.Second, time.Millisecond }, "BackoffMax"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), testPass) {
				t.Fatalf("error discloses the password: %v", err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	c, err := New(Config{Username: testUser, Password: testPass, Region: "na", Environment: "production"})
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseURL() != "https://api-na.klarna.com" {
		t.Errorf("BaseURL %q", c.BaseURL())
	}
	if c.timeout != DefaultTimeout || c.attempts != DefaultMaxAttempts || c.boBase != DefaultBackoffBase || c.boMax != DefaultBackoffMax {
		t.Errorf("defaults: timeout %v attempts %d backoff %v..%v", c.timeout, c.attempts, c.boBase, c.boMax)
	}
	if c.kpLim.lim.Limit() != DefaultCreateSessionRate*paceMargin || c.hppLim.lim.Limit() != DefaultCreateSessionRate*paceMargin ||
		c.otherLim.lim.Limit() != DefaultOtherRate*paceMargin || c.maxRA != DefaultMaxRetryAfter {
		t.Errorf("rates %v, %v, %v; max Retry-After %v", c.kpLim.lim.Limit(), c.hppLim.lim.Limit(), c.otherLim.lim.Limit(), c.maxRA)
	}
	if !strings.HasPrefix(c.userAgent, "Library/hppd_dev Language/Go_") {
		t.Errorf("User-Agent %q", c.userAgent)
	}

	c, err = New(Config{BaseURL: "http://127.0.0.1:9/klarna/", Region: "ignored", Username: testUser, Password: testPass, Version: "1.0 (beta)/x"})
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseURL() != "http://127.0.0.1:9/klarna" {
		t.Errorf("BaseURL %q", c.BaseURL())
	}
	if got := c.PaymentSessionURL("a/b c"); got != "http://127.0.0.1:9/klarna/payments/v1/sessions/a%2Fb%20c" {
		t.Errorf("PaymentSessionURL %q", got)
	}
	if !strings.HasPrefix(c.userAgent, "Library/hppd_1.0--beta--x Language/") {
		t.Errorf("User-Agent %q: version not sanitised", c.userAgent)
	}
}

// The HPP calls go to the session_url Klarna returned (FACTS 8.7), but only
// when it is on the configured host: the credentials never leave for another.
func TestHPPCallsUseTheReturnedSessionURLOnlyOnKlarnasHost(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	klarnaSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.EscapedPath())
		mu.Unlock()
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"session_id":"h1","status":"WAITING"}`)
	}))
	defer klarnaSrv.Close()
	var foreign atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreign.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer other.Close()

	c, _ := testClient(t, klarnaSrv.URL+"/eu", nil)
	ctx := context.Background()
	cases := []struct{ sessionURL, want string }{
		{klarnaSrv.URL + "/eu/hpp/v1/sessions/h1", "/eu/hpp/v1/sessions/h1"},
		{klarnaSrv.URL + "/eu/hpp/v2/sessions/h1", "/eu/hpp/v2/sessions/h1"}, // where Klarna says, not where hppd would build
		{"", "/eu/hpp/v1/sessions/h1"},
		{other.URL + "/eu/hpp/v1/sessions/h1", "/eu/hpp/v1/sessions/h1"},                                            // another host
		{strings.Replace(klarnaSrv.URL, "http:", "https:", 1) + "/eu/hpp/v1/sessions/h1", "/eu/hpp/v1/sessions/h1"}, // another scheme
		{klarnaSrv.URL + "/other/hpp/v1/sessions/h1", "/eu/hpp/v1/sessions/h1"},                                     // outside the base path
		{klarnaSrv.URL + "/eu/hpp/v1/sessions/../../x/h1", "/eu/hpp/v1/sessions/h1"},                                // climbs out
		{klarnaSrv.URL + "/eu/hpp/v1/sessions/h2", "/eu/hpp/v1/sessions/h1"},                                        // another session
		{klarnaSrv.URL + "/eu/hpp/v1/sessions/h1?x=1", "/eu/hpp/v1/sessions/h1"},                                    // a query
	}
	for _, cse := range cases {
		paths = nil
		if _, err := c.ReadHPPSessionAt(ctx, "h1", cse.sessionURL); err != nil {
			t.Fatalf("%q: %v", cse.sessionURL, err)
		}
		if err := c.DisableHPPSessionAt(ctx, "h1", cse.sessionURL); err != nil {
			t.Fatalf("%q: %v", cse.sessionURL, err)
		}
		mu.Lock()
		got := strings.Join(paths, ", ")
		mu.Unlock()
		if want := "GET " + cse.want + ", DELETE " + cse.want; got != want {
			t.Errorf("session_url %q: requests %s, want %s", cse.sessionURL, got, want)
		}
	}
	if n := foreign.Load(); n != 0 {
		t.Fatalf("%d requests went to a host other than Klarna's", n)
	}
}
