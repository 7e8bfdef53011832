package demo_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/demo"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/webhook"
)

const jwtKey = "0123456789abcdef0123456789abcdef-demo-test-key"

// env is the simulator, a real hppd on port 0 and the demo storefront, all
// in-process.
type env struct {
	t      *testing.T
	sim    *klarnasim.Sim
	simURL string
	hppd   *daemon.Main
	opts   demo.Options
	shop   *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t}
	e.sim = klarnasim.New(klarnasim.Options{
		Seed: 11, Username: "demo", Password: "demo-pass",
		CallbackTimeout: time.Second, CallbackRetryDelay: 50 * time.Millisecond,
	})
	simSrv := httptest.NewServer(e.sim.Handler())
	e.sim.SetPublicURL(simSrv.URL)
	e.simURL = simSrv.URL
	t.Cleanup(func() { e.sim.Close(); simSrv.Close() })

	vars := map[string]string{
		"HPPD_LISTEN":          "127.0.0.1:0",
		"HPPD_DB":              filepath.Join(t.TempDir(), "hppd.db"),
		"HPPD_KLARNA_BASE_URL": simSrv.URL,
		"HPPD_KLARNA_USERNAME": "demo",
		"HPPD_KLARNA_PASSWORD": "demo-pass",
		"HPPD_JWT_HS256_KEY":   jwtKey,
		"HPPD_POLL_SCHEDULE":   "@every 5s",
		"HPPD_STALE_AFTER":     "10s",
		"HPPD_KLARNA_TIMEOUT":  "5s",
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	e.hppd = &daemon.Main{Config: cfg}
	if err := e.hppd.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.hppd.Close(context.Background()) })

	e.opts = demo.Options{
		HPPDURL: "http://" + e.hppd.Addr(), SimURL: simSrv.URL, SimUser: "demo", SimPass: "demo-pass",
		Token: func() string {
			tok, err := webhook.IssueToken([]byte(jwtKey), "demo-shop", "hppd", 10*time.Minute, time.Now())
			if err != nil {
				t.Error(err)
			}
			return tok
		},
		HTTPClient: &http.Client{Timeout: 20 * time.Second},
	}
	// The storefront learns its URL from each request's Host here, so the
	// server can start before the handler knows its address.
	shop, err := demo.New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.shop = httptest.NewServer(shop)
	t.Cleanup(e.shop.Close)
	e.opts.PublicURL = e.shop.URL
	return e
}

// ordersOf counts the simulator's orders of one KP session.
func (e *env) ordersOf(kpSessionID string) int {
	n := 0
	for _, o := range e.sim.Orders() {
		if o.KPSessionID == kpSessionID {
			n++
		}
	}
	return n
}
