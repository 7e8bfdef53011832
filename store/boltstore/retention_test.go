package boltstore

import (
	"errors"
	"fmt"
	"github.com/hppd/hppd/store"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
)

const day = 24 * time.Hour

// finalSession is simpleSession moved to status at updated.
func finalSession(id string, status core.SessionStatus, created, updated time.Time) *core.Session {
	s := simpleSession(id, "shop", created)
	s.Status, s.UpdatedAt, s.CheckAt = status, updated, time.Time{}
	return s
}

func finalCharge(id string, status core.ChargeStatus, created, updated time.Time) *core.Charge {
	c := simpleCharge(id, "shop", created)
	c.Status, c.UpdatedAt = status, updated
	return c
}

// pruneAll runs p until a run deletes nothing and returns the sum.
func pruneAll(t *testing.T, p *Pruner, now time.Time) store.PruneResult {
	t.Helper()
	var total store.PruneResult
	for i := 0; ; i++ {
		r, err := p.Run(now)
		if err != nil {
			t.Fatalf("prune: %v", err)
		}
		total.Add(r)
		if r.Total() == 0 {
			return total
		}
		if i > 1000 {
			t.Fatal("pruning does not end")
		}
	}
}

func TestPruneRetention(t *testing.T) {
	db := openTest(t)
	old, now := t0, t0.Add(200*day)
	recent := now.Add(-10 * day)
	sessions := []*core.Session{
		finalSession("ses_old_placed", core.SessionOrderPlaced, old, old.Add(time.Hour)),
		finalSession("ses_old_cancelled", core.SessionCancelled, old, old.Add(time.Minute)),
		finalSession("ses_old_due", core.SessionExpired, old, old.Add(47*time.Hour)),
		finalSession("ses_old_event", core.SessionOrderPlaced, old, old.Add(time.Hour)), // undelivered storefront event
		finalSession("ses_old_sync", core.SessionFailed, old, old.Add(time.Hour)),       // a job derived from its id
		finalSession("ses_old_touched", core.SessionOrderPlaced, old, recent),           // old, but updated lately
		finalSession("ses_recent", core.SessionOrderPlaced, recent, recent),
		finalSession("ses_fallback", core.SessionCancelled, old, old.Add(time.Hour)), // its charge waits on it
		simpleSession("ses_old_pending", "shop", old),                                // not final
	}
	sessions[2].CheckAt = old.Add(48 * time.Hour) // a due entry left on a final session
	sessions[7].ChargeID = "chg_waiting"
	charges := []*core.Charge{
		finalCharge("chg_old_charged", core.ChargeCharged, old, old.Add(time.Second)),
		finalCharge("chg_old_failed", core.ChargeFailed, old, old.Add(time.Hour)),
		finalCharge("chg_old_retry", core.ChargeFailed, old, old.Add(time.Hour)),
		finalCharge("chg_old_shared", core.ChargeCharged, old, old.Add(time.Hour)),
		finalCharge("chg_recent", core.ChargeCharged, recent, recent),
		finalCharge("chg_waiting", core.ChargeNeedsCustomer, old, old),
	}
	charges[3].CustomerToken = "tok-chg_recent" // deleted, but its token is still in use
	mustUpdate(t, db, func(tx *Tx) error {
		for _, s := range sessions {
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		for _, c := range charges {
			if err := tx.PutCharge(c); err != nil {
				return err
			}
			if err := tx.PutToken(&core.TokenInfo{Storefront: "shop", CustomerToken: c.CustomerToken, LastChargeID: c.ID, LastChargeAt: c.CreatedAt}); err != nil {
				return err
			}
		}
		jobs := []*core.Job{
			{ID: "deliver_event/msg_1", Kind: core.JobDeliverEvent, SessionID: "ses_old_event", Storefront: "shop", DueAt: now},
			{ID: core.SyncJobID("ses_old_sync"), Kind: core.JobSyncSession, SessionID: "ses_old_sync", DueAt: now},
			{ID: core.RetryChargeJobID("chg_old_retry", 1), Kind: core.JobRetryCharge, ChargeID: "chg_old_retry", DueAt: now},
		}
		for _, j := range jobs {
			if _, err := tx.AddJob(j); err != nil {
				return err
			}
		}
		// Idempotency records: one past the TTL, one inside it.
		if err := tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop", Key: "old-key", Done: true, Status: 201, CreatedAt: now.Add(-25 * time.Hour)}); err != nil {
			return err
		}
		if err := tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop", Key: "new-key", Done: true, Status: 201, CreatedAt: now.Add(-23 * time.Hour)}); err != nil {
			return err
		}
		// Callback marks: one past Klarna's retry window, one inside it.
		if err := tx.MarkEvent("hpp-1", "ev-old", now.Add(-73*time.Hour)); err != nil {
			return err
		}
		return tx.MarkEvent("hpp-1", "ev-new", now.Add(-71*time.Hour))
	})

	p := db.NewPruner(store.PruneConfig{Retention: 180 * day, IdempotencyTTL: 24 * time.Hour})
	got := pruneAll(t, p, now)
	want := store.PruneResult{Sessions: 3, Charges: 3, Tokens: 2, Idempotency: 1, Events: 1}
	got.Txs = 0
	if got != want {
		t.Fatalf("pruned %+v, want %+v", got, want)
	}

	gone := map[string]bool{"ses_old_placed": true, "ses_old_cancelled": true, "ses_old_due": true, "chg_old_charged": true, "chg_old_failed": true, "chg_old_shared": true}
	mustView(t, db, func(tx *Tx) error {
		for _, s := range sessions {
			_, err := tx.Session(s.ID)
			if gone[s.ID] != core.IsNotFound(err) {
				t.Errorf("session %s: deleted %v, want %v (err %v)", s.ID, core.IsNotFound(err), gone[s.ID], err)
			}
			_, errHPP := tx.SessionIDByHPP(s.HPPSessionID)
			_, errKP := tx.SessionIDByKP(s.KPSessionID)
			if gone[s.ID] != core.IsNotFound(errHPP) || gone[s.ID] != core.IsNotFound(errKP) {
				t.Errorf("session %s: HPP/KP index entries: %v, %v", s.ID, errHPP, errKP)
			}
		}
		for _, c := range charges {
			_, err := tx.Charge(c.ID)
			if gone[c.ID] != core.IsNotFound(err) {
				t.Errorf("charge %s: deleted %v, want %v (err %v)", c.ID, core.IsNotFound(err), gone[c.ID], err)
			}
		}
		for tok, kept := range map[string]bool{"tok-chg_old_charged": false, "tok-chg_old_failed": false, "tok-chg_recent": true, "tok-chg_old_retry": true, "tok-chg_waiting": true} {
			if _, err := tx.Token("shop", tok); core.IsNotFound(err) == kept {
				t.Errorf("token %s: kept %v, want %v", tok, !core.IsNotFound(err), kept)
			}
		}
		due, err := tx.SessionsDue(now, 0)
		if err != nil || len(due) != 1 || due[0] != "ses_old_pending" {
			t.Errorf("due sessions %v, %v", due, err)
		}
		list, _, err := tx.ListSessions(core.ListQuery{Storefront: "shop", Limit: 100})
		if err != nil || len(list) != len(sessions)-3 {
			t.Errorf("listed %d sessions, want %d (%v)", len(list), len(sessions)-3, err)
		}
		cl, _, err := tx.ListCharges(core.ListQuery{Storefront: "shop", Limit: 100})
		if err != nil || len(cl) != len(charges)-3 {
			t.Errorf("listed %d charges, want %d (%v)", len(cl), len(charges)-3, err)
		}
		ss, cs, _, err := tx.Counts()
		if err != nil || ss[core.SessionOrderPlaced] != 3 || ss[core.SessionCancelled] != 1 || ss[core.SessionExpired] != 0 || cs[core.ChargeCharged] != 1 || cs[core.ChargeFailed] != 1 {
			t.Errorf("counts %v %v %v", ss, cs, err)
		}
		if _, err := tx.Idempotency("shop", "old-key"); !core.IsNotFound(err) {
			t.Errorf("idempotency record past its TTL: %v", err)
		}
		if _, err := tx.Idempotency("shop", "new-key"); err != nil {
			t.Errorf("idempotency record inside its TTL: %v", err)
		}
		for ev, seen := range map[string]bool{"ev-old": false, "ev-new": true} {
			if ok, err := tx.SeenEvent("hpp-1", ev); ok != seen || err != nil {
				t.Errorf("event %s seen %v, want %v (%v)", ev, ok, seen, err)
			}
		}
		return nil
	})
	// The cleanup's Check proves no index entry or counter points at a
	// deleted record. Once the job is delivered, its session goes too.
	mustUpdate(t, db, func(tx *Tx) error { return tx.DeleteJob("deliver_event/msg_1") })
	if r := pruneAll(t, p, now); r.Sessions != 1 {
		t.Fatalf("after the delivery: %+v", r)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// A run deletes at most PerTx records in each of at most Txs transactions;
// the rest waits for the next runs, which go on where the last one stopped.
func TestPruneIsBoundedPerRun(t *testing.T) {
	db := openTest(t)
	now := t0.Add(200 * day)
	const n = 57
	mustUpdate(t, db, func(tx *Tx) error {
		for i := 0; i < n; i++ {
			// Two storefronts, so the walk also crosses from one to the next.
			s := finalSession(fmt.Sprintf("ses_%03d", i), core.SessionOrderPlaced, t0.Add(time.Duration(i)*time.Minute), t0.Add(time.Hour))
			s.Storefront = []string{"shop-a", "shop-b"}[i%2]
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		return nil
	})
	p := db.NewPruner(store.PruneConfig{Retention: 180 * day, PerTx: 4, ScanPerTx: 6, Txs: 3})
	runs, total := 0, 0
	for {
		r, err := p.Run(now)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sessions > 4*3 || r.Txs > 3 {
			t.Fatalf("run %d deleted %d sessions in %d transactions, want at most 12 in 3", runs, r.Sessions, r.Txs)
		}
		if r.Total() == 0 {
			break
		}
		runs++
		total += r.Sessions
	}
	if total != n || runs < n/12 {
		t.Fatalf("%d sessions deleted in %d runs, want %d in at least %d", total, runs, n, n/12)
	}
	mustView(t, db, func(tx *Tx) error {
		ss, _, _, err := tx.Counts()
		if err != nil || ss[core.SessionOrderPlaced] != 0 {
			t.Errorf("counts %v %v", ss, err)
		}
		return nil
	})
}

// Nothing is pruned without a retention (the zero config keeps records).
func TestPruneWithoutRetentionKeepsRecords(t *testing.T) {
	db := openTest(t)
	now := t0.Add(1000 * day)
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutSession(finalSession("ses_1", core.SessionOrderPlaced, t0, t0)); err != nil {
			return err
		}
		return tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop", Key: "k", CreatedAt: t0})
	})
	if r := pruneAll(t, db.NewPruner(store.PruneConfig{}), now); r.Total() != 0 {
		t.Fatalf("pruned %+v", r)
	}
}

// bulkFile writes n realistic paid sessions into a store at path and closes it.
func bulkFile(t *testing.T, path string, n int) []string {
	t.Helper()
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, 0, n)
	for start := 0; start < n; start += 500 {
		mustUpdate(t, db, func(tx *Tx) error {
			for i := start; i < min(start+500, n); i++ {
				s := realisticSession(r, "shop", t0.Add(time.Duration(i)*time.Second))
				s.Status, s.CheckAt = core.SessionOrderPlaced, time.Time{}
				if i%10 == 0 {
					s.UpdatedAt = t0.Add(190 * day) // recent: kept
				}
				if err := tx.PutSession(s); err != nil {
					return err
				}
				ids = append(ids, s.ID)
			}
			return nil
		})
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// After retention deleted most sessions the file is as large as before;
// CompactFile makes it smaller and keeps every record that was left.
func TestCompactFileAfterBulkDelete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	ids := bulkFile(t, path, 4000)
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pr := pruneAll(t, db.NewPruner(store.PruneConfig{Retention: 180 * day, PerTx: 1000, ScanPerTx: 5000}), t0.Add(200*day))
	if pr.Sessions != 3600 {
		t.Fatalf("pruned %d sessions, want 3600", pr.Sessions)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileSize(t, path)

	res, err := CompactFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	after := fileSize(t, path)
	t.Logf("compacted %d -> %d bytes", before, after)
	if res.Before != before || res.After != after || after >= before/2 {
		t.Fatalf("sizes: result %+v, file %d -> %d; want it at least halved", res, before, after)
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the copy is left beside the file: %v", err)
	}
	db = openTestAt(t, path) // checks every index and counter at cleanup
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	mustView(t, db, func(tx *Tx) error {
		for i, id := range ids {
			s, err := tx.Session(id)
			if kept := i%10 == 0; kept != (err == nil) {
				t.Fatalf("session %d %s: kept %v, want %v (%v)", i, id, err == nil, kept, err)
			}
			if err == nil && s.HPPSessionID == "" {
				t.Fatalf("session %s lost its fields", id)
			}
		}
		return nil
	})
}

// A file a running daemon holds is refused, and left exactly as it was.
func TestCompactFileRefusesALockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	db := openTestAt(t, path)
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(simpleSession("ses_1", "shop", t0)) })
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = CompactFile(path, 50*time.Millisecond)
	var le *LockedError
	if !errors.As(err, &le) || le.Path != path {
		t.Fatalf("err %v, want a LockedError naming the file", err)
	}
	now, _ := os.ReadFile(path)
	if string(now) != string(before) {
		t.Fatal("the locked file was changed")
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a copy was written: %v", err)
	}
}

// A copy left by a compaction that died is replaced, never taken for the
// result; a file that is not a store is refused and not replaced.
func TestCompactFileStaleCopyAndNotAStore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hppd.db")
	bulkFile(t, path, 100)
	if err := os.WriteFile(path+".compact", []byte("half a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CompactFile(path, 0); err != nil {
		t.Fatal(err)
	}
	db := openTestAt(t, path)
	mustView(t, db, func(tx *Tx) error {
		ss, _, _, err := tx.Counts()
		if err != nil || ss[core.SessionOrderPlaced] != 100 {
			t.Errorf("counts %v %v", ss, err)
		}
		return nil
	})

	other := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(other, []byte("not a bbolt file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CompactFile(other, 0); err == nil {
		t.Fatal("compacted a file that is not a store")
	}
	if b, _ := os.ReadFile(other); string(b) != "not a bbolt file" {
		t.Fatal("the file was changed")
	}
}
