// Package storetest is the contract suite of package store: every
// implementation runs Run against a real instance of itself (boltstore on a
// file in a temporary directory), the way River's drivers all run one driver
// suite. A test here asserts only what store's package doc promises, so a
// second implementation passes it without knowing the first.
//
// Open returns two handles on one fresh store standing for two processes
// (replicas) that share it: the suite gives them different lease owners and
// runs them at once, so what it checks (no job claimed twice, an expired lease
// claimed again, a stale fencing token refused, one job per session from
// concurrent due-scans, one owner per idempotency key, one acceptance of a
// callback delivered twice at once, no change lost among different callbacks
// to one session at once, one result when a stale holder races a takeover)
// holds across processes, not only across goroutines. PreparedWrites checks
// prepared session writes (store.SessionVersions) where a store offers them,
// and that a store without them prepares nothing; either way no change is
// lost to a write prepared before another committed. Retention checks that
// an implementation's pruner drops the same records as every other's. An implementation whose store only one process can open (bbolt)
// may return the same value twice: the owners still differ.
package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Open opens a fresh, empty store for one test and returns two handles on it;
// it closes them at the test's cleanup.
type Open func(t *testing.T) (a, b store.Store)

// t0 is the suite's clock: every method takes its time from the caller.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const (
	ownerA = "own_a"
	ownerB = "own_b"
	ttl    = 2 * time.Minute
)

// Run runs the contract suite.
func Run(t *testing.T, open Open) {
	t.Run("Sessions", func(t *testing.T) { testSessions(t, open) })
	t.Run("Charges", func(t *testing.T) { testCharges(t, open) })
	t.Run("Jobs", func(t *testing.T) { testJobs(t, open) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, open) })
	t.Run("PruneEvents", func(t *testing.T) { testPruneEvents(t, open) })
	t.Run("RollbackOnError", func(t *testing.T) { testRollback(t, open) })
	t.Run("DueIndex", func(t *testing.T) { testDueIndex(t, open) })
	t.Run("PreparedWrites", func(t *testing.T) { testPrepared(t, open) })
	t.Run("Replicas", func(t *testing.T) {
		t.Run("NoJobClaimedTwice", func(t *testing.T) { testNoJobClaimedTwice(t, open) })
		t.Run("ExpiredLeaseClaimedAgain", func(t *testing.T) { testExpiredLease(t, open) })
		t.Run("StaleTokenCannotComplete", func(t *testing.T) { testStaleToken(t, open) })
		t.Run("JobCreatedLeased", func(t *testing.T) { testJobCreatedLeased(t, open) })
		t.Run("NamedLeases", func(t *testing.T) { testNamedLeases(t, open) })
		t.Run("ConcurrentDueScansOneJobPerSession", func(t *testing.T) { testConcurrentDueScans(t, open) })
		t.Run("OneOwnerPerIdempotencyKey", func(t *testing.T) { testOneIdempotencyOwner(t, open) })
		t.Run("SameCallbackTwiceAcceptedOnce", func(t *testing.T) { testSameCallbackTwice(t, open) })
		t.Run("CallbacksToOneSessionAtOnce", func(t *testing.T) { testCallbacksToOneSession(t, open) })
		t.Run("FencedResultRacesTakeover", func(t *testing.T) { testFencedResultRacesTakeover(t, open) })
	})
}

func session(id, storefront string, created time.Time) *core.Session {
	return &core.Session{
		ID: id, Storefront: storefront, Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone,
		Status: core.SessionPending, HPPSessionID: "hpp-" + id, KPSessionID: "kp-" + id,
		Purchase: core.Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 100,
			OrderLines: []core.OrderLine{{Name: "x", Quantity: 1, UnitPrice: 100, TotalAmount: 100}}},
		CreatedAt: created, UpdatedAt: created, ExpiresAt: created.Add(47 * time.Hour),
		CheckAt: created.Add(2 * time.Minute),
	}
}

func job(id string, kind core.JobKind, due time.Time) *core.Job {
	return &core.Job{ID: id, Kind: kind, SessionID: "ses_1", DueAt: due, CreatedAt: due}
}

func update(t *testing.T, db store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := db.Update(fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

func view(t *testing.T, db store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := db.View(fn); err != nil {
		t.Fatalf("view: %v", err)
	}
}

func getJob(t *testing.T, db store.Store, id string) (*core.Job, error) {
	t.Helper()
	var j *core.Job
	err := db.View(func(tx store.Tx) error {
		var err error
		j, err = tx.Job(id)
		return err
	})
	return j, err
}

func dueIDs(t *testing.T, db store.Store, now time.Time) []string {
	t.Helper()
	var ids []string
	view(t, db, func(tx store.Tx) error {
		_, err := tx.DueJobIDs(now, func(id string) bool { ids = append(ids, id); return true })
		return err
	})
	return ids
}

func testSessions(t *testing.T, open Open) {
	a, b := open(t)
	s1, s2 := session("ses_1", "shop", t0), session("ses_2", "shop", t0.Add(time.Second))
	s2.CheckAt = t0.Add(time.Hour)
	update(t, a, func(tx store.Tx) error {
		if err := tx.PutSession(s1); err != nil {
			return err
		}
		return tx.PutSession(s2)
	})
	view(t, b, func(tx store.Tx) error {
		got, err := tx.Session("ses_1")
		if err != nil {
			return err
		}
		if got.ID != "ses_1" || got.HPPSessionID != "hpp-ses_1" || got.Purchase.OrderAmount != 100 {
			t.Errorf("session read back as %+v", got)
		}
		got.Storefront = "changed" // a fresh value: changing it changes nothing stored
		if id, err := tx.SessionIDByHPP("hpp-ses_2"); err != nil || id != "ses_2" {
			t.Errorf("SessionIDByHPP = %q, %v", id, err)
		}
		if id, err := tx.SessionIDByKP("kp-ses_1"); err != nil || id != "ses_1" {
			t.Errorf("SessionIDByKP = %q, %v", id, err)
		}
		if _, err := tx.Session("ses_missing"); !core.IsNotFound(err) {
			t.Errorf("missing session: %v, want not found", err)
		}
		due, err := tx.SessionsDue(t0.Add(10*time.Minute), 0)
		if err != nil || len(due) != 1 || due[0] != "ses_1" {
			t.Errorf("SessionsDue = %v, %v; want [ses_1]", due, err)
		}
		list, next, err := tx.ListSessions(core.ListQuery{Storefront: "shop", Limit: 1})
		if err != nil || len(list) != 1 || list[0].ID != "ses_2" || next == "" {
			t.Errorf("ListSessions page 1 = %d sessions, next %q, %v; want ses_2 first", len(list), next, err)
		}
		sessions, _, _, err := tx.Counts()
		if err != nil || sessions[core.SessionPending] != 2 {
			t.Errorf("Counts: %d pending, %v; want 2", sessions[core.SessionPending], err)
		}
		return nil
	})
	view(t, a, func(tx store.Tx) error {
		got, err := tx.Session("ses_1")
		if err == nil && got.Storefront != "shop" {
			t.Errorf("a returned value aliased the store: storefront %q", got.Storefront)
		}
		return err
	})
}

// sessionsDue returns the set SessionsDue(now, 0) returns.
func sessionsDue(t *testing.T, db store.Store, now time.Time) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	view(t, db, func(tx store.Tx) error {
		ids, err := tx.SessionsDue(now, 0)
		for _, id := range ids {
			got[id] = true
		}
		return err
	})
	return got
}

// The due promise: SessionsDue returns every session whose CheckAt has come,
// however it was written (PutSession or PutSessionKeepDue, CheckAt moved
// later, earlier or to zero); it may return one not due yet only after
// PutSessionKeepDue moved its CheckAt later, and PutSession of the unchanged
// session files it exactly again.
func testDueIndex(t *testing.T, open Open) {
	a, _ := open(t)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	put := func(keep bool, id string, checkAt time.Time, final bool) {
		t.Helper()
		update(t, a, func(tx store.Tx) error {
			s, err := tx.Session(id)
			if core.IsNotFound(err) {
				s, err = session(id, "shop", t0), nil
			}
			if err != nil {
				return err
			}
			s.CheckAt = checkAt
			if final {
				s.Status = core.SessionFailed
			}
			if keep {
				return store.PutSessionKeepDue(tx, s)
			}
			return tx.PutSession(s)
		})
	}
	want := func(now time.Time, due []string, notDue ...string) {
		t.Helper()
		got := sessionsDue(t, a, now)
		for _, id := range due {
			if !got[id] {
				t.Errorf("SessionsDue(t0+%v) = %v: %s missing", now.Sub(t0), got, id)
			}
		}
		for _, id := range notDue {
			if got[id] {
				t.Errorf("SessionsDue(t0+%v) = %v: %s is not due", now.Sub(t0), got, id)
			}
		}
	}
	put(false, "ses_later", at(2*time.Minute), false)
	put(false, "ses_earlier", at(time.Hour), false)
	put(false, "ses_final", at(2*time.Minute), false)
	put(true, "ses_new", at(3*time.Minute), false)
	put(true, "ses_later", at(time.Hour), false)        // pushed back: may lag
	put(true, "ses_earlier", at(30*time.Second), false) // brought forward
	put(true, "ses_final", time.Time{}, true)           // no re-read any more
	want(at(30*time.Second), []string{"ses_earlier"}, "ses_new", "ses_final")
	want(at(3*time.Minute), []string{"ses_earlier", "ses_new"}, "ses_final")
	want(at(time.Hour), []string{"ses_earlier", "ses_new", "ses_later"}, "ses_final")
	want(at(48*time.Hour), []string{"ses_earlier", "ses_new", "ses_later"}, "ses_final")
	// The poller's re-file: the unchanged session through PutSession.
	update(t, a, func(tx store.Tx) error {
		s, err := tx.Session("ses_later")
		if err != nil {
			return err
		}
		return tx.PutSession(s)
	})
	want(at(3*time.Minute), []string{"ses_earlier", "ses_new"}, "ses_later", "ses_final")
	want(at(time.Hour), []string{"ses_earlier", "ses_new", "ses_later"}, "ses_final")
}

func testCharges(t *testing.T, open Open) {
	a, b := open(t)
	c := &core.Charge{ID: "chg_1", Storefront: "shop", CustomerToken: "tok", Status: core.ChargePending,
		Purchase: core.Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 100}, CreatedAt: t0, UpdatedAt: t0}
	update(t, a, func(tx store.Tx) error { return tx.PutCharge(c) })
	c.Status = core.ChargeCharged
	update(t, a, func(tx store.Tx) error { return tx.PutCharge(c) })
	view(t, b, func(tx store.Tx) error {
		got, err := tx.Charge("chg_1")
		if err != nil || got.Status != core.ChargeCharged {
			t.Errorf("charge = %+v, %v; want charged", got, err)
		}
		list, _, err := tx.ListCharges(core.ListQuery{Storefront: "shop", Status: string(core.ChargeCharged)})
		if err != nil || len(list) != 1 {
			t.Errorf("ListCharges(charged) = %d, %v; want 1", len(list), err)
		}
		_, charges, _, err := tx.Counts()
		if err != nil || charges[core.ChargeCharged] != 1 || charges[core.ChargePending] != 0 {
			t.Errorf("Counts = %v, %v; want one charged, none pending", charges, err)
		}
		return nil
	})
}

func testJobs(t *testing.T, open Open) {
	a, b := open(t)
	var first, second bool
	update(t, a, func(tx store.Tx) error {
		var err error
		if first, err = tx.AddJob(job("place_order/ses_1", core.JobPlaceOrder, t0)); err != nil {
			return err
		}
		if second, err = tx.AddJob(job("place_order/ses_1", core.JobPlaceOrder, t0.Add(time.Hour))); err != nil {
			return err
		}
		_, err = tx.AddJob(job("sync_session/ses_1", core.JobSyncSession, t0.Add(time.Minute)))
		return err
	})
	if !first || second {
		t.Fatalf("AddJob twice with one id: %v then %v; want true then false", first, second)
	}
	if ids := dueIDs(t, b, t0); len(ids) != 1 || ids[0] != "place_order/ses_1" {
		t.Fatalf("due at t0: %v", ids)
	}
	if ids := dueIDs(t, b, t0.Add(time.Minute)); len(ids) != 2 {
		t.Fatalf("due at t0+1m: %v; want both, earliest first", ids)
	}
	j, err := getJob(t, b, "place_order/ses_1")
	if err != nil || !j.DueAt.Equal(t0) {
		t.Fatalf("the first AddJob's job is kept: %+v, %v", j, err)
	}
	update(t, a, func(tx store.Tx) error { return tx.DeleteJob("place_order/ses_1") })
	if _, err := getJob(t, b, "place_order/ses_1"); !core.IsNotFound(err) {
		t.Fatalf("deleted job: %v", err)
	}
	view(t, b, func(tx store.Tx) error {
		next, ok := tx.NextJobDue()
		if !ok || !next.Equal(t0.Add(time.Minute)) {
			t.Errorf("NextJobDue = %v, %v", next, ok)
		}
		return nil
	})
}

func testIdempotency(t *testing.T, open Open) {
	a, b := open(t)
	r := &core.IdempotencyRecord{Storefront: "shop", Key: "k1", RequestHash: []byte{1, 2}, Status: 201, Body: []byte(`{"id":"x"}`), Done: true, CreatedAt: t0}
	update(t, a, func(tx store.Tx) error { return tx.PutIdempotency(r) })
	view(t, b, func(tx store.Tx) error {
		got, err := tx.Idempotency("shop", "k1")
		if err != nil || got.Status != 201 || string(got.Body) != `{"id":"x"}` || !got.Done {
			t.Errorf("idempotency record = %+v, %v", got, err)
		}
		if _, err := tx.Idempotency("other", "k1"); !core.IsNotFound(err) {
			t.Errorf("another storefront's key: %v, want not found", err)
		}
		return nil
	})
	update(t, b, func(tx store.Tx) error { return tx.DeleteIdempotency("shop", "k1") })
	view(t, a, func(tx store.Tx) error {
		if _, err := tx.Idempotency("shop", "k1"); !core.IsNotFound(err) {
			t.Errorf("deleted key: %v, want not found", err)
		}
		return nil
	})
}

func testPruneEvents(t *testing.T, open Open) {
	a, _ := open(t)
	update(t, a, func(tx store.Tx) error {
		for i := range 5 {
			if err := tx.MarkEvent("hpp-1", fmt.Sprint("ev", i), t0.Add(time.Duration(i)*time.Hour)); err != nil {
				return err
			}
		}
		return nil
	})
	var n int
	update(t, a, func(tx store.Tx) error {
		var err error
		n, err = tx.PruneEvents(t0.Add(3*time.Hour), 0)
		return err
	})
	if n != 3 {
		t.Fatalf("pruned %d marks, want the 3 before the cutoff", n)
	}
	view(t, a, func(tx store.Tx) error {
		for i, want := range []bool{false, false, false, true, true} {
			seen, err := tx.SeenEvent("hpp-1", fmt.Sprint("ev", i))
			if err != nil || seen != want {
				t.Errorf("ev%d seen = %v, %v; want %v", i, seen, err, want)
			}
		}
		return nil
	})
}

func testRollback(t *testing.T, open Open) {
	a, b := open(t)
	boom := errors.New("boom")
	for name, run := range map[string]func(func(store.Tx) error) error{"Update": a.Update, "Batch": a.Batch} {
		err := run(func(tx store.Tx) error {
			if _, err := tx.AddJob(job("sync_session/"+name, core.JobSyncSession, t0)); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("%s returned %v, want the function's error", name, err)
		}
		if _, err := getJob(t, b, "sync_session/"+name); !core.IsNotFound(err) {
			t.Fatalf("%s: a failed function's write was committed: %v", name, err)
		}
	}
}

// Many claimers on both handles race for the same due jobs, each scanning
// and then claiming (the read-then-write a runner does): every job is
// claimed exactly once.
func testNoJobClaimedTwice(t *testing.T, open Open) {
	a, b := open(t)
	const jobs = 40
	update(t, a, func(tx store.Tx) error {
		for i := range jobs {
			if _, err := tx.AddJob(job(fmt.Sprintf("sync_session/ses_%02d", i), core.JobSyncSession, t0)); err != nil {
				return err
			}
		}
		return nil
	})
	var mu sync.Mutex
	claims := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		db, owner := a, ownerA
		if g%2 == 1 {
			db, owner = b, ownerB
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ids []string
			if err := db.View(func(tx store.Tx) error {
				_, err := tx.DueJobIDs(t0, func(id string) bool { ids = append(ids, id); return true })
				return err
			}); err != nil {
				errs <- err
				return
			}
			for _, id := range ids {
				var got *core.Job
				err := db.Batch(func(tx store.Tx) error {
					var err error
					got, err = tx.ClaimDueJob(id, owner, t0, ttl)
					return err
				})
				switch {
				case err == nil:
					mu.Lock()
					claims[got.ID]++
					mu.Unlock()
				case errors.Is(err, store.ErrLeaseHeld), errors.Is(err, store.ErrNotDue):
				default:
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(claims) != jobs {
		t.Fatalf("%d jobs claimed, want %d", len(claims), jobs)
	}
	for id, n := range claims {
		if n != 1 {
			t.Errorf("job %s claimed %d times", id, n)
		}
	}
	if ids := dueIDs(t, a, t0.Add(ttl-time.Nanosecond)); len(ids) != 0 {
		t.Errorf("leased jobs are due before their leases expire: %v", ids)
	}
}

func claim(t *testing.T, db store.Store, id, owner string, now time.Time) (*core.Job, error) {
	t.Helper()
	var j *core.Job
	err := db.Batch(func(tx store.Tx) error {
		var err error
		j, err = tx.ClaimJob(id, owner, now, ttl)
		return err
	})
	return j, err
}

func testExpiredLease(t *testing.T, open Open) {
	a, b := open(t)
	update(t, a, func(tx store.Tx) error {
		_, err := tx.AddJob(job("place_order/ses_1", core.JobPlaceOrder, t0))
		return err
	})
	ja, err := claim(t, a, "place_order/ses_1", ownerA, t0)
	if err != nil {
		t.Fatal(err)
	}
	if ja.Lease.Owner != ownerA || !ja.Lease.Until.Equal(t0.Add(ttl)) || ja.Lease.Token == 0 {
		t.Fatalf("lease = %+v", ja.Lease)
	}
	if _, err := claim(t, b, "place_order/ses_1", ownerB, t0.Add(ttl/2)); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("claim of a held job: %v, want ErrLeaseHeld", err)
	}
	// a dies. Its lease expires and the job is simply due again.
	if ids := dueIDs(t, b, t0.Add(ttl)); len(ids) != 1 {
		t.Fatalf("due at the lease's expiry: %v; want the job", ids)
	}
	var jb *core.Job
	err = b.Batch(func(tx store.Tx) error {
		var err error
		jb, err = tx.ClaimDueJob("place_order/ses_1", ownerB, t0.Add(ttl), ttl)
		return err
	})
	if err != nil {
		t.Fatalf("claim after expiry: %v", err)
	}
	if jb.Lease.Owner != ownerB || jb.Lease.Token <= ja.Lease.Token {
		t.Fatalf("new lease %+v after %+v: the token must grow", jb.Lease, ja.Lease)
	}
	if !jb.DueAt.Equal(t0) {
		t.Fatalf("the job's own due time changed: %v", jb.DueAt)
	}
}

func testStaleToken(t *testing.T, open Open) {
	a, b := open(t)
	const id = "place_order/ses_1"
	update(t, a, func(tx store.Tx) error {
		_, err := tx.AddJob(job(id, core.JobPlaceOrder, t0))
		return err
	})
	ja, err := claim(t, a, id, ownerA, t0)
	if err != nil {
		t.Fatal(err)
	}
	late := t0.Add(ttl + time.Second)
	// Expired, not yet taken over: still refused.
	if err := a.Update(func(tx store.Tx) error { return tx.CompleteJob(ja, late) }); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("completion under an expired lease: %v, want ErrLeaseLost", err)
	}
	jb, err := claim(t, b, id, ownerB, late)
	if err != nil {
		t.Fatal(err)
	}
	// a's result, with the session change it carries, must not commit.
	for name, fn := range map[string]func(tx store.Tx) error{
		"CompleteJob": func(tx store.Tx) error { return tx.CompleteJob(ja, late) },
		"UpdateJob":   func(tx store.Tx) error { j := *ja; j.Sent++; return tx.UpdateJob(&j, late) },
		"ReleaseJob":  func(tx store.Tx) error { j := *ja; j.Failed("x", late, time.Hour); return tx.ReleaseJob(&j, late) },
	} {
		err := a.Update(func(tx store.Tx) error {
			if err := tx.PutSession(session("ses_stale_"+name, "shop", t0)); err != nil {
				return err
			}
			return fn(tx)
		})
		if !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("%s with a stale token: %v, want ErrLeaseLost", name, err)
		}
		view(t, b, func(tx store.Tx) error {
			if _, err := tx.Session("ses_stale_" + name); !core.IsNotFound(err) {
				t.Errorf("%s: the stale holder's transaction committed (%v)", name, err)
			}
			return nil
		})
	}
	got, err := getJob(t, b, id)
	if err != nil || got.Lease != jb.Lease || got.Sent != 0 || got.Attempts != 0 {
		t.Fatalf("the job changed under the stale holder: %+v, %v", got, err)
	}
	// The holder records its attempt (kept lease), then completes.
	jb.Sent++
	update(t, b, func(tx store.Tx) error { return tx.UpdateJob(jb, late) })
	update(t, b, func(tx store.Tx) error { return tx.CompleteJob(jb, late) })
	if _, err := getJob(t, a, id); !core.IsNotFound(err) {
		t.Fatalf("completed job: %v", err)
	}
	// Released: due at its own time again, and the token grows on.
	update(t, a, func(tx store.Tx) error {
		_, err := tx.AddJob(job("sync_session/ses_1", core.JobSyncSession, t0))
		return err
	})
	j1, err := claim(t, a, "sync_session/ses_1", ownerA, t0)
	if err != nil {
		t.Fatal(err)
	}
	j1.Failed("timeout", t0, time.Minute)
	update(t, a, func(tx store.Tx) error { return tx.ReleaseJob(j1, t0) })
	if ids := dueIDs(t, b, t0.Add(time.Minute)); len(ids) != 1 {
		t.Fatalf("a released job is due at its DueAt: %v", ids)
	}
	j2, err := claim(t, b, "sync_session/ses_1", ownerB, t0.Add(time.Minute))
	if err != nil || j2.Lease.Token <= 1 || j2.Attempts != 1 {
		t.Fatalf("claim after release: %+v, %v", j2, err)
	}
}

// A job written with its lease set is claimed by the transaction that
// creates it: nobody else can take it until that lease ends.
func testJobCreatedLeased(t *testing.T, open Open) {
	a, b := open(t)
	j := job("retry_charge/chg_1/0", core.JobRetryCharge, t0.Add(time.Minute))
	j.Lease = core.Lease{Owner: ownerA, Token: 1, Until: t0.Add(ttl)}
	update(t, a, func(tx store.Tx) error { _, err := tx.AddJob(j); return err })
	if _, err := claim(t, b, j.ID, ownerB, t0.Add(time.Minute)); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("claim of a job created leased: %v, want ErrLeaseHeld", err)
	}
	if ids := dueIDs(t, b, t0.Add(time.Minute)); len(ids) != 0 {
		t.Fatalf("a job created leased is due before its lease ends: %v", ids)
	}
	update(t, a, func(tx store.Tx) error { return tx.ReleaseJob(j, t0.Add(time.Second)) })
	if ids := dueIDs(t, b, t0.Add(time.Minute)); len(ids) != 1 {
		t.Fatalf("released: due at its DueAt: %v", ids)
	}
}

func testNamedLeases(t *testing.T, open Open) {
	a, b := open(t)
	const name = "create/ses_1"
	acquire := func(db store.Store, owner string, now time.Time) (core.Lease, error) {
		var l core.Lease
		err := db.Batch(func(tx store.Tx) error {
			var err error
			l, err = tx.AcquireLease(name, owner, now, ttl)
			return err
		})
		return l, err
	}
	// Both at once: one wins.
	var wg sync.WaitGroup
	var wins sync.Map
	for i, db := range []store.Store{a, b, a, b} {
		owner := []string{ownerA, ownerB}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l, err := acquire(db, owner, t0); err == nil {
				wins.Store(l, true)
			} else if !errors.Is(err, store.ErrLeaseHeld) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var held []core.Lease
	wins.Range(func(k, _ any) bool { held = append(held, k.(core.Lease)); return true })
	if len(held) != 1 {
		t.Fatalf("%d holders of one lease, want 1", len(held))
	}
	la := held[0]
	other := ownerB
	if la.Owner == ownerB {
		other = ownerA
	}
	lb, err := acquire(b, other, t0.Add(ttl))
	if err != nil {
		t.Fatalf("acquire after expiry: %v", err)
	}
	if err := a.Update(func(tx store.Tx) error { return tx.ReleaseLease(name, la) }); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("release by the stale holder: %v, want ErrLeaseLost", err)
	}
	update(t, b, func(tx store.Tx) error { return tx.ReleaseLease(name, lb) })
	if _, err := acquire(a, la.Owner, t0.Add(ttl)); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
}

// Two pollers find the same due sessions in read transactions and schedule
// them in their own writes, checking due-ness again in the write: every
// session ends with one job, moved one step.
func testConcurrentDueScans(t *testing.T, open Open) {
	a, b := open(t)
	const n = 30
	update(t, a, func(tx store.Tx) error {
		for i := range n {
			if err := tx.PutSession(session(fmt.Sprintf("ses_%02d", i), "shop", t0)); err != nil {
				return err
			}
		}
		return nil
	})
	now := t0.Add(5 * time.Minute)
	var mu sync.Mutex
	added := map[string]int{}
	var wg sync.WaitGroup
	for _, db := range []store.Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ids []string
			if err := db.View(func(tx store.Tx) error {
				var err error
				ids, err = tx.SessionsDue(now, 0)
				return err
			}); err != nil {
				t.Error(err)
				return
			}
			for _, id := range ids {
				var created bool
				err := db.Batch(func(tx store.Tx) error {
					created = false
					s, err := tx.Session(id)
					if err != nil {
						return err
					}
					if s.CheckAt.IsZero() || s.CheckAt.After(now) {
						return nil // another poller scheduled it
					}
					if created, err = tx.AddJob(&core.Job{ID: core.RereadJobID(id), Kind: core.JobRereadSession, SessionID: id, DueAt: now, CreatedAt: now}); err != nil {
						return err
					}
					s.CheckAt = now.Add(10 * time.Minute)
					return tx.PutSession(s)
				})
				if err != nil {
					t.Error(err)
					return
				}
				if created {
					mu.Lock()
					added[id]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(added) != n {
		t.Fatalf("%d sessions got a job, want %d", len(added), n)
	}
	for id, c := range added {
		if c != 1 {
			t.Errorf("session %s got %d jobs", id, c)
		}
	}
	var jobs int
	view(t, a, func(tx store.Tx) error {
		_, _, kinds, err := tx.Counts()
		jobs = kinds[core.JobRereadSession]
		return err
	})
	if jobs != n {
		t.Fatalf("%d re-read jobs stored, want %d", jobs, n)
	}
}

// Requests with one Idempotency-Key reach both processes at once; each
// takes the key in a read-write transaction if nobody has it: one owner.
func testOneIdempotencyOwner(t *testing.T, open Open) {
	a, b := open(t)
	var wins sync.Map
	var wg sync.WaitGroup
	for i := range 8 {
		db, owner := a, ownerA
		if i%2 == 1 {
			db, owner = b, ownerB
		}
		owner = fmt.Sprint(owner, "-", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var won bool
			err := db.Update(func(tx store.Tx) error {
				won = false
				if _, err := tx.Idempotency("shop", "key-1"); err == nil {
					return nil
				} else if !core.IsNotFound(err) {
					return err
				}
				won = true
				return tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop", Key: "key-1", RequestHash: []byte{1}, Owner: owner, CreatedAt: t0})
			})
			if err != nil {
				t.Error(err)
			}
			if won {
				wins.Store(owner, true)
			}
		}()
	}
	wg.Wait()
	var owners []string
	wins.Range(func(k, _ any) bool { owners = append(owners, k.(string)); return true })
	if len(owners) != 1 {
		t.Fatalf("owners of one key: %v, want one", owners)
	}
	view(t, b, func(tx store.Tx) error {
		r, err := tx.Idempotency("shop", "key-1")
		if err == nil && r.Owner != owners[0] {
			t.Errorf("stored owner %q, winner %q", r.Owner, owners[0])
		}
		return err
	})
}

// Klarna delivers one callback twice at once, to both processes: the
// de-duplication mark and the change commit together, so one is accepted.
func testSameCallbackTwice(t *testing.T, open Open) {
	a, b := open(t)
	update(t, a, func(tx store.Tx) error { return tx.PutSession(session("ses_1", "shop", t0)) })
	var accepted sync.Map
	var wg sync.WaitGroup
	for i, db := range []store.Store{a, b, a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ok bool
			err := db.Batch(func(tx store.Tx) error {
				ok = false
				seen, err := tx.SeenEvent("hpp-ses_1", "ev-1")
				if err != nil || seen {
					return err
				}
				s, err := tx.Session("ses_1")
				if err != nil {
					return err
				}
				s.History = append(s.History, core.Change{At: t0, Source: core.SourceCallback, Reason: "callback"})
				if err := tx.MarkEvent("hpp-ses_1", "ev-1", t0); err != nil {
					return err
				}
				ok = true
				return tx.PutSession(s)
			})
			if err != nil {
				t.Error(err)
			}
			if ok {
				accepted.Store(i, true)
			}
		}()
	}
	wg.Wait()
	n := 0
	accepted.Range(func(_, _ any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("callback accepted %d times, want once", n)
	}
	view(t, b, func(tx store.Tx) error {
		s, err := tx.Session("ses_1")
		if err == nil && len(s.History) != 1 {
			t.Errorf("session has %d callback entries, want 1", len(s.History))
		}
		return err
	})
}

// Klarna delivers different callbacks of one session to both processes at
// once; each records its change in the session's history and asks for the
// session's place_order job: no change is lost to another's write, and one
// job is made.
func testCallbacksToOneSession(t *testing.T, open Open) {
	a, b := open(t)
	update(t, a, func(tx store.Tx) error { return tx.PutSession(session("ses_1", "shop", t0)) })
	const n = 16
	var created sync.Map
	var wg sync.WaitGroup
	for i := range n {
		db := []store.Store{a, b}[i%2]
		event := fmt.Sprintf("ev-%02d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var added bool
			err := db.Batch(func(tx store.Tx) error {
				added = false
				seen, err := tx.SeenEvent("hpp-ses_1", event)
				if err != nil || seen {
					return err
				}
				s, err := tx.Session("ses_1")
				if err != nil {
					return err
				}
				if err := tx.MarkEvent("hpp-ses_1", event, t0); err != nil {
					return err
				}
				s.History = append(s.History, core.Change{At: t0, Source: core.SourceCallback, Reason: event})
				added, err = tx.AddJob(&core.Job{ID: core.PlaceOrderJobID("ses_1"), Kind: core.JobPlaceOrder, SessionID: "ses_1", DueAt: t0, CreatedAt: t0})
				if err != nil {
					return err
				}
				return tx.PutSession(s)
			})
			if err != nil {
				t.Error(err)
			}
			if added {
				created.Store(event, true)
			}
		}()
	}
	wg.Wait()
	var makers []string
	created.Range(func(k, _ any) bool { makers = append(makers, k.(string)); return true })
	if len(makers) != 1 {
		t.Errorf("place_order job created by %v, want one callback", makers)
	}
	view(t, b, func(tx store.Tx) error {
		if err := eachEventOnce(t, tx, n); err != nil {
			return err
		}
		if _, err := tx.Job(core.PlaceOrderJobID("ses_1")); err != nil {
			t.Errorf("place_order job: %v", err)
		}
		return nil
	})
}

// eachEventOnce checks that session ses_1's history holds each of the
// events ev-00 … ev-(n-1) exactly once (the callbacks of the concurrency
// cases record their event id as the history reason).
func eachEventOnce(t *testing.T, tx store.Tx, n int) error {
	t.Helper()
	s, err := tx.Session("ses_1")
	if err != nil {
		return err
	}
	got := map[string]int{}
	for _, c := range s.History {
		got[c.Reason]++
	}
	for i := range n {
		if ev := fmt.Sprintf("ev-%02d", i); got[ev] != 1 {
			t.Errorf("history holds %s %d times, want once (history %d entries)", ev, got[ev], len(s.History))
		}
	}
	return nil
}

// A slow holder records its result, with a session change, just before its
// lease expires, while another process takes the job over at the expiry and
// records its own: one of the two commits, never both, and the session
// carries only the winner's change.
func testFencedResultRacesTakeover(t *testing.T, open Open) {
	a, b := open(t)
	const rounds = 12
	for r := range rounds {
		sid := fmt.Sprintf("ses_%02d", r)
		id := core.PlaceOrderJobID(sid)
		update(t, a, func(tx store.Tx) error {
			if err := tx.PutSession(session(sid, "shop", t0)); err != nil {
				return err
			}
			_, err := tx.AddJob(job(id, core.JobPlaceOrder, t0))
			return err
		})
		ja, err := claim(t, a, id, ownerA, t0)
		if err != nil {
			t.Fatal(err)
		}
		// result records who placed the order, under the lease held.
		result := func(tx store.Tx, j *core.Job, who string, now time.Time) error {
			s, err := tx.Session(sid)
			if err != nil {
				return err
			}
			s.History = append(s.History, core.Change{At: now, Source: core.SourcePoller, Reason: who})
			if err := tx.PutSession(s); err != nil {
				return err
			}
			return tx.CompleteJob(j, now)
		}
		expiry := ja.Lease.Until
		var errA, errB error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			errA = a.Update(func(tx store.Tx) error { return result(tx, ja, ownerA, expiry.Add(-time.Nanosecond)) })
		}()
		go func() {
			defer wg.Done()
			errB = b.Update(func(tx store.Tx) error {
				jb, err := tx.ClaimJob(id, ownerB, expiry, ttl)
				if err != nil {
					return err
				}
				return result(tx, jb, ownerB, expiry)
			})
		}()
		wg.Wait()
		var winner string
		switch {
		case errA == nil && errB == nil:
			t.Fatalf("round %d: both the stale holder and the new one recorded a result", r)
		case errA == nil && core.IsNotFound(errB):
			winner = ownerA // completed first: nothing left to take over
		case errB == nil && errors.Is(errA, store.ErrLeaseLost):
			winner = ownerB
		default:
			t.Fatalf("round %d: holder %v, takeover %v", r, errA, errB)
		}
		view(t, b, func(tx store.Tx) error {
			s, err := tx.Session(sid)
			if err != nil {
				return err
			}
			if len(s.History) != 1 || s.History[0].Reason != winner {
				t.Errorf("round %d: history %+v, want only %s's result", r, s.History, winner)
			}
			if _, err := tx.Job(id); !core.IsNotFound(err) {
				t.Errorf("round %d: job after its result: %v", r, err)
			}
			return nil
		})
	}
}
