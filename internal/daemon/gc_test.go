package daemon

import (
	"runtime/debug"
	"testing"
)

func TestApplyGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)

	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if got, set := ApplyGCPercent(getenv); got != GCPercent || !set {
		t.Fatalf("GOGC unset: %d, set %v; want %d set here", got, set, GCPercent)
	}
	if now := debug.SetGCPercent(100); now != GCPercent {
		t.Fatalf("the collector's target is %d, want %d", now, GCPercent)
	}

	// An operator's GOGC wins: the runtime read it at start, hppd leaves
	// the target alone.
	env["GOGC"] = "50"
	debug.SetGCPercent(50)
	if got, set := ApplyGCPercent(getenv); got != 50 || set {
		t.Fatalf("GOGC=50: %d, set %v; want 50 left alone", got, set)
	}
	if now := debug.SetGCPercent(100); now != 50 {
		t.Fatalf("the collector's target is %d after GOGC=50, want 50", now)
	}
}
