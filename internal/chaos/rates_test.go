package chaos

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// at returns n times spaced by step from start.
func at(start time.Time, step time.Duration, n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = start.Add(time.Duration(i) * step)
	}
	return out
}

func TestBusiestSecond(t *testing.T) {
	sec := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	tests := []struct {
		name              string
		ts                []time.Time
		calendar, sliding int
	}{
		{"none", nil, 0, 0},
		{"one", []time.Time{sec}, 1, 1},
		// 20 calls 50 ms apart from half a second in: 10 in each calendar
		// second, all 20 within one second.
		{"straddling two seconds", at(sec.Add(500*time.Millisecond), 50*time.Millisecond, 20), 10, 20},
		// Exactly 1 s apart are two windows: [t, t+1s) is half-open.
		{"a second apart", []time.Time{sec.Add(100 * time.Millisecond), sec.Add(1100 * time.Millisecond)}, 1, 1},
		{"steady 10/s", at(sec, 100*time.Millisecond, 50), 10, 10},
		{"unsorted burst", append(at(sec, 200*time.Millisecond, 10), sec.Add(1050*time.Millisecond), sec.Add(1060*time.Millisecond), sec.Add(1070*time.Millisecond)), 8, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := slices.Clone(tc.ts)
			slices.Reverse(ts)
			b := busiestSecond(ts)
			if b.Calendar != tc.calendar || b.Sliding != tc.sliding {
				t.Fatalf("busiest calendar %d, sliding %d; want %d, %d", b.Calendar, b.Sliding, tc.calendar, tc.sliding)
			}
		})
	}
}

// The check fails on a category over its limit, by calendar second or only
// by sliding second, and passes at the limit.
func TestCheckRates(t *testing.T) {
	sec := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	limits := []rateLimit{{rateCreateKP, 10}, {rateOther, 20}}
	tests := []struct {
		name       string
		byCategory map[string][]time.Time
		violations int
	}{
		{"at the limits", map[string][]time.Time{rateCreateKP: at(sec, 100*time.Millisecond, 30), rateOther: at(sec, 50*time.Millisecond, 60)}, 0},
		{"over in a calendar second", map[string][]time.Time{rateCreateKP: at(sec, 90*time.Millisecond, 12)}, 2},
		{"over only across a second's edge", map[string][]time.Time{rateOther: at(sec.Add(600*time.Millisecond), 30*time.Millisecond, 22)}, 1},
		{"a category without a limit is not judged", map[string][]time.Time{rateTokenOrder: at(sec, time.Millisecond, 100)}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := checkRates(tc.byCategory, limits)
			if c.Violations != tc.violations {
				t.Fatalf("%d violations (%q), want %d", c.Violations, c.Details, tc.violations)
			}
		})
	}
}

func TestRateCategories(t *testing.T) {
	tests := []struct {
		method, path string
		want         []string
	}{
		{http.MethodPost, "/payments/v1/sessions", []string{rateCreateKP}},
		{http.MethodGet, "/payments/v1/sessions/kp_1", []string{rateOther}},
		{http.MethodPost, "/hpp/v1/sessions", []string{rateCreateHPP}},
		{http.MethodPost, "/hpp/v1/sessions/h_1/disable", []string{rateOther}},
		{http.MethodPost, "/customer-token/v1/tokens/tok_1/order", []string{rateTokenOrder, rateOther}},
		{http.MethodPost, "/payments/v1/authorizations/auth_1/order", []string{rateOther}},
	}
	for _, tc := range tests {
		if got := rateCategories(tc.method, tc.path); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}
