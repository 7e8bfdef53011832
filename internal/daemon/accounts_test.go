package daemon_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/testenv"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/webhook"
)

// shopBKey is shop-b's own HS256 key (storefronts section).
const shopBKey = "shop-b-own-key-0123456789abcdef-0123456789"

// accountsEnv is an env whose Klarna is two simulated accounts, eu (SE, NO,
// FI, DK, DE) and na (US, CA), configured through HPPD_CONFIG_FILE; shop-b
// may use eu only and signs with a key of its own.
type accountsEnv struct {
	*env
	multi *klarnasim.Multi
}

func accountsFile(simURL, dir string) string {
	return `klarna_accounts:
  - name: eu
    base_url: ` + simURL + `
    environment: playground
    username: eu-user
    password_file: ` + filepath.Join(dir, "eu-pass") + `
    countries: [SE, NO, FI, DK, DE]
  - name: na
    base_url: ` + simURL + `
    environment: playground
    username: na-user
    password_file: ` + filepath.Join(dir, "na-pass") + `
    countries: [US, CA]
storefronts:
  - name: shop-b
    klarna_accounts: [eu]
    jwt_hs256_key_file: ` + filepath.Join(dir, "shop-b-jwt") + `
`
}

func newAccountsEnv(t *testing.T) *accountsEnv {
	t.Helper()
	te := testenv.New(t, testenv.Options{
		Accounts: []klarnasim.Account{{Name: "eu", Username: "eu-user", Password: "eu-pass"}, {Name: "na", Username: "na-user", Password: "na-pass"}},
		// The accounts come from the configuration file alone.
		Vars: map[string]string{"HPPD_KLARNA_BASE_URL": "", "HPPD_KLARNA_USERNAME": "", "HPPD_KLARNA_PASSWORD": "", "HPPD_STALE_AFTER": ""},
		BeforeStart: func(te *testenv.Env) {
			for name, body := range map[string]string{"eu-pass": "eu-pass\n", "na-pass": "na-pass\n", "shop-b-jwt": shopBKey + "\n"} {
				if err := os.WriteFile(filepath.Join(te.Dir, name), []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfgPath := filepath.Join(te.Dir, "hppd.yaml")
			if err := os.WriteFile(cfgPath, []byte(accountsFile(te.SimURL, te.Dir)), 0o600); err != nil {
				t.Fatal(err)
			}
			te.Vars["HPPD_CONFIG_FILE"] = cfgPath
		},
	})
	return &accountsEnv{env: wrap(t, te, validating{t: t, next: http.DefaultTransport}), multi: te.Multi}
}

func usPurchase(amount int64) map[string]any {
	b := sessionBody(amount, "")
	b["purchase_country"], b["purchase_currency"], b["locale"] = "US", "USD", "en-US"
	return b
}

// payAt pays a session on the page of whichever account made it and waits
// for its order.
func (a *accountsEnv) payAt(s map[string]any) map[string]any {
	a.t.Helper()
	if _, _, err := a.multi.Act(hppID(s), klarnasim.ActionPay); err != nil {
		a.t.Fatalf("pay: %v", err)
	}
	return a.waitStatus(s["id"].(string), "order_placed")
}

func ordersOf(sim *klarnasim.Sim, kp string) int {
	n := 0
	for _, o := range sim.Orders() {
		if o.KPSessionID == kp {
			n++
		}
	}
	return n
}

func kpID(s map[string]any) string { return s["klarna"].(map[string]any)["kp_session_id"].(string) }

func TestAccountsRouteByPurchaseCountry(t *testing.T) {
	t.Parallel()
	a := newAccountsEnv(t)
	eu, na := a.multi.Account("eu"), a.multi.Account("na")

	st, se := a.do("POST", "/v1/sessions", sessionBody(10000, ""), nil)
	if st != http.StatusCreated || se["klarna_account"] != "eu" {
		t.Fatalf("SE session: %d %v", st, se["_raw"])
	}
	st, us := a.do("POST", "/v1/sessions", usPurchase(12000), nil)
	if st != http.StatusCreated || us["klarna_account"] != "na" {
		t.Fatalf("US session: %d %v", st, us["_raw"])
	}
	gotSE, gotUS := a.payAt(se), a.payAt(us)
	if n := ordersOf(eu, kpID(se)); n != 1 || ordersOf(na, kpID(se)) != 0 {
		t.Fatalf("SE orders at eu %d, at na %d; want 1 and 0", n, ordersOf(na, kpID(se)))
	}
	if n := ordersOf(na, kpID(us)); n != 1 || ordersOf(eu, kpID(us)) != 0 {
		t.Fatalf("US orders at na %d, at eu %d; want 1 and 0", n, ordersOf(eu, kpID(us)))
	}
	for _, o := range a.multi.Orders() {
		if (o.KPSessionID == kpID(se) && (o.Account != "eu" || o.OrderID != gotSE["order_id"])) ||
			(o.KPSessionID == kpID(us) && (o.Account != "na" || o.OrderID != gotUS["order_id"])) {
			t.Fatalf("order %+v does not match sessions %v / %v", o, gotSE["order_id"], gotUS["order_id"])
		}
	}
	// A poller run re-reads what it must, each at its own account; no call
	// for the US session ever went to eu.
	a.clock.Advance(3 * time.Minute)
	if r := a.m.Poller.RunOnce(context.Background()); r.Err != nil {
		t.Fatal(r.Err)
	}
	for _, r := range eu.Requests() {
		if strings.Contains(r.Path, kpID(us)) || strings.Contains(r.Path, hppID(us)) {
			t.Fatalf("eu got a call for the US session: %s %s", r.Method, r.Path)
		}
	}
	if len(na.Requests()) == 0 {
		t.Fatal("na got no calls")
	}

	// The API shows the account.
	if got := a.session(us["id"].(string)); got["klarna_account"] != "na" {
		t.Fatalf("US session read: %v", got["_raw"])
	}

	// /readyz reports each account.
	resp, err := http.Get(a.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	body.Write(buf[:n])
	resp.Body.Close()
	if !strings.Contains(body.String(), `"eu":"up"`) || !strings.Contains(body.String(), `"na":"up"`) {
		t.Fatalf("/readyz: %s", body.String())
	}
}

func TestAccountsTokenChargedAtIssuingAccountOnly(t *testing.T) {
	t.Parallel()
	a := newAccountsEnv(t)
	eu, na := a.multi.Account("eu"), a.multi.Account("na")
	tok := na.CreateToken(klarnasim.BehaviorOK, 0)
	body := chargeBody(tok, false)
	body["purchase_country"], body["purchase_currency"], body["locale"] = "US", "USD", "en-US"
	st, c := a.do("POST", "/v1/charges", body, map[string]string{"Idempotency-Key": "us-charge-1"})
	if st != http.StatusCreated || c["status"] != "charged" || c["klarna_account"] != "na" {
		t.Fatalf("US charge: %d %v", st, c["_raw"])
	}
	for _, r := range eu.Requests() {
		if strings.Contains(r.Path, tok) {
			t.Fatalf("eu got a call for the na token: %s %s", r.Method, r.Path)
		}
	}
	n := 0
	for _, o := range na.Orders() {
		if o.CustomerToken == tok {
			n++
		}
	}
	if n != 1 || len(eu.Orders()) != 0 {
		t.Fatalf("token orders at na %d, orders at eu %d; want 1 and 0", n, len(eu.Orders()))
	}
	// The token view reads Klarna at na.
	st, v := a.do("GET", "/v1/tokens/"+tok, nil, nil)
	if st != http.StatusOK || v["klarna_account"] != "na" || v["klarna"] == nil {
		t.Fatalf("token view: %d %v", st, v["_raw"])
	}
	// A second charge of the token, even with an EU country, goes to the
	// account that issued it.
	body["purchase_country"], body["purchase_currency"], body["locale"] = "SE", "SEK", "sv-SE"
	st, c = a.do("POST", "/v1/charges", body, map[string]string{"Idempotency-Key": "us-charge-2"})
	if st != http.StatusCreated || c["klarna_account"] != "na" {
		t.Fatalf("second charge: %d %v", st, c["_raw"])
	}
	if len(eu.Orders()) != 0 {
		t.Fatalf("eu got orders %+v", eu.Orders())
	}
}

func TestAccountsRefuseWhatNoAccountServes(t *testing.T) {
	t.Parallel()
	a := newAccountsEnv(t)
	b := sessionBody(10000, "")
	b["purchase_country"], b["purchase_currency"], b["locale"] = "GB", "GBP", "en-GB"
	st, out := a.do("POST", "/v1/sessions", b, nil)
	if st/100 != 4 || !strings.Contains(out["_raw"].(string), "purchase_country") {
		t.Fatalf("GB session: %d %v", st, out["_raw"])
	}
	for _, name := range []string{"eu", "na"} {
		if n := len(a.multi.Account(name).Requests()); n != 0 {
			t.Fatalf("account %s got %d calls for a refused purchase", name, n)
		}
	}
}

func TestAccountsStorefrontLimitedToOneAccount(t *testing.T) {
	t.Parallel()
	a := newAccountsEnv(t)
	shopB := func() map[string]string {
		tok, err := webhook.IssueToken([]byte(shopBKey), "shop-b", "hppd", time.Hour, a.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"Authorization": "Bearer " + tok}
	}
	st, out := a.do("POST", "/v1/sessions", usPurchase(12000), shopB())
	if st/100 != 4 || !strings.Contains(out["_raw"].(string), "purchase_country") {
		t.Fatalf("shop-b US session: %d %v", st, out["_raw"])
	}
	if n := len(a.multi.Account("na").Requests()); n != 0 {
		t.Fatalf("na got %d calls from shop-b", n)
	}
	st, out = a.do("POST", "/v1/sessions", sessionBody(10000, ""), shopB())
	if st != http.StatusCreated || out["klarna_account"] != "eu" {
		t.Fatalf("shop-b SE session: %d %v", st, out["_raw"])
	}
	// shop-b has keys of its own: the global key no longer speaks for it.
	tok, err := webhook.IssueToken([]byte(testKey), "shop-b", "hppd", time.Hour, a.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := a.do("GET", "/v1/sessions/"+out["id"].(string), nil, map[string]string{"Authorization": "Bearer " + tok}); st != http.StatusUnauthorized {
		t.Fatalf("global key acting as shop-b: %d, want 401", st)
	}
	// A na token charged by shop-b is refused (it cannot use na) and na sees nothing.
	natok := a.multi.Account("na").CreateToken(klarnasim.BehaviorOK, 0)
	body := chargeBody(natok, false)
	body["purchase_country"], body["purchase_currency"], body["locale"] = "US", "USD", "en-US"
	hdr := shopB()
	hdr["Idempotency-Key"] = "shop-b-us-charge"
	if st, out := a.do("POST", "/v1/charges", body, hdr); st/100 != 4 || !strings.Contains(out["_raw"].(string), "purchase_country") {
		t.Fatalf("shop-b US charge: %d %v", st, out["_raw"])
	}
	if n := len(a.multi.Account("na").Orders()); n != 0 {
		t.Fatalf("na orders %d", n)
	}
}

func TestAccountsConfigErrorsStopStartUp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("eu-pass", "eu-pass\n")
	write("na-pass", "na-pass\n")
	write("shop-b-jwt", shopBKey+"\n")
	good := accountsFile("http://127.0.0.1:9", dir)
	cases := []struct {
		name, body string
		want       []string
	}{
		{"unknown key", strings.Replace(good, "    username: na-user\n", "    username: na-user\n    countrys: [MX]\n", 1), []string{"line 12", "unknown key countrys"}},
		{"two accounts claim one country for one storefront", strings.Replace(good, "countries: [US, CA]", "countries: [US, CA, SE]", 1), []string{"accounts eu and na both claim SE"}},
		{"unreadable secret file", strings.Replace(good, filepath.Join(dir, "na-pass"), filepath.Join(dir, "nope"), 1), []string{"line 12", "klarna_accounts[1].password_file", "cannot read"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{
				"HPPD_CONFIG_FILE": write("hppd.yaml", tc.body), "HPPD_DB": filepath.Join(dir, "x.db"),
				"HPPD_JWT_HS256_KEY": testKey, "HPPD_LISTEN": "127.0.0.1:0",
			}
			cfg, err := config.Load(func(k string) string { return vars[k] })
			if err == nil {
				m := &daemon.Main{Config: cfg}
				if rerr := m.Run(context.Background()); rerr == nil {
					_ = m.Close(context.Background())
				}
				t.Fatal("configuration accepted; want start-up to stop")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
