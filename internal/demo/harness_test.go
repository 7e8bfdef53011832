package demo_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/demo"
	"github.com/hppd/hppd/internal/testenv"
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
	te := testenv.New(t, testenv.Options{
		Seed: 11, SimUser: "demo", SimPass: "demo-pass", Now: time.Now,
		Vars: map[string]string{
			"HPPD_JWT_HS256_KEY": jwtKey,
			"HPPD_POLL_SCHEDULE": "@every 5s",
			"HPPD_STALE_AFTER":   "10s",
		},
	})
	e.sim, e.simURL, e.hppd = te.Sim, te.SimURL, te.Main

	e.opts = demo.Options{
		HPPDURL: "http://" + e.hppd.Addr(), SimURL: te.SimURL, SimUser: "demo", SimPass: "demo-pass",
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
