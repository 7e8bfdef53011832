package demo_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/internal/demo"
)

// page is a page a plain HTTP client (following redirects like a browser
// does) landed on.
type page struct {
	url    *url.URL
	status int
	body   string
}

func (p page) field(id string) string {
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return m[1]
}

func (p page) progress() string {
	m := regexp.MustCompile(`data-progress="([a-z]+)"`).FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return m[1]
}

func (e *env) get(u string) page {
	e.t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.read(resp)
}

func (e *env) post(u string, form url.Values) page {
	e.t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.read(resp)
}

func (e *env) read(resp *http.Response) page {
	e.t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return page{url: resp.Request.URL, status: resp.StatusCode, body: string(b)}
}

// buy presses Buy on the shop's page for a scenario.
func (e *env) buy(scenario string) page {
	e.t.Helper()
	return e.post(e.shop.URL+"/buy", url.Values{"scenario": {scenario}})
}

// press presses a button of the simulator's payment page p.
func (e *env) press(p page, action string) page {
	e.t.Helper()
	if !strings.HasPrefix(p.url.String(), e.simURL+"/hpp/pay/") {
		e.t.Fatalf("not on the payment page: %s (%d) %s", p.url, p.status, p.body)
	}
	return e.post(p.url.String(), url.Values{"action": {action}})
}

// settle re-reads a result page (as its meta refresh does) until it stops
// refreshing; this is a bounded wait, not a speed assertion.
func (e *env) settle(p page) page {
	e.t.Helper()
	if p.url.Path != "/result" {
		e.t.Fatalf("not on the result page: %s (%d) %s", p.url, p.status, p.body)
	}
	deadline := time.Now().Add(15 * time.Second)
	for p.progress() == demo.ProgressWorking {
		if time.Now().After(deadline) {
			e.t.Fatalf("result page still working: %s", p.body)
		}
		time.Sleep(20 * time.Millisecond)
		p = e.get(p.url.String())
	}
	if p.status != http.StatusOK {
		e.t.Fatalf("result page %d: %s", p.status, p.body)
	}
	return p
}

func TestStorefrontScenarios(t *testing.T) {
	e := newEnv(t)

	t.Run("index", func(t *testing.T) {
		p := e.get(e.shop.URL + "/")
		for _, sc := range demo.Scenarios {
			if !strings.Contains(p.body, `id="buy-`+sc.ID+`"`) || !strings.Contains(p.body, sc.Title) {
				t.Fatalf("no Buy button for %s", sc.ID)
			}
		}
		if p.field("total") != "439.00 SEK" {
			t.Fatalf("total %q", p.field("total"))
		}
	})

	t.Run("token charges fine", func(t *testing.T) {
		p := e.settle(e.buy("token-ok"))
		if p.progress() != demo.ProgressFinal || p.field("charge-status") != "charged" || p.field("charge-order") == "" {
			t.Fatalf("result: %s", p.body)
		}
		if p.field("headline") != "Paid with the saved payment method" || strings.Contains(p.body, `id="session"`) || !strings.Contains(p.body, `class="banner tone-good"`) {
			t.Fatalf("result: %s", p.body)
		}
	})

	t.Run("token failing once", func(t *testing.T) {
		p := e.settle(e.buy("token-failing-once"))
		if p.field("charge-status") != "charged" {
			t.Fatalf("result: %s", p.body)
		}
		att := p.body[strings.Index(p.body, `id="attempts"`):]
		att = att[:strings.Index(att, "</table>")]
		if strings.Count(att, "<tr><td>") != 2 || !strings.Contains(att, ">declined<") || !strings.Contains(att, "PAYMENT_METHOD_FAILED") || !strings.Contains(att, ">charged<") {
			t.Fatalf("attempts: %s", att)
		}
		keys := regexp.MustCompile(`<code>([^<]+-[0-9]+)</code>`).FindAllStringSubmatch(att, -1)
		if len(keys) != 2 || keys[0][1] == keys[1][1] {
			t.Fatalf("attempt keys %v: a definitive decline must be retried with a new key", keys)
		}
	})

	t.Run("token unavailable, pay on Klarna's page", func(t *testing.T) {
		pay := e.buy("token-unavailable")
		if pay.field("status") != "IN_PROGRESS" {
			t.Fatalf("payment page: %s", pay.body)
		}
		p := e.settle(e.press(pay, "pay"))
		if p.field("charge-status") != "recovered" || p.field("session-status") != "order_placed" {
			t.Fatalf("result: %s", p.body)
		}
		if p.field("charge-order") == "" || p.field("charge-order") != p.field("session-order") {
			t.Fatalf("charge order %q, session order %q", p.field("charge-order"), p.field("session-order"))
		}
		if p.url.Query().Get("outcome") != "success" || p.url.Query().Get("hppd_session") == "" {
			t.Fatalf("returned to %s", p.url)
		}
		if strings.Contains(p.body, "http-equiv=\"refresh\"") {
			t.Fatal("a settled page still refreshes itself")
		}
	})

	t.Run("checkout, decline, pay again", func(t *testing.T) {
		p := e.settle(e.press(e.buy("checkout"), "decline"))
		if p.progress() != demo.ProgressShopper || p.field("session-status") != "pending" || p.field("klarna-status") != "FAILED" {
			t.Fatalf("after decline: %s", p.body)
		}
		if strings.Contains(p.body, `http-equiv="refresh"`) {
			t.Fatal("the page refreshes although only the shopper can move on")
		}
		m := regexp.MustCompile(`id="pay-again" href="([^"]+)"`).FindStringSubmatch(p.body)
		if m == nil {
			t.Fatalf("no Pay again link: %s", p.body)
		}
		again := e.get(m[1])
		p = e.settle(e.press(again, "pay"))
		if p.field("session-status") != "order_placed" || p.field("headline") != "Order placed" {
			t.Fatalf("after paying again: %s", p.body)
		}
		sid := p.url.Query().Get("hppd_session")
		st, raw := e.api(t, "/v1/sessions/"+sid)
		if st != 200 || !strings.Contains(raw, `"order_placed"`) {
			t.Fatalf("hppd: %d %s", st, raw)
		}
	})

	t.Run("token unavailable, decline, cancel", func(t *testing.T) {
		p := e.settle(e.press(e.buy("token-unavailable"), "decline"))
		if p.progress() != demo.ProgressShopper || p.field("charge-status") != "fallback" || p.field("session-status") != "pending" {
			t.Fatalf("after decline: %s", p.body)
		}
		sid := p.url.Query().Get("hppd_session")
		p = e.settle(e.post(e.shop.URL+"/cancel", url.Values{"session": {sid}, "scenario": {"token-unavailable"}}))
		if p.field("session-status") != "cancelled" || p.field("charge-status") != "failed" || p.field("headline") != "The purchase failed" || !strings.Contains(p.body, `class="banner tone-bad"`) {
			t.Fatalf("after cancel: %s", p.body)
		}
	})
}

// api reads hppd's API directly, as a check on what the shop showed.
func (e *env) api(t *testing.T, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.opts.HPPDURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.opts.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStorefrontRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name   string
		do     func() page
		status int
	}{
		{"unknown scenario", func() page { return e.buy("free-lunch") }, http.StatusBadRequest},
		{"result without ids", func() page { return e.get(e.shop.URL + "/result") }, http.StatusBadRequest},
		{"unknown session", func() page { return e.get(e.shop.URL + "/result?session=nope") }, http.StatusBadGateway},
		{"cancel without session", func() page { return e.post(e.shop.URL+"/cancel", nil) }, http.StatusBadRequest},
		{"unknown page", func() page { return e.get(e.shop.URL + "/admin") }, http.StatusNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.do()
			if p.status != c.status || !strings.Contains(p.body, "Back to the shop") {
				t.Fatalf("%d %s", p.status, p.body)
			}
		})
	}
	p := e.get(e.shop.URL + "/result?session=nope")
	if !strings.Contains(p.body, "not_found") {
		t.Fatalf("hppd's refusal is not shown: %s", p.body)
	}
}

func TestStorefrontWithHPPDDown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	const secret = "jwt-that-must-not-show"
	shop, err := demo.New(demo.Options{HPPDURL: deadURL, SimURL: deadURL, SimUser: "u", SimPass: "sim-password", Token: func() string { return secret }})
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range []string{"checkout", "token-ok"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/buy", strings.NewReader("scenario="+sc))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		shop.ServeHTTP(rec, req)
		body := rec.Body.String()
		if rec.Code != http.StatusBadGateway || !strings.Contains(body, "did not answer") {
			t.Fatalf("%s: %d %s", sc, rec.Code, body)
		}
		for _, leak := range []string{secret, "sim-password", "connection refused", "dial tcp"} {
			if strings.Contains(body, leak) {
				t.Fatalf("%s: the page shows %q: %s", sc, leak, body)
			}
		}
	}
}

func TestNewNeedsOptions(t *testing.T) {
	if _, err := demo.New(demo.Options{}); err == nil || !strings.Contains(err.Error(), "HPPDURL") || !strings.Contains(err.Error(), "Token") {
		t.Fatalf("New with no options: %v", err)
	}
	if _, err := demo.Walk(context.Background(), demo.Options{HPPDURL: "http://x"}, io.Discard); err == nil {
		t.Fatal("Walk with no simulator URL and no token")
	}
}

func TestCartIsAValidKlarnaPurchase(t *testing.T) {
	c := demo.Cart("demo-1")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.OrderAmount != 43900 || c.OrderTaxAmount != 5000+2025 {
		t.Fatalf("amount %d tax %d", c.OrderAmount, c.OrderTaxAmount)
	}
}

func TestProgressAndHeadline(t *testing.T) {
	sess := func(status, klarna string) *api.Session { return &api.Session{Status: status, KlarnaStatus: klarna} }
	charge := func(status string) *api.Charge { return &api.Charge{Status: status} }
	cases := []struct {
		name     string
		s        *api.Session
		c        *api.Charge
		progress string
		headline string
	}{
		{"charged", nil, charge("charged"), demo.ProgressFinal, "Paid with the saved payment method"},
		{"charge pending", nil, charge("pending"), demo.ProgressWorking, "Charging the saved payment method…"},
		{"charge failed", nil, charge("failed"), demo.ProgressFinal, "The purchase failed"},
		{"retrying", nil, charge("retrying"), demo.ProgressScheduled, "Declined for now; hppd retries the charge on its schedule"},
		{"fallback, page open", sess("pending", "IN_PROGRESS"), charge("fallback"), demo.ProgressWorking, "Waiting for Klarna…"},
		{"fallback, declined", sess("pending", "FAILED"), charge("fallback"), demo.ProgressShopper, "The payment on Klarna's page was not completed"},
		{"fallback, order placed, charge not yet moved", sess("order_placed", "COMPLETED"), charge("fallback"), demo.ProgressWorking, "Order placed"},
		{"recovered", sess("order_placed", "COMPLETED"), charge("recovered"), demo.ProgressFinal, "Paid on Klarna's page; the saved payment method is recovered"},
		{"authorized", sess("authorized", "COMPLETED"), nil, demo.ProgressWorking, "Authorized; hppd is placing the order…"},
		{"order placed", sess("order_placed", "COMPLETED"), nil, demo.ProgressFinal, "Order placed"},
		{"back", sess("pending", "BACK"), nil, demo.ProgressShopper, "The payment on Klarna's page was not completed"},
		{"error", sess("pending", "ERROR"), nil, demo.ProgressShopper, "The payment on Klarna's page was not completed"},
		{"waiting", sess("pending", "WAITING"), nil, demo.ProgressWorking, "Waiting for Klarna…"},
		{"cancelled", sess("cancelled", "DISABLED"), nil, demo.ProgressFinal, "The purchase was cancelled"},
		{"expired", sess("expired", ""), nil, demo.ProgressFinal, "The payment session expired"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := demo.Progress(c.s, c.c); got != c.progress {
				t.Errorf("progress %s, want %s", got, c.progress)
			}
			if got := demo.Headline(c.s, c.c); got != c.headline {
				t.Errorf("headline %q, want %q", got, c.headline)
			}
		})
	}
}
