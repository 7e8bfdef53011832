package hpp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// commitCounter counts the store's write transactions, each one commit.
type commitCounter struct {
	store.Store
	n atomic.Int32
}

func (c *commitCounter) Update(fn func(store.Tx) error) error {
	c.n.Add(1)
	return c.Store.Update(fn)
}

func (c *commitCounter) Batch(fn func(store.Tx) error) error {
	c.n.Add(1)
	return c.Store.Batch(fn)
}

// A present customer's charge with an Idempotency-Key whose token is
// unavailable takes the key in the charge's transaction and records the
// answer with the fallback's link: the request's commits are the key with
// the charge and its safety job (before the token order); then, once Klarna
// made the KP and the HPP session, the answer "unavailable", the session
// with both ids, the link and the request's answer.
func TestFallbackWithAPreparedKeyCommitsTwice(t *testing.T) {
	e := newChargeEnv(t, unavailable())
	cc := &commitCounter{Store: e.db}
	e.svc = New(cc, e.kl, e.svc.cfg)
	k, err := e.svc.PrepareKey("shop", "buy-1", []byte("h"), time.Hour)
	if err != nil || k.Replay != nil || !k.prepared {
		t.Fatalf("prepare: %+v, %v", k, err)
	}
	req := chargeRequest(true)
	req.IdempotencyKey, req.Key = k.ScopedKey(), k
	req.Answer = func(c *core.Charge, s *core.Session) (int, []byte, error) {
		return 201, []byte(c.ID + " " + string(c.Status) + " " + s.ID + " " + s.RedirectURL), nil
	}
	c, err := e.svc.CreateCharge(context.Background(), "shop", req)
	if err != nil || c.Status != core.ChargeFallback || c.SessionID == "" {
		t.Fatalf("charge %+v, %v", c, err)
	}
	if n := cc.n.Load(); n != 2 {
		t.Fatalf("%d commits, want 2", n)
	}
	sess, err := e.svc.Session("shop", c.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if sess.KPSessionID != "kp_1" || sess.HPPSessionID != "hpp_1" || sess.ChargeID != c.ID || len(sess.SecretHash) == 0 {
		t.Fatalf("session %+v", sess)
	}
	if jobs := e.jobs(t); len(jobs) != 0 {
		t.Fatalf("jobs left: %v", jobs)
	}
	if err := e.db.View(func(tx store.Tx) error {
		for _, name := range []string{fallbackLock(c.ID), createClaim(sess.ID)} {
			if l, err := tx.Lease(name); err != nil || l.Held(chargeT0) {
				return fmt.Errorf("lease %s: %+v, %v", name, l, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, h := range c.History {
		path = append(path, h.To)
	}
	if fmt.Sprint(path) != "[pending fallback]" || fmt.Sprint(e.ev.charges()) != "[charge.fallback]" {
		t.Fatalf("history %v, events %v", path, e.ev.charges())
	}
	want := c.ID + " fallback " + sess.ID + " " + sess.RedirectURL
	status, body, ok := k.Answered()
	if !ok || status != 201 || string(body) != want {
		t.Fatalf("answer %d %q %v, want %q", status, body, ok, want)
	}
	if err := e.svc.FinishKey(k, 500, []byte("not this")); err != nil || cc.n.Load() != 2 {
		t.Fatalf("FinishKey after the answer was recorded: %v, %d commits", err, cc.n.Load())
	}
	again, err := e.svc.PrepareKey("shop", "buy-1", []byte("h"), time.Hour)
	if err != nil || again.Replay == nil || again.Replay.Status != 201 || string(again.Replay.Body) != want {
		t.Fatalf("replay: %+v, %v", again, err)
	}
}

// Two requests with one new key prepare it at once: the first transaction
// takes it, the other is refused as in progress and writes nothing (no
// charge of its own).
func TestPreparedKeyTakenMeanwhileIsInProgress(t *testing.T) {
	e := newChargeEnv(t, charged(core.FraudAccepted))
	ka, err := e.svc.PrepareKey("shop", "buy-2", []byte("h"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := e.svc.PrepareKey("shop", "buy-2", []byte("h"), time.Hour)
	if err != nil || kb.Scope == ka.Scope {
		t.Fatalf("second prepare: %+v, %v", kb, err)
	}
	reqA := chargeRequest(false)
	reqA.IdempotencyKey, reqA.Key = ka.ScopedKey(), ka
	a, err := e.svc.CreateCharge(context.Background(), "shop", reqA)
	if err != nil || a.Status != core.ChargeCharged {
		t.Fatalf("first: %+v, %v", a, err)
	}
	reqB := chargeRequest(false)
	reqB.IdempotencyKey, reqB.Key = kb.ScopedKey(), kb
	if _, err := e.svc.CreateCharge(context.Background(), "shop", reqB); core.ErrorCodeOf(err) != core.CodeConflict {
		t.Fatalf("second: %v, want conflict", err)
	}
	var charges []*core.Charge
	if err := e.db.View(func(tx store.Tx) error {
		var err error
		charges, _, err = tx.ListCharges(core.ListQuery{Storefront: "shop", Limit: 10})
		return err
	}); err != nil || len(charges) != 1 {
		t.Fatalf("%d charges, %v", len(charges), err)
	}
	if _, err := e.svc.PrepareKey("shop", "buy-2", []byte("h"), time.Hour); core.ErrorCodeOf(err) != core.CodeConflict {
		t.Fatalf("prepare while the first request holds the key: %v, want conflict", err)
	}
	if err := e.svc.FinishKey(kb, 409, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.FinishKey(ka, 201, []byte("a")); err != nil {
		t.Fatal(err)
	}
	k, err := e.svc.PrepareKey("shop", "buy-2", []byte("h"), time.Hour)
	if err != nil || k.Replay == nil || string(k.Replay.Body) != "a" {
		t.Fatalf("replay: %+v, %v", k, err)
	}
}

// A request that ends before its flow's transaction (a refusal) leaves no
// record of its prepared key: the next request with the key starts afresh.
func TestPreparedKeyNeverTakenLeavesNothing(t *testing.T) {
	e := newChargeEnv(t)
	k, err := e.svc.PrepareKey("shop", "buy-3", []byte("h"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req := chargeRequest(true)
	req.CustomerToken = "" // refused before any write
	req.IdempotencyKey, req.Key = k.ScopedKey(), k
	if _, err := e.svc.CreateCharge(context.Background(), "shop", req); core.ErrorCodeOf(err) != core.CodeInvalid {
		t.Fatalf("charge: %v, want invalid", err)
	}
	if err := e.svc.FinishKey(k, 400, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := e.db.View(func(tx store.Tx) error {
		_, err := tx.Idempotency("shop", "buy-3")
		return err
	}); !core.IsNotFound(err) {
		t.Fatalf("record of a key never taken: %v", err)
	}
}

// A request whose key was taken over while it ran (its lease expired) still
// links its fallback, but records no answer under the key: the flow has no
// answer to send as recorded, and FinishKey finds the claim lost, as it does
// for any request that lost its key.
func TestFallbackWhoseKeyWasTakenOverRecordsNoAnswer(t *testing.T) {
	e := newChargeEnv(t, unavailable())
	k, err := e.svc.PrepareKey("shop", "buy-4", []byte("h"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.kl.before = func() {
		if err := e.db.Update(func(tx store.Tx) error {
			_, err := tx.AcquireLease(idempotencyLease("shop", "buy-4"), "own_b", chargeT0.Add(time.Hour), time.Minute)
			return err
		}); err != nil {
			t.Error(err)
		}
	}
	req := chargeRequest(true)
	req.IdempotencyKey, req.Key = k.ScopedKey(), k
	req.Answer = func(c *core.Charge, s *core.Session) (int, []byte, error) { return 201, []byte(c.ID), nil }
	c, err := e.svc.CreateCharge(context.Background(), "shop", req)
	if err != nil || c.Status != core.ChargeFallback || c.SessionID == "" {
		t.Fatalf("charge %+v, %v", c, err)
	}
	if status, body, ok := k.Answered(); ok {
		t.Fatalf("answer recorded under a lost key: %d %q", status, body)
	}
	if err := e.svc.FinishKey(k, 201, []byte(c.ID)); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("FinishKey of a lost key: %v, want ErrLeaseLost", err)
	}
}
