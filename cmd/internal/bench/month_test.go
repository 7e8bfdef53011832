package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/hppd/hppd/klarna/klarnasim"
)

// Benchmark 5's machinery on one simulated day: every paid session gets its
// order, every abandoned session's life is followed to its end, and the
// counts come from the simulator.
func TestMonthMachinery(t *testing.T) {
	if testing.Short() {
		t.Skip("follows a session over 49 simulated hours")
	}
	res, err := RunMonth(context.Background(), MonthConfig{Dir: t.TempDir(), PerDay: 20, Days: 1, LifeSessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.LifeReads < 1 || res.LifeOps[klarnasim.OpCreateHPPSession] != 1 || res.LifeOps[klarnasim.OpDisableHPPSession] != 1 {
		t.Fatalf("life of an abandoned session: %v", res.LifeOps)
	}
	if res.Abandoned != 14 || res.Paid != 5 || res.Cancelled != 1 {
		t.Fatalf("mix %d/%d/%d, want 14/5/1", res.Abandoned, res.Paid, res.Cancelled)
	}
	if len(res.Placement) != res.Paid || res.Ops[klarnasim.OpPlaceOrder] != res.Paid {
		t.Fatalf("%d placements, %d place_order requests, want %d", len(res.Placement), res.Ops[klarnasim.OpPlaceOrder], res.Paid)
	}
	if len(res.Weeks) != 1 || res.Weeks[0].Sessions != 20 || res.Weeks[0].Idempotency != 20 || res.Weeks[0].FileBytes == 0 {
		t.Fatalf("end of the day: %+v", res.Weeks)
	}
	if res.MeanPerSec <= 0 || res.PeakHourPerSec < res.MeanPerSec {
		t.Fatalf("rates: mean %.2f, peak hour %.2f", res.MeanPerSec, res.PeakHourPerSec)
	}
	var b bytes.Buffer
	writeMonth(&b, res)
	if !strings.Contains(b.String(), "## 5.") || len(monthVerdicts(res)) < 4 {
		t.Fatalf("report section:\n%s", b.String())
	}
	t.Logf("report section:\n%s\n%s", b.String(), monthAnalysis(res))
}
