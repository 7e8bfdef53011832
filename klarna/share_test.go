package klarna

import (
	"testing"

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
		"kp":    {c.kpLim, 40 * paceMargin * 0.5},
		"hpp":   {c.hppLim, 40 * paceMargin * 0.5},
		"other": {c.otherLim, 200 * paceMargin * 0.5},
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
