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

// The window lets at most max sends into any second: sends that a stalled
// process releases at once are held until the second before them has room.
func TestWindowHoldsABunchBack(t *testing.T) {
	var w window
	w.setMax(3)
	t0 := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	for i := range 3 {
		if d := w.take(t0.Add(time.Duration(i) * time.Millisecond)); d != 0 {
			t.Fatalf("send %d held %s, want it sent", i+1, d)
		}
	}
	if d := w.take(t0.Add(10 * time.Millisecond)); d != 990*time.Millisecond {
		t.Fatalf("fourth send in the second held %s, want 990ms (until the first is a second old)", d)
	}
	if d := w.take(t0.Add(time.Second)); d != 0 {
		t.Fatalf("send a second after the first held %s", d)
	}
	if d := w.take(t0.Add(time.Second + 500*time.Microsecond)); d != 500*time.Microsecond {
		t.Fatalf("next send held %s, want 500µs", d)
	}
	// A lower share shrinks the window at once.
	w.setMax(1)
	if d := w.take(t0.Add(1500 * time.Millisecond)); d != 500*time.Millisecond {
		t.Fatalf("after setMax(1): held %s, want 500ms", d)
	}
	w.setMax(0) // unlimited
	if d := w.take(t0.Add(1500 * time.Millisecond)); d != 0 {
		t.Fatalf("unlimited window held %s", d)
	}
}

// Each bucket's window is its pace plus its burst, and follows the share.
func TestWindowFollowsTheShare(t *testing.T) {
	c, _ := testClient(t, "https://example.invalid", func(cfg *Config) {
		cfg.CreateSessionRate, cfg.OtherRate, cfg.TokenOrderRate = 20, 60, -1
	})
	if got := c.otherLim.win.max; got != 58 { // 57/s paced, and the burst
		t.Errorf("other alone: %d a second, want 58", got)
	}
	c.SetShare(1.0 / 3)
	if got := c.otherLim.win.max; got != 19 { // 18.33/s, and the burst
		t.Errorf("other at a third: %d a second, want 19", got)
	}
	if got := c.kpLim.win.max; got != 6 { // 5.67/s, and the burst
		t.Errorf("kp at a third: %d a second, want 6", got)
	}
	if got := c.tokenLim.win.max; got != 0 {
		t.Errorf("unlimited token orders: window %d, want none", got)
	}
}
