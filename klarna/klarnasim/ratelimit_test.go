package klarnasim

import (
	"net/http"
	"testing"
)

// burst sends n requests back to back (a few milliseconds, so at most two
// calendar-second windows) and counts the answers by status.
func burst(e *env, n int, send func() resp) map[int]int {
	e.t.Helper()
	got := map[int]int{}
	for range n {
		r := send()
		got[r.status]++
		if r.status == http.StatusTooManyRequests {
			if r.header.Get("Retry-After") != "1" || r.header.Get("X-Ratelimit-Remaining") != "0" || r.errBody(e.t).ErrorCode != "TOO_MANY_REQUESTS" {
				e.t.Fatalf("429 without Klarna's headers or body: %v %s", r.header, r.body)
			}
		}
	}
	return got
}

func limited(mod func(*Options)) func(*Options) {
	return func(o *Options) {
		o.Unlimited = false
		if mod != nil {
			mod(o)
		}
	}
}

func TestRateLimitsPlayground(t *testing.T) {
	e := newEnv(t, limited(func(o *Options) { o.Environment = "playground" }))
	got := burst(e, 12, func() resp { return e.do("POST", "/payments/v1/sessions", kpBody()) })
	// 12 requests in at most two windows of 5: at least two are refused.
	if got[http.StatusOK] > 10 || got[http.StatusTooManyRequests] < 2 || got[http.StatusOK]+got[http.StatusTooManyRequests] != 12 {
		t.Fatalf("KP creations: %v", got)
	}
	// A 429 processed nothing.
	e.sim.mu.Lock()
	made := len(e.sim.kp)
	e.sim.mu.Unlock()
	if made != got[http.StatusOK] {
		t.Fatalf("%d KP sessions exist after %d successful creations", made, got[http.StatusOK])
	}
	// HPP session creation is counted apart from KP session creation.
	e2 := newEnv(t, limited(func(o *Options) { o.Environment = "playground"; o.RateLimits = RateLimits{Other: 1000} }))
	kp := e2.createKP(kpBody())
	for range 8 {
		e2.do("POST", "/payments/v1/sessions", kpBody()) // exhaust the KP window
	}
	r := e2.do("POST", "/hpp/v1/sessions", map[string]any{"payment_session_url": "https://api.klarna.com/payments/v1/sessions/" + kp})
	expectStatus(t, r, http.StatusCreated)
	if r.header.Get("X-Ratelimit-Limit") != "5, 5;w=1" {
		t.Fatalf("X-Ratelimit-Limit %q", r.header.Get("X-Ratelimit-Limit"))
	}
}

func TestRateLimitsOtherAndTokenOrders(t *testing.T) {
	e := newEnv(t, limited(func(o *Options) { o.Environment = "playground" }))
	id := e.createKP(kpBody())
	got := burst(e, 110, func() resp { return e.do("GET", "/payments/v1/sessions/"+id, nil) })
	if got[http.StatusOK] > 100 || got[http.StatusTooManyRequests] < 10 {
		t.Fatalf("reads: %v", got)
	}
	e = newEnv(t, limited(func(o *Options) { o.Environment = "playground" }))
	tok := e.sim.CreateToken(BehaviorOK, 0)
	got = burst(e, 12, func() resp { return e.charge(tok, "") })
	if got[http.StatusOK] > 10 || got[http.StatusTooManyRequests] < 2 {
		t.Fatalf("token orders: %v", got)
	}
	if n := len(e.sim.Orders()); n != got[http.StatusOK] {
		t.Fatalf("%d orders after %d successful token orders", n, got[http.StatusOK])
	}
}

func TestRateLimitsProductionDefault(t *testing.T) {
	e := newEnv(t, limited(nil))
	if e.sim.opts.RateLimits != (RateLimits{CreateSession: 40, Other: 200}) {
		t.Fatalf("default limits %+v", e.sim.opts.RateLimits)
	}
	r := e.do("POST", "/payments/v1/sessions", kpBody())
	expectStatus(t, r, http.StatusOK)
	if r.header.Get("X-Ratelimit-Limit") != "40, 40;w=1" {
		t.Fatalf("X-Ratelimit-Limit %q", r.header.Get("X-Ratelimit-Limit"))
	}
	if got := LimitsFor("playground"); got != (RateLimits{CreateSession: 5, Other: 50}) {
		t.Fatalf("playground limits %+v", got)
	}
}
