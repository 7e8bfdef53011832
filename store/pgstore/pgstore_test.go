package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/pgtest"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/pgstore"
	"github.com/jackc/pgx/v5/pgxpool"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// Replicas starting at once on an empty database: one applies the
// migrations, the others wait on the lock and find nothing to do.
func TestMigrateConcurrently(t *testing.T) {
	url := pgtest.DB(t)
	ctx := context.Background()
	var mu sync.Mutex
	applied := 0
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pool, err := pgxpool.New(ctx, url)
			if err != nil {
				t.Error(err)
				return
			}
			defer pool.Close()
			names, err := pgstore.Migrate(ctx, pool)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			applied += len(names)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if applied != pgstore.SchemaVersion() {
		t.Fatalf("%d migrations applied in all, want each of %d once", applied, pgstore.SchemaVersion())
	}
	db := open(t, url)
	if v, err := pgstore.Version(ctx, db.Pool()); err != nil || v != pgstore.SchemaVersion() {
		t.Fatalf("version %d, %v", v, err)
	}
	// A replica that must not migrate opens a current database.
	db2, err := pgstore.Open(ctx, url, pgstore.Options{NoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	db2.Close()
}

// A replica that must not migrate refuses a database behind its schema.
func TestNoMigrateRefusesOldSchema(t *testing.T) {
	_, err := pgstore.Open(context.Background(), pgtest.DB(t), pgstore.Options{NoMigrate: true})
	if err == nil {
		t.Fatal("opened an unmigrated database without migrating")
	}
}

func TestOpenBadURLDoesNotEchoIt(t *testing.T) {
	_, err := pgstore.Open(context.Background(), "postgres://u:s3cret@[::1:5432/x", pgstore.Options{})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v", err)
	}
}

// ClaimDueJobs on two replicas at once: every due job leased once, none of
// the jobs not yet due, and a lease that expires makes its job due again.
func TestClaimDueJobsSkipLocked(t *testing.T) {
	url := pgtest.DB(t)
	a, b := open(t, url), open(t, url)
	const n = 60
	if err := a.Update(func(tx store.Tx) error {
		for i := range n {
			j := &core.Job{ID: fmt.Sprintf("sync_session/ses_%02d", i), Kind: core.JobSyncSession, DueAt: t0.Add(time.Duration(i) * time.Millisecond)}
			if _, err := tx.AddJob(j); err != nil {
				return err
			}
		}
		_, err := tx.AddJob(&core.Job{ID: "sync_session/later", Kind: core.JobSyncSession, DueAt: t0.Add(time.Hour)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Second)
	var mu sync.Mutex
	got := map[string]string{}
	var wg sync.WaitGroup
	for g := range 6 {
		db := []*pgstore.DB{a, b}[g%2]
		owner := fmt.Sprint("own_", g)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				jobs, err := db.ClaimDueJobs(owner, now, time.Minute, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(jobs) == 0 {
					return
				}
				mu.Lock()
				for _, j := range jobs {
					if prev, ok := got[j.ID]; ok {
						t.Errorf("job %s claimed by %s and %s", j.ID, prev, owner)
					}
					got[j.ID] = owner
					if j.Lease.Owner != owner || !j.Lease.Until.Equal(now.Add(time.Minute)) || j.Lease.Token != 1 {
						t.Errorf("job %s lease %+v", j.ID, j.Lease)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("%d jobs claimed, want %d", len(got), n)
	}
	if _, ok := got["sync_session/later"]; ok {
		t.Fatal("a job not due was claimed")
	}
	// The leases expire: the jobs are due again, with a larger token, and
	// the first holder's completion is refused.
	later := now.Add(time.Minute)
	again, err := b.ClaimDueJobs("own_x", later, time.Minute, 1000)
	if err != nil || len(again) != n {
		t.Fatalf("after expiry claimed %d, %v; want %d", len(again), err, n)
	}
	stale := *again[0]
	stale.Lease = core.Lease{Owner: got[stale.ID], Token: 1, Until: now.Add(time.Minute)}
	err = a.Update(func(tx store.Tx) error { return tx.CompleteJob(&stale, later) })
	if !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale completion: %v, want ErrLeaseLost", err)
	}
	if again[0].Lease.Token != 2 {
		t.Fatalf("token after expiry %d, want 2", again[0].Lease.Token)
	}
	if err := a.Update(func(tx store.Tx) error { return tx.CompleteJob(again[0], later) }); err != nil {
		t.Fatal(err)
	}
}

// ClaimDueJobsOf takes the due jobs of some kinds (or all but some), and
// says when the next of them falls due when it took fewer than asked.
func TestClaimDueJobsOfKinds(t *testing.T) {
	db := open(t, pgtest.DB(t))
	if err := db.Update(func(tx store.Tx) error {
		for _, j := range []*core.Job{
			{ID: "place_order/ses_1", Kind: core.JobPlaceOrder, DueAt: t0},
			{ID: "reread_session/ses_1", Kind: core.JobRereadSession, DueAt: t0},
			{ID: "reread_session/ses_2", Kind: core.JobRereadSession, DueAt: t0.Add(time.Millisecond)},
			{ID: "reread_session/ses_3", Kind: core.JobRereadSession, DueAt: t0.Add(time.Hour)},
			{ID: "deliver_event/msg_1", Kind: core.JobDeliverEvent, DueAt: t0},
			{ID: "place_order/ses_9", Kind: core.JobPlaceOrder, DueAt: t0.Add(2 * time.Hour)},
		} {
			if _, err := tx.AddJob(j); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Second)
	routine := []core.JobKind{core.JobRereadSession}
	ids := func(jobs []*core.Job) (out []string) {
		for _, j := range jobs {
			out = append(out, j.ID)
		}
		return out
	}
	jobs, next, err := db.ClaimDueJobsOf(routine, false, "own_a", now, time.Minute, 1)
	if err != nil || len(jobs) != 1 || jobs[0].ID != "reread_session/ses_1" || !next.IsZero() {
		t.Fatalf("first routine job: %v, next %v, %v", ids(jobs), next, err)
	}
	jobs, next, err = db.ClaimDueJobsOf(routine, false, "own_a", now, time.Minute, 5)
	// Next: the first lease's expiry, which makes its job due again.
	if err != nil || len(jobs) != 1 || jobs[0].ID != "reread_session/ses_2" || !next.Equal(now.Add(time.Minute)) {
		t.Fatalf("rest of the routine jobs: %v, next %v, %v", ids(jobs), next, err)
	}
	others := []core.JobKind{core.JobRereadSession, core.JobDeliverEvent}
	// A lease longer than the wait for the next one of these kinds.
	jobs, next, err = db.ClaimDueJobsOf(others, true, "own_b", now, 3*time.Hour, 5)
	if err != nil || len(jobs) != 1 || jobs[0].ID != "place_order/ses_1" || !next.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("the other kinds: %v, next %v, %v", ids(jobs), next, err)
	}
	if jobs[0].Lease.Owner != "own_b" || !jobs[0].Lease.Until.Equal(now.Add(3*time.Hour)) {
		t.Fatalf("lease %+v", jobs[0].Lease)
	}
}

// A transaction that read a job to write it back (an operator's retry)
// holds it against batch claims until it commits: the claim passes over it
// instead of leasing it under the transaction, whose write would then undo
// the lease.
func TestBatchClaimPassesOverAJobBeingRewritten(t *testing.T) {
	url := pgtest.DB(t)
	a, b := open(t, url), open(t, url)
	const id = "place_order/ses_1"
	if err := a.Update(func(tx store.Tx) error {
		_, err := tx.AddJob(&core.Job{ID: id, Kind: core.JobPlaceOrder, DueAt: t0})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	read, write := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		first := true
		done <- a.Update(func(tx store.Tx) error {
			j, err := tx.Job(id)
			if err != nil {
				return err
			}
			if first {
				first = false
				close(read)
				<-write
			}
			j.DueAt = t0.Add(time.Second)
			return tx.PutJob(j)
		})
	}()
	<-read
	jobs, err := b.ClaimDueJobs("own_b", t0.Add(time.Minute), time.Minute, 10)
	close(write)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err != nil || len(jobs) != 0 {
		t.Fatalf("claimed %d jobs (%v) while a transaction rewrote the only one", len(jobs), err)
	}
	jobs, err = b.ClaimDueJobs("own_b", t0.Add(time.Minute), time.Minute, 10)
	if err != nil || len(jobs) != 1 || !jobs[0].DueAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("after the rewrite: %d jobs, %v", len(jobs), err)
	}
}

// Listings page newest first with cursors, filter by status, and every
// record's columns agree with it afterwards (Check).
func TestListAndDerivedColumns(t *testing.T) {
	db := open(t, pgtest.DB(t))
	err := db.Update(func(tx store.Tx) error {
		for i := range 7 {
			s := &core.Session{ID: fmt.Sprintf("ses_%d", i), Storefront: "shop", Status: core.SessionPending,
				HPPSessionID: fmt.Sprint("hpp_", i), CreatedAt: t0.Add(time.Duration(i) * time.Second), CheckAt: t0.Add(time.Duration(i) * time.Minute)}
			if i%3 == 0 {
				s.Status, s.AuthorizedAt = core.SessionAuthorized, t0.Add(time.Duration(10-i)*time.Second)
			}
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	cursor := ""
	for page := 0; ; page++ {
		var list []*core.Session
		err := db.View(func(tx store.Tx) error {
			var err error
			list, cursor, err = tx.ListSessions(core.ListQuery{Storefront: "shop", Limit: 3, Cursor: cursor})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			ids = append(ids, s.ID)
		}
		if cursor == "" {
			break
		}
		if page > 5 {
			t.Fatal("listing does not end")
		}
	}
	if fmt.Sprint(ids) != "[ses_6 ses_5 ses_4 ses_3 ses_2 ses_1 ses_0]" {
		t.Fatalf("listed %v", ids)
	}
	err = db.View(func(tx store.Tx) error {
		list, next, err := tx.ListSessions(core.ListQuery{Storefront: "shop", Status: string(core.SessionAuthorized)})
		if err != nil || len(list) != 3 || next != "" || list[0].ID != "ses_6" {
			t.Errorf("authorized: %d, %q, %v", len(list), next, err)
		}
		if _, _, err := tx.ListSessions(core.ListQuery{Storefront: "shop", Cursor: "!!"}); err == nil {
			t.Error("a bad cursor was accepted")
		}
		oldest, ok, err := tx.OldestAuthorized()
		if err != nil || !ok || !oldest.Equal(t0.Add(4*time.Second)) {
			t.Errorf("oldest authorized %v %v %v", oldest, ok, err)
		}
		n, first, err := tx.RereadBacklog(t0.Add(150 * time.Second))
		if err != nil || n != 3 || !first.Equal(t0) {
			t.Errorf("backlog %d %v %v", n, first, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another session taking an HPP session id is a conflict, and the
	// transaction stays usable after it.
	err = db.Update(func(tx store.Tx) error {
		err := tx.PutSession(&core.Session{ID: "ses_x", Storefront: "shop", Status: core.SessionPending, HPPSessionID: "hpp_1", CreatedAt: t0})
		var ce *core.Error
		if !errors.As(err, &ce) || ce.Code != core.CodeConflict {
			t.Errorf("duplicate HPP session id: %v", err)
		}
		return tx.PutSession(&core.Session{ID: "ses_y", Storefront: "shop", Status: core.SessionPending, HPPSessionID: "hpp_y", CreatedAt: t0})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// The id secret is made once and is the same for every replica.
func TestIDSecretShared(t *testing.T) {
	url := pgtest.DB(t)
	a, b := open(t, url), open(t, url)
	sa, err := a.IDSecret()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.IDSecret()
	if err != nil || string(sa) != string(sb) || len(sa) != 32 {
		t.Fatalf("secrets differ or are short: %x %x %v", sa, sb, err)
	}
}

// A closed store says so.
func TestClosed(t *testing.T) {
	db := open(t, pgtest.DB(t))
	db.Close()
	if err := db.View(func(store.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("view after close: %v", err)
	}
}

// Names and keys may hold any bytes, a NUL included (lease names join a
// storefront and a key with one; a customer token or Idempotency-Key is the
// caller's), as on bbolt.
func TestKeysWithNUL(t *testing.T) {
	db := open(t, pgtest.DB(t))
	const name, key, tok = "idempotency/shop\x00k\x00", "k\x00ey", "tok\x00en"
	err := db.Update(func(tx store.Tx) error {
		if _, err := tx.AcquireLease(name, "own_a", t0, time.Minute); err != nil {
			return err
		}
		if err := tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop", Key: key, CreatedAt: t0}); err != nil {
			return err
		}
		if err := tx.PutToken(&core.TokenInfo{Storefront: "shop", CustomerToken: tok}); err != nil {
			return err
		}
		return tx.SetTokenOwner(tok, "shop")
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx store.Tx) error {
		if l, err := tx.Lease(name); err != nil || l.Owner != "own_a" {
			t.Errorf("lease %+v, %v", l, err)
		}
		if _, err := tx.Lease("idempotency/shop"); err != nil {
			return err
		}
		if r, err := tx.Idempotency("shop", key); err != nil || r.Key != key {
			t.Errorf("idempotency %+v, %v", r, err)
		}
		if _, err := tx.Token("shop", tok); err != nil {
			t.Errorf("token: %v", err)
		}
		if o, err := tx.TokenOwner(tok); err != nil || o != "shop" {
			t.Errorf("owner %q, %v", o, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
