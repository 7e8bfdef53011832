package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, Max},
		{1 << 20, Max},
		{3 << 20, 530},
		{4 << 20, 400},
		{5 << 20, 320},
		{8<<20 - 1, 200},
		{8 << 20, High},
		{16 << 20, High},
		{16<<20 + 1, 190},
		{20 << 20, 160},
		{31 << 20, 100},
		{32 << 20, Default},
		{1 << 30, Default},
	} {
		if got := Percent(c.live); got != c.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
		// The headroom never exceeds the budget beyond the default's,
		// nor the default's headroom by more than the floor.
		p := Percent(c.live)
		if head := c.live * uint64(p) / 100; c.live > 0 && (head > max(budget, c.live) || head > c.live+floor) {
			t.Errorf("Percent(%d MiB) = %d leaves %d MiB of headroom", c.live>>20, p, head>>20)
		}
	}
}

// gogc reads the GOGC in force from the runtime.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// collectUntil runs collections until GOGC is want (the tuner sets it from
// a finalizer, after the cycle) or gives up after many.
func collectUntil(t *testing.T, want int) {
	t.Helper()
	for range 1000 {
		runtime.GC()
		runtime.Gosched()
		if gogc() == want {
			return
		}
	}
	t.Fatalf("GOGC %d after 1000 collections, want %d", gogc(), want)
}

var live [][]byte

func TestTunerFollowsTheLiveHeap(t *testing.T) {
	before := debug.SetGCPercent(Default)
	defer debug.SetGCPercent(before)
	tu := Start(func(string) string { return "" })
	if tu == nil {
		t.Fatal("no tuner without GOGC")
	}
	// This test's own live heap is under a MiB: with 10 MiB more it is
	// between half the floor and half the budget.
	hold := func(mib int) {
		live = nil
		for range mib {
			live = append(live, make([]byte, 1<<20))
		}
	}
	hold(10)
	collectUntil(t, High)
	hold(48)
	collectUntil(t, Default)
	hold(10)
	collectUntil(t, High)
	live = nil
	collectUntil(t, Max)

	tu.Stop()
	if got := gogc(); got != Default {
		t.Fatalf("GOGC %d after Stop, want the %d in force before Start", got, Default)
	}
	// Were it still tuning, a live heap that grows and shrinks again would
	// take GOGC to Default and back to High (its finalizer runs after each
	// cycle).
	for range 48 {
		live = append(live, make([]byte, 1<<20))
	}
	runtime.GC()
	runtime.Gosched()
	live = nil
	for i := range 50 {
		runtime.GC()
		runtime.Gosched()
		if got := gogc(); got != Default {
			t.Fatalf("GOGC %d after Stop and %d collections: the tuner still runs", got, i+1)
		}
	}
	tu.Stop() // twice is fine
}

func TestOperatorsGOGCWins(t *testing.T) {
	before := debug.SetGCPercent(150)
	defer debug.SetGCPercent(before)
	if tu := Start(func(k string) string { return map[string]string{"GOGC": "150"}[k] }); tu != nil {
		tu.Stop()
		t.Fatal("a tuner despite GOGC")
	}
	runtime.GC()
	if got := gogc(); got != 150 {
		t.Fatalf("GOGC %d, want the operator's 150", got)
	}
	var nilTuner *Tuner
	nilTuner.Stop()
}
