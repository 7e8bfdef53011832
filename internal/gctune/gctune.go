// Package gctune paces Go's garbage collector by the live heap: it collects
// half as often as Go's default while the live heap is small, and as often as
// the default once it is not.
//
// Why: on a callback-heavy load the collector takes about a tenth of hppd's
// CPU while the live heap stays around ten MiB; the cores are what hppd runs
// short of, and every cycle also slows the request goroutines it assists
// with. GOGC=200 collects half as often, at the price of a heap goal three
// times the live heap instead of two. A fixed GOGC=200 would also triple the
// goal of a large live heap (2,000 slow connections put a few tens of MiB
// live): that price is paid only where it is small.
//
// The rule, after every collection, with live the heap it left live:
//
//	headroom = 2 × live     while 2 × live ≤ 32 MiB   (GOGC 200)
//	headroom ≤ 32 MiB       while live < 32 MiB       (GOGC 200 → 100, in steps of 10)
//	headroom = live         beyond                    (GOGC 100, the default)
//
// so the heap goal is never more than 16 MiB above the default's (at a live
// heap of 16 MiB), and is the default's from 32 MiB of live heap on.
//
// An operator's GOGC wins: with GOGC set in the environment, Start does
// nothing. A memory limit (GOMEMLIMIT, or the cgroup's, which hppd sets) still
// caps the goal: Go's collector takes whichever of the two goals is lower.
//
// The tuner learns of each collection through a finalizer on an otherwise
// unreachable object, set again each time it runs: the finalizer runs once
// per completed cycle, on the runtime's finalizer goroutine.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

const (
	// budget is the headroom above the live heap up to which the tuner
	// keeps GOGC at High.
	budget = 32 << 20
	// High and Default are the GOGC values the tuner moves between.
	High    = 200
	Default = 100
)

// Percent is the GOGC for a heap that a collection left with live bytes
// live: High up to half the budget, then the percentage that leaves at most
// the budget as headroom (in steps of 10, so a live heap that moves a little
// does not reset GOGC every cycle), and Default from the budget on.
func Percent(live uint64) int {
	switch {
	case 2*live <= budget:
		return High
	case live >= budget:
		return Default
	default:
		return int(budget*100/live) / 10 * 10
	}
}

// Tuner sets GOGC after each collection (Percent).
type Tuner struct {
	mu      sync.Mutex
	stopped bool
	percent int // the GOGC the tuner set last
	prev    int // the GOGC before Start, restored by Stop
	sample  []metrics.Sample
}

// Start starts tuning unless getenv("GOGC") is set (then it returns nil, and
// Go's own GOGC stays in force). Stop the returned Tuner to hand GOGC back.
func Start(getenv func(string) string) *Tuner {
	if getenv("GOGC") != "" {
		return nil
	}
	t := &Tuner{percent: Default, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.prev = debug.SetGCPercent(Default)
	t.arm()
	return t
}

// Stop ends the tuning and restores the GOGC in force before Start. It is
// safe on a nil Tuner and more than once.
func (t *Tuner) Stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		debug.SetGCPercent(t.prev)
	}
}

// sentinel is the object whose finalizer tells of a collection. It holds a
// pointer so that it is never batched into a tiny allocation with other
// objects (whose finalizers may then never run).
type sentinel struct{ t *Tuner }

func (t *Tuner) arm() {
	runtime.SetFinalizer(&sentinel{t: t}, func(s *sentinel) { s.t.collected() })
}

// collected runs once per completed collection.
func (t *Tuner) collected() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		if p := Percent(t.sample[0].Value.Uint64()); p != t.percent {
			debug.SetGCPercent(p)
			t.percent = p
		}
	}
	t.arm()
}
