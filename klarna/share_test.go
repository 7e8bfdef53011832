package klarna

import (
	"slices"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// A client's share scales every rate category from its configured rate, and
// a later share replaces the earlier one (it never compounds); a disabled
// limiter stays disabled.
func TestSetShareScalesEveryBucket(t *testing.T) {
	c, _ := testClient(t, "https://example.invalid", func(cfg *Config) {
		cfg.CreateSessionRate, cfg.OtherRate, cfg.TokenOrderRate = 40, 200, -1
	})
	c.SetShare(0.25)
	c.SetShare(0.5)
	for name, want := range map[string]struct {
		b    *bucket
		rate rate.Limit
	}{
		"kp":    {c.kpLim, 40*paceMargin*0.5 - 0.5},
		"hpp":   {c.hppLim, 40*paceMargin*0.5 - 0.5},
		"other": {c.otherLim, 200*paceMargin*0.5 - 0.5},
		"token": {c.tokenLim, rate.Inf},
	} {
		if got := want.b.lim.Limit(); got != want.rate {
			t.Errorf("%s: %v/s, want %v/s", name, got, want.rate)
		}
	}
	c.SetShare(1)
	if got := c.otherLim.lim.Limit(); got != 200*paceMargin {
		t.Errorf("back to the whole: %v/s", got)
	}
	c.SetShare(0) // nonsense: the whole rate, never a stop
	if got := c.otherLim.lim.Limit(); got != 200*paceMargin {
		t.Errorf("share 0: %v/s", got)
	}
}

// Replicas that share a limit, each at its share, never release more
// requests into one second (any window [t, t+1s), whatever their phases)
// than the limit: each one's burst is paid for by its lower pace.
func TestSharesStayWithinTheLimitTogether(t *testing.T) {
	for _, tc := range []struct {
		limit    float64
		replicas int
	}{{10, 3}, {5, 3}, {20, 3}, {40, 3}, {100, 3}, {10, 2}, {50, 5}} {
		var lims []*rate.Limiter
		for range tc.replicas {
			c, _ := testClient(t, "https://example.invalid", func(cfg *Config) { cfg.TokenOrderRate = tc.limit })
			c.SetShare(1 / float64(tc.replicas))
			lims = append(lims, c.tokenLim.lim)
		}
		// Each replica asks every millisecond, from a full bucket, its
		// first request at its own offset; the releases are collected.
		start := time.Now().Add(time.Second)
		var at []time.Duration
		for ms := range 10_000 {
			for i, l := range lims {
				d := time.Duration(ms)*time.Millisecond + time.Duration(i*137)*time.Microsecond
				if l.AllowN(start.Add(d), 1) {
					at = append(at, d)
				}
			}
		}
		slices.Sort(at)
		most, lo := 0, 0
		for hi := range at {
			for at[hi]-at[lo] >= time.Second {
				lo++
			}
			most = max(most, hi-lo+1)
		}
		if float64(most) > tc.limit {
			t.Errorf("%d replicas at a %v/s limit: %d requests in one second", tc.replicas, tc.limit, most)
		}
		if float64(most) < tc.limit/2 {
			t.Errorf("%d replicas at a %v/s limit: only %d requests in the busiest second; the shares waste the budget", tc.replicas, tc.limit, most)
		}
	}
}
