package daemon

import (
	"testing"
	"time"

	"github.com/hppd/hppd/metrics"
	"github.com/hppd/hppd/poller"
)

// With metrics, the hooks feed them and still call the hooks set before.
func TestHooksFeedMetricsAndKeepEarlierHooks(t *testing.T) {
	t.Parallel()
	var klarnaCalls, accountCalls, httpCalls, pollCalls int
	x := metrics.New("test")
	m := &Main{Metrics: x, Hooks: Hooks{
		Klarna:        func(string, int, time.Duration, error) { klarnaCalls++ },
		KlarnaAccount: func(string, string, int, time.Duration, error) { accountCalls++ },
		HTTP:          func(string, int, time.Duration) { httpCalls++ },
		Poll:          func(poller.Result) { pollCalls++ },
	}}
	h := m.hooks()
	h.Klarna("place_order", 200, time.Millisecond, nil)
	h.KlarnaAccount("default", "place_order", 200, time.Millisecond, nil)
	h.HTTP("/healthz", 200, time.Millisecond)
	h.Poll(poller.Result{})
	if klarnaCalls != 1 || accountCalls != 1 || httpCalls != 1 || pollCalls != 1 {
		t.Fatalf("earlier hooks called %d/%d/%d/%d times, want 1/1/1/1", klarnaCalls, accountCalls, httpCalls, pollCalls)
	}
	fams, err := x.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			got[f.GetName()] += mt.GetCounter().GetValue()
		}
	}
	for name, want := range map[string]float64{"hppd_klarna_requests_total": 1, "hppd_http_requests_total": 1, "hppd_poll_runs_total": 1} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}

// Without metrics the hooks are the ones set, unchanged.
func TestHooksWithoutMetrics(t *testing.T) {
	t.Parallel()
	n := 0
	m := &Main{Hooks: Hooks{HTTP: func(string, int, time.Duration) { n++ }}}
	h := m.hooks()
	h.HTTP("/healthz", 200, 0)
	if n != 1 || h.Poll != nil || h.KlarnaAccount != nil {
		t.Fatalf("hooks changed without metrics: calls %d, poll %v", n, h.Poll != nil)
	}
}

// Phase 2 of a shutdown keeps a tenth of the budget, at most a second.
func TestGraceDeadline(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct{ budget, grace time.Duration }{
		{20 * time.Second, 19 * time.Second},
		{5 * time.Second, 4500 * time.Millisecond},
		{time.Second, 900 * time.Millisecond},
		{0, 0},
	} {
		if got := graceDeadline(now, now.Add(c.budget)).Sub(now); got != c.grace {
			t.Errorf("budget %v: grace %v, want %v", c.budget, got, c.grace)
		}
	}
}
