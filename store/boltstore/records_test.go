package boltstore

import (
	"errors"
	"fmt"
	"github.com/hppd/hppd/store"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
)

func TestCharges(t *testing.T) {
	db := openTest(t)
	mustUpdate(t, db, func(tx *Tx) error {
		for i := 0; i < 7; i++ {
			c := simpleCharge(fmt.Sprint("c", i), "shop", t0.Add(time.Duration(i)*time.Minute))
			c.Request = []byte(`{"order_amount":100}`)
			if err := tx.PutCharge(c); err != nil {
				return err
			}
		}
		return tx.PutCharge(simpleCharge("other", "shop-2", t0))
	})
	mustUpdate(t, db, func(tx *Tx) error {
		c, err := tx.Charge("c3")
		if err != nil {
			return err
		}
		c.SetStatus(core.ChargeCharged, core.SourceAPI, "", t0.Add(time.Hour))
		if err := tx.PutCharge(c); err != nil {
			return err
		}
		c.Request[0] = 'X' // after Put: must not reach the store
		return nil
	})
	mustView(t, db, func(tx *Tx) error {
		c, err := tx.Charge("c3")
		if err != nil {
			return err
		}
		if c.Status != core.ChargeCharged || string(c.Request) != `{"order_amount":100}` {
			t.Errorf("charge %s %q", c.Status, c.Request)
		}
		c.Request[0] = 'Y'
		again, _ := tx.Charge("c3")
		if again.Request[0] != '{' {
			t.Error("mutating a returned charge changed the next read")
		}
		if _, err := tx.Charge("nope"); err != core.ErrNotFound {
			t.Errorf("unknown charge: %v", err)
		}
		list, next, err := tx.ListCharges(core.ListQuery{Storefront: "shop", Limit: 4})
		if err != nil || len(list) != 4 || next == "" || list[0].ID != "c6" {
			t.Fatalf("page 1: %d, %q, %v", len(list), next, err)
		}
		list, next, err = tx.ListCharges(core.ListQuery{Storefront: "shop", Limit: 4, Cursor: next})
		if err != nil || len(list) != 3 || next != "" || list[2].ID != "c0" {
			t.Fatalf("page 2: %d, %q, %v", len(list), next, err)
		}
		list, _, err = tx.ListCharges(core.ListQuery{Storefront: "shop", Status: "charged"})
		if err != nil || len(list) != 1 || list[0].ID != "c3" {
			t.Errorf("charged: %v %v", list, err)
		}
		if _, _, err := tx.ListCharges(core.ListQuery{Storefront: "shop", Status: "pending_x"}); core.ErrorCodeOf(err) != core.CodeInvalid {
			t.Errorf("bad status: %v", err)
		}
		_, charges, _, err := tx.Counts()
		if err != nil || charges[core.ChargePending] != 7 || charges[core.ChargeCharged] != 1 {
			t.Errorf("counts %v %v", charges, err)
		}
		n := 0
		if err := tx.AllCharges(func(*core.Charge) error { n++; return nil }); err != nil || n != 8 {
			t.Errorf("AllCharges: %d %v", n, err)
		}
		return nil
	})
}

func job(id string, kind core.JobKind, due time.Time) *core.Job {
	return &core.Job{ID: id, Kind: kind, SessionID: "s", DueAt: due, CreatedAt: t0, Request: []byte(`{"a":1}`), IdempotencyKey: "k-" + id}
}

func TestJobs(t *testing.T) {
	db := openTest(t)
	mustView(t, db, func(tx *Tx) error {
		if _, ok := tx.NextJobDue(); ok {
			t.Error("NextJobDue on an empty store")
		}
		return nil
	})
	mustUpdate(t, db, func(tx *Tx) error {
		for _, j := range []*core.Job{
			job("j1", core.JobPlaceOrder, t0.Add(3*time.Minute)),
			job("j2", core.JobSyncSession, t0.Add(1*time.Minute)),
			job("j3", core.JobSyncSession, t0.Add(2*time.Minute)),
			job("j4", core.JobDeliverEvent, t0.Add(time.Hour)),
		} {
			if ok, err := tx.AddJob(j); err != nil || !ok {
				return fmt.Errorf("add %s: %v %v", j.ID, ok, err)
			}
		}
		// A second add of j1 changes nothing.
		dup := job("j1", core.JobPlaceOrder, t0)
		dup.IdempotencyKey = "other"
		if ok, err := tx.AddJob(dup); err != nil || ok {
			return fmt.Errorf("second add: %v %v", ok, err)
		}
		return nil
	})
	dueIDs := func(now time.Time, limit int) []string {
		var ids []string
		mustView(t, db, func(tx *Tx) error {
			jobs, err := tx.JobsDue(now, limit)
			for _, j := range jobs {
				ids = append(ids, j.ID)
			}
			return err
		})
		return ids
	}
	if got := dueIDs(t0.Add(10*time.Minute), 0); !slices.Equal(got, []string{"j2", "j3", "j1"}) {
		t.Errorf("due %v", got)
	}
	if got := dueIDs(t0.Add(10*time.Minute), 2); !slices.Equal(got, []string{"j2", "j3"}) {
		t.Errorf("due with limit %v", got)
	}
	mustView(t, db, func(tx *Tx) error {
		j, err := tx.Job("j1")
		if err != nil || j.IdempotencyKey != "k-j1" || !j.DueAt.Equal(t0.Add(3*time.Minute)) {
			t.Errorf("j1 after duplicate add: %+v %v", j, err)
		}
		if at, ok := tx.NextJobDue(); !ok || !at.Equal(t0.Add(time.Minute)) {
			t.Errorf("NextJobDue %v %v", at, ok)
		}
		_, _, jobs, _ := tx.Counts()
		if jobs[core.JobPlaceOrder] != 1 || jobs[core.JobSyncSession] != 2 || jobs[core.JobDeliverEvent] != 1 || jobs[core.JobRetryCharge] != 0 {
			t.Errorf("job counts %v", jobs)
		}
		return nil
	})
	// Reschedule j2 after a failure, delete j3, delete something absent.
	mustUpdate(t, db, func(tx *Tx) error {
		j, err := tx.Job("j2")
		if err != nil {
			return err
		}
		j.Failed("timeout", t0.Add(time.Minute), 30*time.Minute)
		if err := tx.PutJob(j); err != nil {
			return err
		}
		if err := tx.DeleteJob("j3"); err != nil {
			return err
		}
		return tx.DeleteJob("absent")
	})
	if got := dueIDs(t0.Add(10*time.Minute), 0); !slices.Equal(got, []string{"j1"}) {
		t.Errorf("due after reschedule %v", got)
	}
	if got := dueIDs(t0.Add(2*time.Hour), 0); !slices.Equal(got, []string{"j1", "j2", "j4"}) {
		t.Errorf("due later %v", got)
	}
	mustView(t, db, func(tx *Tx) error {
		if _, err := tx.Job("j3"); err != core.ErrNotFound {
			t.Errorf("deleted job: %v", err)
		}
		j, _ := tx.Job("j2")
		if j.Attempts != 1 || j.LastError != "timeout" {
			t.Errorf("rescheduled job %+v", j)
		}
		var ids []string
		if err := tx.AllJobs(func(j *core.Job) error { ids = append(ids, j.ID); return nil }); err != nil {
			return err
		}
		if !slices.Equal(ids, []string{"j1", "j2", "j4"}) {
			t.Errorf("AllJobs %v", ids)
		}
		return nil
	})
	// PutJob changing the kind moves the counter.
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutJob(job("j4", core.JobRetryCharge, t0)) })
	mustView(t, db, func(tx *Tx) error {
		_, _, jobs, _ := tx.Counts()
		if jobs[core.JobDeliverEvent] != 0 || jobs[core.JobRetryCharge] != 1 {
			t.Errorf("job counts after kind change %v", jobs)
		}
		return nil
	})
	if err := db.update(func(tx *Tx) error { _, err := tx.AddJob(&core.Job{ID: "x"}); return err }); core.ErrorCodeOf(err) != core.CodeInvalid {
		t.Errorf("job without kind: %v", err)
	}
}

// However many transactions race to add the same job, one wins.
func TestAddJobExactlyOnce(t *testing.T) {
	for _, mode := range []string{"Batch", "Update"} {
		t.Run(mode, func(t *testing.T) {
			db := openTest(t)
			run := db.Batch
			if mode == "Update" {
				run = db.Update
			}
			const n = 50
			var wins atomic.Int32
			var winner atomic.Value
			var wg sync.WaitGroup
			start := make(chan struct{})
			for g := 0; g < n; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					j := job(core.PlaceOrderJobID("s1"), core.JobPlaceOrder, t0)
					j.IdempotencyKey = fmt.Sprint("writer-", g)
					var inserted bool
					err := run(func(tx store.Tx) error {
						var err error
						inserted, err = tx.AddJob(j)
						return err
					})
					if err != nil {
						t.Error(err)
						return
					}
					if inserted {
						wins.Add(1)
						winner.Store(j.IdempotencyKey)
					}
				}()
			}
			close(start)
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("%d inserts won, want 1", wins.Load())
			}
			mustView(t, db, func(tx *Tx) error {
				j, err := tx.Job(core.PlaceOrderJobID("s1"))
				if err != nil {
					return err
				}
				if j.IdempotencyKey != winner.Load() {
					t.Errorf("stored job is %s, the winner was %s", j.IdempotencyKey, winner.Load())
				}
				_, _, jobs, _ := tx.Counts()
				if jobs[core.JobPlaceOrder] != 1 {
					t.Errorf("place_order count %d", jobs[core.JobPlaceOrder])
				}
				return nil
			})
		})
	}
}

// Batch under concurrency: every successful call is committed, a failing
// call's writes are not, and each caller gets its own error.
func TestBatchConcurrent(t *testing.T) {
	db := openTest(t)
	const n = 300
	errFail := errors.New("refused")
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("s%03d", i)
			errs[i] = db.Batch(func(tx store.Tx) error {
				if i%7 == 0 {
					// Fails before writing.
					if _, err := tx.Session(id); !core.IsNotFound(err) {
						return err
					}
					return fmt.Errorf("%s: %w", id, errFail)
				}
				if err := tx.MarkEvent("hpp-"+id, "ev", t0); err != nil {
					return err
				}
				if err := tx.PutSession(simpleSession(id, "shop", t0)); err != nil {
					return err
				}
				if i%25 == 0 {
					// Fails after writing: its writes must be rolled back.
					return fmt.Errorf("%s: %w", id, errFail)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	want := 0
	mustView(t, db, func(tx *Tx) error {
		for i, err := range errs {
			id := fmt.Sprintf("s%03d", i)
			fails := i%7 == 0 || i%25 == 0
			if fails != (err != nil) || (err != nil && (!errors.Is(err, errFail) || !strings.HasPrefix(err.Error(), id+":"))) {
				t.Errorf("call %d: error %v", i, err)
			}
			_, getErr := tx.Session(id)
			seen, _ := tx.SeenEvent("hpp-"+id, "ev")
			if fails != core.IsNotFound(getErr) || fails == seen {
				t.Errorf("call %d (fails %v): session %v, event seen %v", i, fails, getErr, seen)
			}
			if !fails {
				want++
			}
		}
		sessions, _, _, _ := tx.Counts()
		if sessions[core.SessionPending] != want {
			t.Errorf("pending count %d, want %d", sessions[core.SessionPending], want)
		}
		return nil
	})
}

func TestEvents(t *testing.T) {
	db := openTest(t)
	mustUpdate(t, db, func(tx *Tx) error {
		if seen, err := tx.SeenEvent("hpp-1", "e1"); err != nil || seen {
			return fmt.Errorf("unseen event: %v %v", seen, err)
		}
		for i := 0; i < 10; i++ {
			if err := tx.MarkEvent("hpp-1", fmt.Sprint("e", i), t0.Add(time.Duration(i)*time.Minute)); err != nil {
				return err
			}
		}
		// Marking again keeps the first time (so pruning is unaffected).
		if err := tx.MarkEvent("hpp-1", "e0", t0.Add(time.Hour)); err != nil {
			return err
		}
		if seen, err := tx.SeenEvent("hpp-1", "e1"); err != nil || !seen {
			return fmt.Errorf("marked event: %v %v", seen, err)
		}
		// Event ids are per HPP session.
		if seen, _ := tx.SeenEvent("hpp-2", "e1"); seen {
			return errors.New("e1 of hpp-2 seen")
		}
		_, err := tx.SeenEvent("", "e1")
		if core.ErrorCodeOf(err) != core.CodeInvalid {
			return fmt.Errorf("empty hpp id: %v", err)
		}
		return nil
	})
	prune := func(before time.Duration, limit int) int {
		var n int
		mustUpdate(t, db, func(tx *Tx) error {
			var err error
			n, err = tx.PruneEvents(t0.Add(before), limit)
			return err
		})
		return n
	}
	if n := prune(5*time.Minute, 2); n != 2 {
		t.Errorf("pruned %d with limit 2", n)
	}
	if n := prune(5*time.Minute, 0); n != 3 {
		t.Errorf("pruned %d more", n)
	}
	if n := prune(5*time.Minute, 0); n != 0 {
		t.Errorf("pruned %d again", n)
	}
	mustView(t, db, func(tx *Tx) error {
		for i := 0; i < 10; i++ {
			seen, err := tx.SeenEvent("hpp-1", fmt.Sprint("e", i))
			if err != nil || seen != (i >= 5) {
				t.Errorf("e%d seen %v, %v", i, seen, err)
			}
		}
		return nil
	})
}

func TestIdempotencyRecords(t *testing.T) {
	db := openTest(t)
	rec := &core.IdempotencyRecord{Storefront: "shop", Key: "k1", RequestHash: []byte{1, 2, 3}, Status: 201, Body: []byte(`{"id":"s1"}`), Done: true, CreatedAt: t0}
	mustUpdate(t, db, func(tx *Tx) error {
		if _, err := tx.Idempotency("shop", "k1"); err != core.ErrNotFound {
			return fmt.Errorf("before put: %v", err)
		}
		return tx.PutIdempotency(rec)
	})
	mustView(t, db, func(tx *Tx) error {
		got, err := tx.Idempotency("shop", "k1")
		if err != nil || jsonOf(t, got) != jsonOf(t, rec) {
			t.Errorf("got %+v %v", got, err)
		}
		if _, err := tx.Idempotency("shop-2", "k1"); err != core.ErrNotFound {
			t.Errorf("other storefront: %v", err)
		}
		return nil
	})
	// Keys are storefront ‖ 0x00 ‖ key: a storefront name with a NUL must
	// not reach another storefront's keys.
	mustUpdate(t, db, func(tx *Tx) error {
		return tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "a", Key: "b\x00c", CreatedAt: t0})
	})
	mustView(t, db, func(tx *Tx) error {
		if _, err := tx.Idempotency("a", "b\x00c"); err != nil {
			t.Errorf("own key: %v", err)
		}
		if _, err := tx.Idempotency("a\x00b", "c"); err != core.ErrNotFound {
			t.Errorf("read through a NUL storefront: %v", err)
		}
		return nil
	})
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.DeleteIdempotency("shop", "k1"); err != nil {
			return err
		}
		return tx.DeleteIdempotency("shop", "never")
	})
	mustView(t, db, func(tx *Tx) error {
		if _, err := tx.Idempotency("shop", "k1"); err != core.ErrNotFound {
			t.Errorf("after delete: %v", err)
		}
		return nil
	})
}

func TestTokens(t *testing.T) {
	db := openTest(t)
	const secretToken = "krn:partner:eu1:test:identity:customer-token:0123456789"
	tok := &core.TokenInfo{Storefront: "shop", CustomerToken: secretToken, LastChargeID: "c1", LastOutcome: core.ChargeFallback, LastChargeAt: t0}
	mustUpdate(t, db, func(tx *Tx) error {
		if _, err := tx.Token("shop", secretToken); err != core.ErrNotFound {
			return fmt.Errorf("before put: %v", err)
		}
		return tx.PutToken(tok)
	})
	mustView(t, db, func(tx *Tx) error {
		got, err := tx.Token("shop", secretToken)
		if err != nil || jsonOf(t, got) != jsonOf(t, tok) {
			t.Errorf("got %+v %v", got, err)
		}
		if _, err := tx.Token("shop-2", secretToken); err != core.ErrNotFound {
			t.Errorf("other storefront: %v", err)
		}
		return nil
	})
	// Errors never carry the token.
	err := db.update(func(tx *Tx) error {
		return tx.PutToken(&core.TokenInfo{Storefront: "bad\x00shop", CustomerToken: secretToken})
	})
	if err == nil || strings.Contains(err.Error(), secretToken) {
		t.Errorf("error %v", err)
	}
	err = db.view(func(tx *Tx) error { return tx.PutToken(tok) })
	if err == nil || strings.Contains(err.Error(), secretToken) {
		t.Errorf("error %v", err)
	}
}
