package boltstore

import (
	"errors"
	"fmt"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/storetest"
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

// The contract's retention case (storetest.Retention), then Check: no
// index entry or counter points at a deleted record.
func TestPruneRetention(t *testing.T) {
	db := openTest(t)
	storetest.Retention(t, db, func(cfg store.PruneConfig) storetest.Pruner { return db.NewPruner(cfg) })
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
	if r := storetest.PruneAll(t, db.NewPruner(store.PruneConfig{}), now); r.Total() != 0 {
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
	pr := storetest.PruneAll(t, db.NewPruner(store.PruneConfig{Retention: 180 * day, PerTx: 1000, ScanPerTx: 5000}), t0.Add(200*day))
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
