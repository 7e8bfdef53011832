package hpp

import (
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/hppd/hppd/store/boltstore"
)

// newShareService is a Service with one account (create 50/s, other
// 100/s, token orders 40/s) and storefront "shop" holding a fifth of it,
// on a clock that moves only when the test moves it.
func newShareService(t *testing.T, rereadRate float64) (*Service, *time.Time) {
	t.Helper()
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	svc := New(db, nil, Config{
		Accounts:         []Account{{Name: DefaultAccount, CreateRate: 50, OtherRate: 100, TokenOrderRate: 40}},
		StorefrontShares: map[string]float64{"shop": 0.2},
		RereadRate:       rereadRate,
		Now:              func() time.Time { return now },
	})
	return svc, &now
}

// taken is how many requests of cat the storefront may start at once, on a
// still clock, before one is refused.
func taken(t *testing.T, svc *Service, storefront string, cat shareCategory) int {
	t.Helper()
	for n := range 1000 {
		err := svc.withinShare(storefront, DefaultAccount, cat)
		if err == nil {
			continue
		}
		var over *OverShare
		if !errors.As(err, &over) || over.RetryAfter() <= 0 {
			t.Fatalf("refusal %v, want an *OverShare with a Retry-After", err)
		}
		return n
	}
	t.Fatal("no refusal in 1000 requests")
	return 0
}

// A replica's part of the rates (SetShare, 1/N) divides each storefront's
// share: buckets made before the change and after it, refilled at the
// divided rate up to the divided burst, and back to the whole share when
// the replica is alone again.
func TestSetShareDividesStorefrontShares(t *testing.T) {
	svc, now := newShareService(t, 0)
	if n := taken(t, svc, "shop", shareCreate); n != 10 { // 0.2 × 50/s, a second's burst
		t.Fatalf("alone: %d creations at once, want 10", n)
	}
	svc.SetShare(0.5)
	*now = now.Add(time.Minute)
	if n := taken(t, svc, "shop", shareCreate); n != 5 {
		t.Fatalf("one of two replicas, bucket made before: %d creations at once, want 5", n)
	}
	if n := taken(t, svc, "shop", shareOther); n != 10 { // 0.2 × 100/s ÷ 2
		t.Fatalf("one of two replicas, bucket made after: %d token reads at once, want 10", n)
	}
	*now = now.Add(time.Second / 5)
	if n := taken(t, svc, "shop", shareOther); n != 2 { // refilled at 10/s for 200 ms
		t.Fatalf("one of two replicas, refill: %d token reads after 200 ms, want 2", n)
	}
	svc.SetShare(0.25)
	*now = now.Add(time.Minute)
	if n := taken(t, svc, "shop", shareTokenOrder); n != 2 { // 0.2 × 40/s ÷ 4
		t.Fatalf("one of four replicas: %d token charges at once, want 2", n)
	}
	for i := range 100 {
		if err := svc.withinShare("other-shop", DefaultAccount, shareCreate); err != nil {
			t.Fatalf("a storefront without a share was refused after %d: %v", i, err)
		}
	}
	svc.SetShare(1)
	*now = now.Add(time.Minute)
	if n := taken(t, svc, "shop", shareCreate); n != 10 {
		t.Fatalf("alone again: %d creations at once, want 10", n)
	}
}

// A share outside (0, 1] means the whole rate, as for the Klarna client.
func TestSetShareOutsideRangeIsWhole(t *testing.T) {
	for _, bad := range []float64{0, -1, 2, math.NaN()} {
		svc, _ := newShareService(t, 10)
		svc.SetShare(bad)
		if got := svc.share(); got != 1 {
			t.Errorf("SetShare(%v): share %v, want 1", bad, got)
		}
		if n := taken(t, svc, "shop", shareCreate); n != 10 {
			t.Errorf("SetShare(%v): %d creations at once, want 10", bad, n)
		}
	}
}

// The routine re-read rate (Config.RereadRate, HPPD_REREAD_SHARE of the
// "other" rate) is divided the same way: the limiter the job runner waits
// on, and the minute of re-read jobs the poller lets wait.
func TestSetShareDividesRereadRate(t *testing.T) {
	svc, _ := newShareService(t, 30)
	if got := float64(svc.rereadLim.Limit()); got != 30 {
		t.Fatalf("alone: re-read limit %v, want 30", got)
	}
	if q := svc.rereadQueue(); q != 1800 {
		t.Fatalf("alone: re-read queue %d, want 1800 (a minute at 30/s)", q)
	}
	svc.SetShare(0.25)
	if got := float64(svc.rereadLim.Limit()); got != 7.5 {
		t.Fatalf("one of four: re-read limit %v, want 7.5", got)
	}
	if q := svc.rereadQueue(); q != 450 {
		t.Fatalf("one of four: re-read queue %d, want 450", q)
	}
	svc.SetShare(1)
	if got := float64(svc.rereadLim.Limit()); got != 30 {
		t.Fatalf("alone again: re-read limit %v, want 30", got)
	}

	none, _ := newShareService(t, 0)
	none.SetShare(0.5)
	if none.rereadLim != nil || none.rereadQueue() != 0 {
		t.Fatal("without a re-read rate, a share made one")
	}
}
