package klarnasim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/klarna"
)

func TestFaultErrorRate(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
		OpCreateKPSession: {{ErrorRate: 1}},
	}})
	r := e.do("POST", "/payments/v1/sessions", kpBody())
	expectCode(t, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
	if eb := r.errBody(t); eb.CorrelationID == "" || eb.CorrelationID != r.header.Get("Klarna-Correlation-Id") {
		t.Fatalf("correlation %s", r.body)
	}
	if n := len(e.sim.kp); n != 0 {
		t.Fatalf("a failed create made %d sessions", n)
	}
	// Other operations are untouched; a custom status and code.
	e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
		OpAll: {{ErrorRate: 1, Status: 500, Code: "INTERNAL_SERVER_ERROR"}},
	}})
	expectCode(t, e.do("GET", "/hpp/v1/sessions/x", nil), http.StatusInternalServerError, "INTERNAL_SERVER_ERROR")
	e.sim.SetFaults(Faults{})
	e.createKP(kpBody())
	recs := e.sim.Requests()
	if recs[0].Status != 503 || recs[0].ErrorCode != "SERVICE_UNAVAILABLE" || recs[0].Operation != OpCreateKPSession {
		t.Fatalf("record %+v", recs[0])
	}
}

func TestFaultAfterEffect(t *testing.T) {
	e := newEnv(t, nil)
	id := e.createKP(kpBody())
	tok, _ := e.sim.Authorize(id, true)
	path := "/payments/v1/authorizations/" + tok + "/order"
	body, _ := json.Marshal(orderBody())

	e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
		OpPlaceOrder: {{ErrorRate: 1, Status: 503, AfterEffect: true}},
	}})
	expectStatus(t, e.do("POST", path, body), http.StatusServiceUnavailable)
	orders := e.sim.Orders()
	if len(orders) != 1 {
		t.Fatalf("the order must exist although the caller saw a 503: %d orders", len(orders))
	}
	e.sim.SetFaults(Faults{})
	// The byte-for-byte replay repairs it (FACTS 7.2).
	r := e.do("POST", path, body)
	expectStatus(t, r, http.StatusOK)
	var o klarna.Order
	r.json(t, &o)
	if o.OrderID != orders[0].OrderID || len(e.sim.Orders()) != 1 {
		t.Fatalf("replay order %s, want %s", o.OrderID, orders[0].OrderID)
	}

	t.Run("token order replays by key", func(t *testing.T) {
		tok := e.sim.CreateToken(BehaviorOK, 0)
		e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
			OpCreateTokenOrder: {{ErrorRate: 1, Status: 500, AfterEffect: true}},
		}})
		expectStatus(t, e.charge(tok, "ae-1"), http.StatusInternalServerError)
		e.sim.SetFaults(Faults{})
		before := len(e.sim.Orders())
		expectStatus(t, e.charge(tok, "ae-1"), http.StatusOK)
		if len(e.sim.Orders()) != before {
			t.Fatal("the retry with the same key charged again")
		}
	})
	t.Run("before effect is not remembered", func(t *testing.T) {
		tok := e.sim.CreateToken(BehaviorOK, 0)
		e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
			OpCreateTokenOrder: {{ErrorRate: 1, Status: 503}},
		}})
		before := len(e.sim.Orders())
		expectStatus(t, e.charge(tok, "be-1"), http.StatusServiceUnavailable)
		e.sim.SetFaults(Faults{})
		expectStatus(t, e.charge(tok, "be-1"), http.StatusOK)
		if len(e.sim.Orders()) != before+1 {
			t.Fatal("want exactly one charge")
		}
	})
}

func TestFaultBurst429(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
		OpReadKPSession: {{Burst429: &Burst{Every: 3, Length: 1, Reset: 2}}},
	}})
	id := e.createKP(kpBody())
	var got []int
	for range 6 {
		r := e.do("GET", "/payments/v1/sessions/"+id, nil)
		got = append(got, r.status)
		if r.status == http.StatusTooManyRequests {
			if r.header.Get("Retry-After") != "2" || r.header.Get("X-Ratelimit-Reset") != "2" || r.header.Get("X-Ratelimit-Remaining") != "0" {
				t.Fatalf("429 headers %v", r.header)
			}
			if r.errBody(t).ErrorCode != "TOO_MANY_REQUESTS" {
				t.Fatalf("body %s", r.body)
			}
		}
	}
	want := []int{429, 200, 200, 429, 200, 200}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statuses %v, want %v", got, want)
		}
	}
}

// A rule with times applies to the first requests that reach it only,
// counted again from every SetFaults.
func TestFaultTimes(t *testing.T) {
	e := newEnv(t, nil)
	id := e.createKP(kpBody())
	read := func() int { return e.do("GET", "/payments/v1/sessions/"+id, nil).status }
	statuses := func(n int) []int {
		var got []int
		for range n {
			got = append(got, read())
		}
		return got
	}
	e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
		OpAll:           {{ErrorRate: 1, Status: 500, Times: 1}},
		OpReadKPSession: {{ErrorRate: 1, Status: 502, Times: 2}},
	}})
	// The "*" rule takes the first request, the read's own rule the first
	// two reads; the first error rolled answers.
	if got, want := statuses(4), []int{500, 502, 200, 200}; !slices.Equal(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{OpReadKPSession: {{ErrorRate: 1, Status: 502, Times: 1}}}})
	if got, want := statuses(3), []int{502, 200, 200}; !slices.Equal(got, want) {
		t.Fatalf("after setting the faults again: statuses %v, want %v", got, want)
	}
}

func TestFaultTimeoutAndLatency(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("timeout before effect", func(t *testing.T) {
		e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
			OpCreateKPSession: {{TimeoutRate: 1, Timeout: Duration(10 * time.Millisecond)}},
		}})
		defer e.sim.SetFaults(Faults{})
		expectCode(t, e.do("POST", "/payments/v1/sessions", kpBody()), http.StatusGatewayTimeout, "TIMEOUT")
		if n := len(e.sim.kp); n != 0 {
			t.Fatalf("%d sessions", n)
		}
	})
	t.Run("client gives up", func(t *testing.T) {
		tok := e.sim.CreateToken(BehaviorOK, 0)
		e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
			OpCreateTokenOrder: {{TimeoutRate: 1, Timeout: Duration(time.Hour), AfterEffect: true}},
		}})
		defer e.sim.SetFaults(Faults{})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		b, _ := json.Marshal(tokenOrderBody())
		req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/customer-token/v1/tokens/"+tok+"/order", strings.NewReader(string(b)))
		req.SetBasicAuth("sim", "sim")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Klarna-Idempotency-Key", "hang-1")
		_, err := http.DefaultClient.Do(req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want a client timeout, got %v", err)
		}
		// The order took effect although nobody saw the answer; the key replays it.
		before := len(e.sim.Orders())
		e.sim.SetFaults(Faults{})
		expectStatus(t, e.charge(tok, "hang-1"), http.StatusOK)
		if len(e.sim.Orders()) != before || before == 0 {
			t.Fatalf("orders %d before, %d after", before, len(e.sim.Orders()))
		}
	})
	t.Run("latency", func(t *testing.T) {
		e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{OpAll: {{Latency: Duration(5 * time.Millisecond)}}}})
		defer e.sim.SetFaults(Faults{})
		e.createKP(kpBody())
	})
}

func TestFaultsJSON(t *testing.T) {
	in := `{"place_order":[{"error_rate":0.2,"status":503,"code":"SERVICE_UNAVAILABLE","after_effect":true,"latency":"50ms",` +
		`"timeout_rate":0.1,"timeout":"5s","burst_429":{"every":20,"length":5,"reset":1}}],` +
		`"callbacks":{"drop_rate":0.3,"duplicate_rate":0.2,"max_duplicates":4,"delay":"2s","delay_rate":0.3,"reorder_rate":0.2}}`
	var f Faults
	if err := json.Unmarshal([]byte(in), &f); err != nil {
		t.Fatal(err)
	}
	r := f.Operations[OpPlaceOrder][0]
	if r.ErrorRate != 0.2 || !r.AfterEffect || time.Duration(r.Latency) != 50*time.Millisecond || time.Duration(r.Timeout) != 5*time.Second ||
		r.Burst429.Every != 20 || f.Callbacks.MaxDuplicates != 4 || time.Duration(f.Callbacks.Delay) != 2*time.Second {
		t.Fatalf("decoded %+v %+v", r, f.Callbacks)
	}
	out, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var again Faults
	if err := json.Unmarshal(out, &again); err != nil {
		t.Fatalf("round trip %s: %v", out, err)
	}
	for _, bad := range []string{
		`{"place_orders":[]}`,
		`{"place_order":[{"error_rate":2}]}`,
		`{"place_order":[{"status":200,"error_rate":1}]}`,
		`{"place_order":[{"latency":50}]}`,
		`{"place_order":[{"burst_429":{"every":0,"length":1}}]}`,
		`{"place_order":[{"error_rate":1,"times":-1}]}`,
		`{"place_order":[{"eror_rate":1}]}`,
		`{"callbacks":{"drop":1}}`,
	} {
		var f Faults
		if err := json.Unmarshal([]byte(bad), &f); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestFaultDiceFollowTheSeed(t *testing.T) {
	pattern := func(seed int64) []int {
		e := newEnv(t, func(o *Options) { o.Seed = seed })
		e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{OpReadKPSession: {{ErrorRate: 0.5}}}})
		var out []int
		for range 40 {
			out = append(out, e.do("GET", "/payments/v1/sessions/x", nil).status)
		}
		return out
	}
	a, b := pattern(7), pattern(7)
	var failed, passed int
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different dice: %v vs %v", a, b)
		}
		switch a[i] {
		case http.StatusServiceUnavailable:
			failed++
		case http.StatusNotFound:
			passed++
		}
	}
	if failed == 0 || passed == 0 || failed+passed != len(a) {
		t.Fatalf("error_rate 0.5 gave %d errors and %d answers", failed, passed)
	}
}

func TestFaultBurstWithStatusAndEffect(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
		OpCreateKPSession: {{Burst429: &Burst{Every: 1000, Length: 1, Status: 500, AfterEffect: true}}},
	}})
	expectCode(t, e.do("POST", "/payments/v1/sessions", kpBody()), http.StatusInternalServerError, "INTERNAL_SERVER_ERROR")
	e.sim.mu.Lock()
	made := len(e.sim.kp)
	e.sim.mu.Unlock()
	if made != 1 {
		t.Fatalf("%d KP sessions after a 500 with effect, want 1", made)
	}
	e.createKP(kpBody()) // only the first request of the cycle fails
	e.sim.SetFaults(Faults{Operations: map[string][]FaultRule{
		OpCreateKPSession: {{Burst429: &Burst{Every: 1000, Length: 1, Status: 503}}},
	}})
	expectCode(t, e.do("POST", "/payments/v1/sessions", kpBody()), http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
	e.sim.mu.Lock()
	made = len(e.sim.kp)
	e.sim.mu.Unlock()
	if made != 2 {
		t.Fatalf("%d KP sessions after a 503 before the effect, want 2", made)
	}
}
