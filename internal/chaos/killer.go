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

// kill is one SIGKILL of hppd.
type kill struct {
	At               time.Time
	Progress         float64
	Targeted         bool // waited for a place_order in flight
	DuringPlaceOrder bool // a place_order call was in flight at the tap
	DuringTokenOrder bool // a customer token order was in flight
}

// killer SIGKILLs hppd at random moments of the work and restarts it.
type killer struct {
	hppd     *process
	tap      *tap
	ready    func(context.Context) error
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

// run does every kill. Every other kill, the first included, waits for a
// place_order call in flight at the tap (at most placeOrderWait), so kills
// land during order placement; the others land wherever they fall. After
// each kill hppd restarts after a short pause on the same data file and
// port; the wait for the next kill starts once it is ready again.
func (k *killer) run(ctx context.Context) error {
	from := time.Now()
	for i, p := range killPoints(k.n, k.rng) {
		if err := k.waitPoint(ctx, p, from); err != nil {
			return err
		}
		targeted := i%2 == 0
		if targeted {
			k.tap.waitInFlight(ctx, opPlaceOrder, placeOrderWait)
		}
		kl := kill{
			At: time.Now(), Progress: k.progress(), Targeted: targeted,
			DuringPlaceOrder: k.tap.inFlight(opPlaceOrder) > 0,
			DuringTokenOrder: k.tap.inFlight(opTokenOrder) > 0,
		}
		k.hppd.kill()
		k.kills = append(k.kills, kl)
		k.logf("kill %d/%d at %.0f%% of the work (place_order in flight: %v, token order in flight: %v)",
			i+1, k.n, 100*kl.Progress, kl.DuringPlaceOrder, kl.DuringTokenOrder)
		pause := 100*time.Millisecond + time.Duration(k.rng.IntN(600))*time.Millisecond
		if err := sleepCtx(ctx, pause); err != nil {
			return err
		}
		if err := k.hppd.start(); err != nil {
			return fmt.Errorf("restart after kill %d: %w", i+1, err)
		}
		if err := k.ready(ctx); err != nil {
			return fmt.Errorf("restart after kill %d: %w", i+1, err)
		}
		from = time.Now()
	}
	return nil
}
