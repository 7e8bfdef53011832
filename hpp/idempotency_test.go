package hpp

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// One Idempotency-Key, two processes: while the first request runs the
// other gets 409; its answer is then replayed to both.
func TestKeyHasOneOwnerAcrossProcesses(t *testing.T) {
	db := openStore(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a := New(db, nil, Config{Owner: "own_a", Now: clock})
	b := New(db, nil, Config{Owner: "own_b", Now: clock})
	hash := []byte("request-hash")
	ka, err := a.ClaimKey("shop", "k1", hash, time.Hour)
	if err != nil || ka.Replay != nil || ka.Scope == "" {
		t.Fatalf("first claim: %+v, %v", ka, err)
	}
	if _, err := b.ClaimKey("shop", "k1", hash, time.Hour); core.ErrorCodeOf(err) != core.CodeConflict {
		t.Fatalf("claim while the first runs at another process: %v, want conflict", err)
	}
	if _, err := b.ClaimKey("shop", "k1", []byte("another body"), time.Hour); core.ErrorCodeOf(err) != core.CodeConflict {
		t.Fatalf("claim with another request: %v, want conflict", err)
	}
	if err := a.FinishKey(ka, 201, []byte(`{"id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []*Service{a, b} {
		k, err := svc.ClaimKey("shop", "k1", hash, time.Hour)
		if err != nil || k.Replay == nil || k.Replay.Status != 201 || string(k.Replay.Body) != `{"id":"x"}` {
			t.Fatalf("repeat after the answer: %+v, %v; want the answer replayed", k, err)
		}
	}
}

// Concurrent claims of one key at two processes: one owner.
func TestConcurrentKeyClaimsOneOwner(t *testing.T) {
	db := openStore(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	svcs := []*Service{New(db, nil, Config{Owner: "own_a", Now: clock}), New(db, nil, Config{Owner: "own_b", Now: clock})}
	var mu sync.Mutex
	owners := 0
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := svcs[i%2].ClaimKey("shop", "k1", []byte("h"), time.Hour)
			switch {
			case err == nil:
				mu.Lock()
				owners++
				mu.Unlock()
			case core.ErrorCodeOf(err) != core.CodeConflict:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if owners != 1 {
		t.Fatalf("%d owners of one key", owners)
	}
}

// The first request's process dies: when its lease expires a retry takes
// the key over in the same scope (so it finds what the first made), and
// the first one's late answer is not recorded over it.
func TestKeyTakenOverAfterItsLeaseExpires(t *testing.T) {
	db := openStore(t)
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := New(db, nil, Config{Owner: "own_a", Now: clock, LeaseTTL: time.Minute})
	b := New(db, nil, Config{Owner: "own_b", Now: clock, LeaseTTL: time.Minute})
	ka, err := a.ClaimKey("shop", "k1", []byte("h"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	kb, err := b.ClaimKey("shop", "k1", []byte("h"), time.Hour)
	if err != nil || kb.Replay != nil || kb.Scope != ka.Scope {
		t.Fatalf("takeover: %+v, %v; want the key in scope %s", kb, err, ka.Scope)
	}
	if err := a.FinishKey(ka, 201, []byte(`{"by":"a"}`)); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("the first request's late answer: %v, want ErrLeaseLost", err)
	}
	if err := b.FinishKey(kb, 201, []byte(`{"by":"b"}`)); err != nil {
		t.Fatal(err)
	}
	k, err := a.ClaimKey("shop", "k1", []byte("h"), time.Hour)
	if err != nil || k.Replay == nil || string(k.Replay.Body) != `{"by":"b"}` {
		t.Fatalf("replay: %+v, %v; want b's answer", k, err)
	}
}
