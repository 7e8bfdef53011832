package bench

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/klarna/klarnasim"
)

func TestSpreadOf(t *testing.T) {
	cases := []struct {
		name string
		xs   []float64
		want Spread
	}{
		{"odd", []float64{3, 1, 2}, Spread{N: 3, Median: 2, Min: 1, Max: 3}},
		{"even", []float64{4, 1, 3, 2}, Spread{N: 4, Median: 2.5, Min: 1, Max: 4}},
		{"one", []float64{7}, Spread{N: 1, Median: 7, Min: 7, Max: 7}},
		{"NaN dropped", []float64{math.NaN(), 5, 1}, Spread{N: 2, Median: 3, Min: 1, Max: 5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := SpreadOf(c.xs); got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
	if s := SpreadOf(nil); s.N != 0 || !math.IsNaN(s.Median) || s.Format("%.1f") != "n/a" {
		t.Fatalf("empty: %+v %q", s, s.Format("%.1f"))
	}
	if got := SpreadOf([]float64{1, 2, 3}).Format("%.1f"); got != "2.0 (1.0–3.0, 3 runs)" {
		t.Fatalf("format %q", got)
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	l := NewLatencies(ds)
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond, 0: time.Millisecond} {
		if got := l.Quantile(q); got != want {
			t.Errorf("q%.2f = %v, want %v", q, got, want)
		}
	}
	if l.Max() != 100*time.Millisecond || Latencies(nil).Quantile(0.5) != 0 {
		t.Fatal("max or empty quantile wrong")
	}
}

func TestWindows(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var reqs []klarnasim.RequestRecord
	// 50/s for three seconds, then two bunched requests.
	for i := 0; i < 150; i++ {
		reqs = append(reqs, klarnasim.RequestRecord{Time: base.Add(time.Duration(i) * 20 * time.Millisecond)})
	}
	if got := maxPerWindow(reqs, time.Second); got != 50 {
		t.Fatalf("paced: %d in a sliding second, want 50", got)
	}
	if got := maxPerSecond(reqs); got != 50 {
		t.Fatalf("paced: %d in a calendar second, want 50", got)
	}
	reqs = append(reqs, klarnasim.RequestRecord{Time: base.Add(2990 * time.Millisecond)}, klarnasim.RequestRecord{Time: base.Add(2995 * time.Millisecond)})
	if got := maxPerWindow(reqs, time.Second); got != 52 {
		t.Fatalf("bunched: %d, want 52", got)
	}
}

const pprofTopSample = `File: hppd-bench
Type: cpu
Duration: 4.97s, Total samples = 3070ms (61.72%)
Showing nodes accounting for 1560ms, 50.81% of 3070ms total
      flat  flat%   sum%        cum   cum%
     950ms 30.94% 30.94%      950ms 30.94%  internal/runtime/syscall/linux.Syscall6
     160ms  5.21% 36.16%      160ms  5.21%  runtime.memmove
     100ms  3.26% 39.41%      100ms  3.26%  runtime.mallocgc
      70ms  2.28% 44.95%       70ms  2.28%  go.etcd.io/bbolt/internal/common.(*Page).FastCheck
      60ms  1.95% 46.91%       60ms  1.95%  encoding/json.checkValid
      60ms  1.95% 48.86%       70ms  2.28%  github.com/hppd/hppd/store.encodeValue
      10ms  0.33% 49.19%       10ms  0.33%  main.something
`

func TestParseTop(t *testing.T) {
	areas, top := parseTop(pprofTopSample, 3)
	if len(top) != 3 || !strings.Contains(top[0], "Syscall6") || !strings.HasPrefix(top[0], "     950ms") {
		t.Fatalf("top %q", top)
	}
	want := map[string]float64{
		"system calls (socket I/O, file writes, fdatasync)": 30.94,
		"Go runtime: scheduler, memmove, maps, other":       5.21,
		"Go runtime: allocation":                            3.26,
		"bbolt (B+tree, pages, commit)":                     2.28,
		"JSON (encoding/json)":                              1.95,
		"hppd store (keys, indexes, codec glue)":            1.95,
		"standard library, other":                           0.33,
	}
	if len(areas) != len(want) {
		t.Fatalf("areas %+v", areas)
	}
	for _, a := range areas {
		if math.Abs(want[a.Name]-a.Percent) > 1e-9 {
			t.Errorf("%s: %.2f, want %.2f", a.Name, a.Percent, want[a.Name])
		}
	}
	if areas[0].Percent < areas[len(areas)-1].Percent {
		t.Fatal("areas not sorted by share")
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -45000: "-45,000"} {
		if got := thousands64(n); got != want {
			t.Errorf("%d: %q, want %q", n, got, want)
		}
	}
}
