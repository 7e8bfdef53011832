package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/pgtest"
	"github.com/hppd/hppd/store"
)

// Replicas count each other by heartbeat; a stale one drops out of the live
// window, one that leaves drops out at once.
func TestHeartbeatCountsLiveReplicas(t *testing.T) {
	url := pgtest.DB(t)
	a, b := open(t, url), open(t, url)
	ctx := context.Background()
	const live = 10 * time.Second
	if n, err := a.Heartbeat(ctx, "rep_a", t0, t0, live); err != nil || n != 1 {
		t.Fatalf("alone: %d, %v", n, err)
	}
	if n, err := b.Heartbeat(ctx, "rep_b", t0, t0.Add(time.Second), live); err != nil || n != 2 {
		t.Fatalf("two: %d, %v", n, err)
	}
	if n, err := a.Heartbeat(ctx, "rep_c", t0, t0.Add(2*time.Second), live); err != nil || n != 3 {
		t.Fatalf("three: %d, %v", n, err)
	}
	if err := a.Leave(ctx, "rep_c"); err != nil {
		t.Fatal(err)
	}
	// rep_a's last beat is older than the window: b alone.
	if n, err := b.Heartbeat(ctx, "rep_b", t0, t0.Add(live+500*time.Millisecond), live); err != nil || n != 1 {
		t.Fatalf("after a went quiet and c left: %d, %v", n, err)
	}
}

// A job committed through one handle wakes a listener on another.
func TestCommitWakesListeners(t *testing.T) {
	url := pgtest.DB(t)
	a, b := open(t, url), open(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	woke := make(chan struct{}, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Listen(ctx, 10*time.Millisecond, func() { woke <- struct{}{} })
	}()
	defer func() { cancel(); <-done }()
	<-woke // the wake-up a listening connection starts with
	if err := a.Update(func(tx store.Tx) error {
		_, err := tx.AddJob(&core.Job{ID: "place_order/y", Kind: core.JobPlaceOrder, DueAt: t0})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
	case <-time.After(30 * time.Second): // a bound against a hang, not a speed check
		t.Fatal("no wake-up after a committed job")
	}
}
