package hpp

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadGate(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var g readGate
	var reads atomic.Int32
	release := make(chan struct{})
	slowRead := func() error { reads.Add(1); <-release; return nil }

	t.Run("concurrent outside reads make one", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 50)
		for i := range errs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs[i] = g.do(context.Background(), "s1", true, clock, 3*time.Second, slowRead)
			}(i)
		}
		for reads.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		close(release)
		wg.Wait()
		if n := reads.Load(); n != 1 {
			t.Fatalf("%d reads, want 1", n)
		}
		recent := 0
		for _, err := range errs {
			if until, ok := recentUntil(err); ok {
				recent++
				if !until.Equal(clock().Add(3 * time.Second)) {
					t.Fatalf("until %v", until)
				}
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if recent != 49 {
			t.Fatalf("%d answered from the file, want 49", recent)
		}
	})
	t.Run("routine reads are not spaced", func(t *testing.T) {
		if err := g.do(context.Background(), "s1", false, clock, 3*time.Second, func() error { reads.Add(1); return nil }); err != nil {
			t.Fatal(err)
		}
		if n := reads.Load(); n != 2 {
			t.Fatalf("%d reads, want 2", n)
		}
	})
	t.Run("after the interval an outside read reads again", func(t *testing.T) {
		if _, ok := recentUntil(g.do(context.Background(), "s1", true, clock, 3*time.Second, func() error { reads.Add(1); return nil })); !ok {
			t.Fatal("outside read inside the interval was made")
		}
		advance(3 * time.Second)
		if err := g.do(context.Background(), "s1", true, clock, 3*time.Second, func() error { reads.Add(1); return nil }); err != nil {
			t.Fatal(err)
		}
		if n := reads.Load(); n != 3 {
			t.Fatalf("%d reads, want 3", n)
		}
	})
	t.Run("a waiter gives up with its context", func(t *testing.T) {
		block := make(chan struct{})
		started := make(chan struct{})
		go func() {
			_ = g.do(context.Background(), "s2", false, clock, 3*time.Second, func() error { close(started); <-block; return nil })
		}()
		<-started
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := g.do(ctx, "s2", true, clock, 3*time.Second, func() error { t.Fatal("read while one is in flight"); return nil }); err != context.Canceled {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		close(block)
	})
	t.Run("old start times are swept", func(t *testing.T) {
		advance(time.Minute)
		_ = g.do(context.Background(), "s3", true, clock, 3*time.Second, func() error { return nil })
		g.mu.Lock()
		defer g.mu.Unlock()
		if _, ok := g.started["s1"]; ok || len(g.started) > 2 {
			t.Fatalf("start times kept: %v", g.started)
		}
	})
}
