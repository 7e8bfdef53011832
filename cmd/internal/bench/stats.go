package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Spread summarises repeated measurements of one figure: how many runs, their
// median and their range. Every figure in BENCHMARKS.md is reported this way.
type Spread struct {
	N                int
	Median, Min, Max float64
}

// SpreadOf summarises xs (NaNs are dropped). The median of an even count is
// the mean of the two middle values.
func SpreadOf(xs []float64) Spread {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Spread{N: n, Median: med, Min: v[0], Max: v[n-1]}
}

// Format renders the spread as "median (min–max, n runs)" with the given
// number format, e.g. "%.1f".
func (s Spread) Format(num string) string {
	if s.N == 0 {
		return "n/a"
	}
	if s.N == 1 {
		return fmt.Sprintf(num+" (1 run)", s.Median)
	}
	return fmt.Sprintf(num+" ("+num+"–"+num+", %d runs)", s.Median, s.Min, s.Max, s.N)
}

// Latencies are response times, sorted ascending.
type Latencies []time.Duration

// NewLatencies sorts ds (in place) and returns them as Latencies.
func NewLatencies(ds []time.Duration) Latencies {
	slices.Sort(ds)
	return Latencies(ds)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) by the nearest-rank method:
// the smallest latency at or below which at least q of all latencies lie.
func (l Latencies) Quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(l))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(l) {
		rank = len(l)
	}
	return l[rank-1]
}

// Max is the largest latency.
func (l Latencies) Max() time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[len(l)-1]
}

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mib converts bytes to MiB.
func mib(b int64) float64 { return float64(b) / (1 << 20) }
