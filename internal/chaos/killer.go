package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Killer timing. A kill comes at a progress point of the work (spread over
// killSpanStart..killSpanEnd of it, seeded), so the kills fall inside the
// work however fast the machine is; but at most killMaxGap after the
// previous restart, so a run whose progress stalls (storefront requests
// waiting out an hppd that refuses them) cannot push the kills back one
// stall after another; and at least killMinGap after it.
const (
	killSpanStart = 0.05
	killSpanEnd   = 0.70
	killMinGap    = time.Second
	killMaxGap    = 8 * time.Second
	// placeOrderWait bounds how long a targeted kill waits for a
	// place_order call in flight before it kills anyway.
	placeOrderWait = 10 * time.Second
)

// doubleKillChance is how often, with three replicas or more, a kill takes
// down a second replica with the first.
const doubleKillChance = 0.25

// kill is one SIGKILL of an hppd process.
type kill struct {
	At               time.Time
	Progress         float64
	Replica          int  // index into killer.hppd
	Targeted         bool // waited for a place_order in flight
	Second           bool // the second replica of a kill that took down two
	DuringPlaceOrder bool // this replica had a place_order call in flight at the tap
	DuringTokenOrder bool // this replica had a customer token order in flight
}

// killer SIGKILLs hppd processes at random moments of the work and
// restarts them. With one process it is killed each time; with several
// (replicas behind the balancer) one is killed at a time, sometimes two.
type killer struct {
	hppd []*process
	tap  *tap
	// ready waits until replica i answers /readyz (and tells the balancer).
	ready    func(ctx context.Context, i int) error
	progress func() float64
	n        int
	rng      *rand.Rand
	logf     func(format string, args ...any)

	kills []kill
}

// killPoints are the progress points of the kills, ascending, each in its
// share of [killSpanStart, killSpanEnd) with seeded jitter.
func killPoints(n int, rng *rand.Rand) []float64 {
	pts := make([]float64, n)
	for i := range pts {
		pts[i] = killSpanStart + (killSpanEnd-killSpanStart)*(float64(i)+rng.Float64())/float64(n)
	}
	return pts
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// waitPoint waits until the work reaches p or killMaxGap has passed since
// from, and at least killMinGap.
func (k *killer) waitPoint(ctx context.Context, p float64, from time.Time) error {
	if err := sleepCtx(ctx, killMinGap); err != nil {
		return err
	}
	for k.progress() < p && time.Since(from) < killMaxGap {
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// victims picks the processes of one kill: the one with a place_order in
// flight when the kill is targeted and one has (busy >= 0), else one at
// random; with three processes or more, sometimes a second one too.
func (k *killer) victims(busy int) []int {
	if len(k.hppd) == 1 {
		return []int{0} // no draw: a seed replays the single process's kills as before
	}
	first := busy
	if first < 0 {
		first = k.rng.IntN(len(k.hppd))
	}
	out := []int{first}
	if len(k.hppd) >= 3 && k.rng.Float64() < doubleKillChance {
		second := (first + 1 + k.rng.IntN(len(k.hppd)-1)) % len(k.hppd)
		out = append(out, second)
	}
	return out
}

// run does every kill. Every other kill, the first included, waits for a
// place_order call in flight at the tap (at most placeOrderWait), so kills
// land during order placement; the others land wherever they fall. After
// each kill the process restarts after a short pause on the same data file
// (or database) and port; the wait for the next kill starts once it is
// ready again.
func (k *killer) run(ctx context.Context) error {
	from := time.Now()
	for i, p := range killPoints(k.n, k.rng) {
		if err := k.waitPoint(ctx, p, from); err != nil {
			return err
		}
		targeted := i%2 == 0
		busy := -1
		if targeted {
			busy = k.tap.waitInFlight(ctx, opPlaceOrder, placeOrderWait)
		}
		victims := k.victims(busy)
		for j, v := range victims {
			kl := kill{
				At: time.Now(), Progress: k.progress(), Replica: v, Targeted: targeted, Second: j > 0,
				DuringPlaceOrder: k.tap.inFlight(v, opPlaceOrder) > 0,
				DuringTokenOrder: k.tap.inFlight(v, opTokenOrder) > 0,
			}
			k.hppd[v].kill()
			k.kills = append(k.kills, kl)
			who := ""
			if len(k.hppd) > 1 {
				who = fmt.Sprintf(" of replica %d", v+1)
			}
			k.logf("kill %d/%d%s at %.0f%% of the work (place_order in flight: %v, token order in flight: %v)",
				i+1, k.n, who, 100*kl.Progress, kl.DuringPlaceOrder, kl.DuringTokenOrder)
		}
		pause := 100*time.Millisecond + time.Duration(k.rng.IntN(600))*time.Millisecond
		if err := sleepCtx(ctx, pause); err != nil {
			return err
		}
		for _, v := range victims {
			if err := k.hppd[v].start(); err != nil {
				return fmt.Errorf("restart after kill %d: %w", i+1, err)
			}
		}
		for _, v := range victims {
			if err := k.ready(ctx, v); err != nil {
				return fmt.Errorf("restart after kill %d: %w", i+1, err)
			}
		}
		from = time.Now()
	}
	return nil
}
