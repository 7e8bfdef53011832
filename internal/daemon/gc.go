package daemon

import (
	"runtime/debug"
	"runtime/metrics"
)

// GCPercent is the garbage collector's target that hppd serve sets when
// GOGC is unset: the heap may grow to three times what is live (Go's
// default, 100, is twice) before a collection.
//
// Under callback load a callback allocates about 40 KiB (bbolt's nodes, the
// session decoded and encoded again, HTTP), and with the default target the
// collector took about a tenth of hppd's CPU on two cores. Benchmark 1 at
// 200, interleaved with runs at the default: 5 to 13% more durable
// callbacks/s on disk, and 20 to 60% more with the data file in memory,
// where the cores are all that bounds the rate; the peak anonymous memory
// rose from about 31 to 42 MiB. The idle heap is a few MiB either way, so
// idle memory does not move. GOMEMLIMIT (set from the cgroup when unset,
// see cmd/hppd) still makes the collector work harder near the limit.
const GCPercent = 200

// ApplyGCPercent sets the collector's target to GCPercent unless the
// operator set GOGC, and returns the target in force and whether it was
// set here.
func ApplyGCPercent(getenv func(string) string) (int, bool) {
	if getenv("GOGC") != "" {
		m := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(m)
		return int(m[0].Value.Uint64()), false
	}
	debug.SetGCPercent(GCPercent)
	return GCPercent, true
}
