// Package gctune paces Go's garbage collector by the live heap: it lets at
// least 16 MiB be allocated between collections while the live heap is
// small, collects half as often as Go's default while it is moderate, and as
// often as the default once it is not.
//
// Why: on a callback-heavy load hppd allocates about 250 MiB a second while
// its live heap stays around five MiB; the cores are what hppd runs short
// of, and every cycle also slows the request goroutines it assists with.
// With a live heap that small, much of a cycle's cost does not depend on the
// heap (stopping the world, scanning goroutine stacks, the pacer), so Go's
// default (a heap goal twice the live heap) or even GOGC=200 collects
// dozens of times a second for little reclaimed memory. A fixed high GOGC
// would also multiply the goal of a large live heap (2,000 slow connections
// put a few tens of MiB live): the headroom is given only where it is small.
//
// The rule, after every collection, with live the heap it left live:
//
//	headroom = 16 MiB       while live ≤ 8 MiB        (GOGC 1000 → 200)
//	headroom = 2 × live     while 2 × live ≤ 32 MiB   (GOGC 200)
//	headroom ≤ 32 MiB       while live < 32 MiB       (GOGC 200 → 100)
//	headroom = live         beyond                    (GOGC 100, the default)
//
// with GOGC in steps of 10 (rounded down, so that a live heap that moves a
// little does not reset GOGC every cycle) and at most 1000 (a nearly empty
// heap: at start-up, or idle). The heap goal is therefore never more than
// 16 MiB above the default's, and is the default's from 32 MiB of live heap
// on. An idle daemon allocates little, so the headroom is a bound its heap
// may reach, not memory it takes.
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
	// floor is the least headroom the tuner leaves a small live heap.
	floor = 16 << 20
	// High and Default are the GOGC values the tuner moves between once
	// the live heap is past half the floor; Max bounds GOGC below that.
	High    = 200
	Default = 100
	Max     = 1000
)

// Percent is the GOGC for a heap that a collection left with live bytes
// live (see the package doc): the floor as headroom up to half of it (at
// most Max), High up to half the budget, then the percentage that leaves at
// most the budget as headroom, and Default from the budget on.
func Percent(live uint64) int {
	switch {
	case live >= budget:
		return Default
	case 2*live > budget:
		return int(budget*100/live) / 10 * 10
	case 2*live >= floor:
		return High
	case live == 0:
		return Max
	default:
		return min(int(floor*100/live)/10*10, Max)
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
