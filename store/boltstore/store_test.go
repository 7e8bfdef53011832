package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/storetest"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	bolt "go.etcd.io/bbolt"
)

func TestOpenCreatesDirFileAndBuckets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "hppd")
	path := filepath.Join(dir, "hppd.db")
	db := openTestAt(t, path)
	if got := fileMode(t, dir); got != 0o700 {
		t.Errorf("dir mode %o, want 700", got)
	}
	if got := fileMode(t, path); got != 0o600 {
		t.Errorf("file mode %o, want 600", got)
	}
	if db.Path() != path {
		t.Errorf("Path() = %q", db.Path())
	}
	v, err := db.SchemaVersion()
	if err != nil || v != SchemaVersion {
		t.Fatalf("SchemaVersion() = %d, %v", v, err)
	}
	err = db.bolt.View(func(btx *bolt.Tx) error {
		for _, name := range allBuckets {
			if btx.Bucket(name) == nil {
				t.Errorf("bucket %s missing", name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := simpleSession("s1", "shop", t0)
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTestAt(t, path)
	mustView(t, db, func(tx *Tx) error {
		got, err := tx.Session("s1")
		if err != nil {
			return err
		}
		if jsonOf(t, got) != jsonOf(t, s) {
			t.Errorf("after reopen got %s", jsonOf(t, got))
		}
		return nil
	})
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(btx *bolt.Tx) error {
		b, err := btx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keySchema, []byte(strconv.Itoa(SchemaVersion+1)))
	})
	if err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	_, err = Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d is newer", SchemaVersion+1)) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a newer file: %v", err)
	}
}

func TestOpenRefusesForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(btx *bolt.Tx) error { _, err := btx.CreateBucket([]byte("widgets")); return err }); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "not an hppd store") {
		t.Fatalf("Open of a foreign bbolt file: %v", err)
	}
}

func TestSecondOpenInProcessIsLocked(t *testing.T) {
	db := openTest(t)
	_, err := Open(db.Path(), Options{LockTimeout: 50 * time.Millisecond})
	var le *LockedError
	if !errors.As(err, &le) || le.Path != db.Path() {
		t.Fatalf("second Open: %v, want *LockedError", err)
	}
	want := "store: " + db.Path() + " is locked by another process (is another hppd running on it?)"
	if err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

// The real case: a second hppd process on the same file.
func TestSecondProcessIsLocked(t *testing.T) {
	db := openTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=lock", "HPPD_STORE_PATH="+db.Path())
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("child: %v, output %q; want exit 3 (*LockedError)", err, out)
	}
	msg := string(out)
	if !strings.Contains(msg, db.Path()) || !strings.Contains(msg, "locked by another process") {
		t.Errorf("child's message %q does not name the file and the lock", msg)
	}
}

func TestBackupWhileWriting(t *testing.T) {
	db := openTest(t)
	r := rand.New(rand.NewPCG(1, 2))
	var ids []string
	mustUpdate(t, db, func(tx *Tx) error {
		for i := 0; i < 200; i++ {
			s := realisticSession(r, "shop", t0.Add(time.Duration(i)*time.Second))
			ids = append(ids, s.ID)
			if err := tx.PutSession(s); err != nil {
				return err
			}
			if _, err := tx.AddJob(&core.Job{ID: core.SyncJobID(s.ID), Kind: core.JobSyncSession, SessionID: s.ID, DueAt: t0}); err != nil {
				return err
			}
		}
		return nil
	})
	// Writers carry on during the backups.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(3, 4))
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := realisticSession(r, "other", t0)
			if err := db.Batch(func(tx store.Tx) error { return tx.PutSession(s) }); err != nil {
				t.Error(err)
				return
			}
		}
	}()

	var buf bytes.Buffer
	n, err := db.Backup(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("Backup: %d, %v (wrote %d)", n, err, buf.Len())
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(copyPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	filePath := filepath.Join(t.TempDir(), "backups", "hppd-backup.db")
	if err := db.BackupFile(filePath); err != nil {
		t.Fatalf("BackupFile: %v", err)
	}
	close(stop)
	wg.Wait()

	if left, _ := filepath.Glob(filePath + ".tmp*"); len(left) > 0 {
		t.Errorf("temporary file left behind: %v", left)
	}
	if got := fileMode(t, filePath); got != 0o600 {
		t.Errorf("backup mode %o, want 600", got)
	}
	for _, p := range []string{copyPath, filePath} {
		cp := openTestAt(t, p)
		mustView(t, cp, func(tx *Tx) error {
			for _, id := range ids {
				if _, err := tx.Session(id); err != nil {
					t.Errorf("%s: session %s: %v", p, id, err)
				}
			}
			jobs, err := tx.JobsDue(t0, 0)
			if err != nil || len(jobs) != len(ids) {
				t.Errorf("%s: %d due jobs, %v", p, len(jobs), err)
			}
			return nil
		})
	}
	if err := db.BackupFile(db.Path()); err == nil {
		t.Error("BackupFile onto the live file succeeded")
	}
}

func TestCheckFindsBrokenIndexes(t *testing.T) {
	db := openTest(t)
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(simpleSession("s1", "shop", t0)) })
	if err := db.Check(); err != nil {
		t.Fatalf("Check of a good file: %v", err)
	}
	breakIt := func(name []byte, k []byte, v []byte) {
		t.Helper()
		err := db.bolt.Update(func(btx *bolt.Tx) error {
			if v == nil {
				return btx.Bucket(name).Delete(k)
			}
			return btx.Bucket(name).Put(k, v)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	breakIt(bucketSessionsKP, []byte("kp-s1"), nil)
	if err := db.Check(); err == nil || !strings.Contains(err.Error(), "sessions_kp") {
		t.Errorf("Check after deleting a KP entry: %v", err)
	}
	breakIt(bucketSessionsKP, []byte("kp-s1"), []byte("s1"))
	breakIt(bucketCounters, []byte("session/pending"), be64(2))
	if err := db.Check(); err == nil || !strings.Contains(err.Error(), "counter session/pending is 2") {
		t.Errorf("Check after breaking a counter: %v", err)
	}
	breakIt(bucketCounters, []byte("session/pending"), be64(1))
	breakIt(bucketSessionsDue, timeKey(1, "ghost"), []byte{})
	if err := db.Check(); err == nil || !strings.Contains(err.Error(), "sessions_due has 2 entries") {
		t.Errorf("Check after adding a stray due entry: %v", err)
	}
	breakIt(bucketSessionsDue, timeKey(1, "ghost"), nil)
}

func TestWriteInViewFails(t *testing.T) {
	db := openTest(t)
	err := db.view(func(tx *Tx) error { return tx.PutSession(simpleSession("s1", "shop", t0)) })
	if err == nil {
		t.Fatal("PutSession in View succeeded")
	}
}

// currentFreelist reads the freelist page id from the file's current meta
// page (bbolt's layout: two meta pages; in each, after the 16-byte page
// header, magic, version, page size, flags, the root bucket (16 bytes), then
// the freelist page id, the high-water page id and the transaction id).
func currentFreelist(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(b[16+8:]))
	var freelist, txid uint64
	for _, off := range []int{0, pageSize} {
		m := b[off+16:]
		if id := binary.LittleEndian.Uint64(m[48:]); id >= txid {
			txid, freelist = id, binary.LittleEndian.Uint64(m[32:])
		}
	}
	return freelist
}

// Commits write bbolt's freelist while it is short, so that Open after a
// crash reads it instead of walking the file.
func TestCommitsWriteShortFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 3 {
		mustUpdate(t, db, func(tx *Tx) error {
			return tx.PutSession(simpleSession(fmt.Sprintf("s%d", i), "shop", t0))
		})
		if got := currentFreelist(t, path); got == noFreelist {
			t.Fatalf("after commit %d the meta points at no freelist", i+1)
		}
	}
	if st := db.bolt.Stats(); st.FreePageN+st.PendingPageN == 0 {
		t.Fatal("the file has no free pages: the test shows nothing")
	}
}

// The last commit before a SIGKILL wrote the freelist, so the next Open
// reads it instead of walking the file (and every acknowledged write is
// there: the contract's durability check).
func TestFreelistSurvivesSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	storetest.Durability(t, path, func(t *testing.T) store.Store {
		if got := currentFreelist(t, path); got == noFreelist {
			t.Error("the killed process's last commit left no freelist: Open walks the file")
		}
		return openTestAt(t, path)
	})
}

// A long freelist is not written by ordinary commits; Close writes it, so
// that the next Open reads it instead of walking the file.
func TestLongFreelistOnlyOnClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.freelistMax = 0 // every freelist is long
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(simpleSession("s1", "shop", t0)) })
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(simpleSession("s2", "shop", t0)) })
	if got := currentFreelist(t, path); got != noFreelist {
		t.Errorf("after a commit the meta points at freelist page %d, want none", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if got := currentFreelist(t, path); got == noFreelist {
		t.Error("Close did not write the freelist")
	}
	db = openTestAt(t, path)
	mustView(t, db, func(tx *Tx) error { _, err := tx.Session("s2"); return err })
}

const noFreelist = 0xffffffffffffffff

// Commits counts write transactions that committed: one per Update, one per
// group of Batch calls, none for a rolled-back Update or a View.
func TestCommitsCountsWriteTransactions(t *testing.T) {
	db := openTest(t)
	n0 := db.Commits()
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutCharge(simpleCharge("c1", "shop", t0)) })
	if got := db.Commits() - n0; got != 1 {
		t.Fatalf("%d commits after one Update", got)
	}
	_ = db.update(func(tx *Tx) error {
		if err := tx.PutCharge(simpleCharge("c2", "shop", t0)); err != nil {
			return err
		}
		return core.ErrNotFound
	})
	mustView(t, db, func(tx *Tx) error { _, err := tx.Charge("c1"); return err })
	if got := db.Commits() - n0; got != 1 {
		t.Fatalf("%d commits after a rollback and a View", got)
	}
	if err := db.Batch(func(tx store.Tx) error { return tx.PutCharge(simpleCharge("c3", "shop", t0)) }); err != nil {
		t.Fatal(err)
	}
	if got := db.Commits() - n0; got != 2 {
		t.Fatalf("%d commits after a Batch", got)
	}
}

// OnCommit reports each committed write transaction once, with the calls it
// carried and the pages it wrote; a rolled-back transaction, a View and a
// batch that wrote nothing report nothing.
func TestOnCommitReportsEachCommit(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []CommitInfo
	)
	db, err := Open(filepath.Join(t.TempDir(), "hppd.db"), Options{NoSync: true, OnCommit: func(c CommitInfo) {
		mu.Lock()
		seen = append(seen, c)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reports := func() []CommitInfo {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
	n0, c0 := len(reports()), db.Commits()

	mustUpdate(t, db, func(tx *Tx) error { return tx.PutCharge(simpleCharge("c1", "shop", t0)) })
	got := reports()[n0:]
	if len(got) != 1 || got[0].Calls != 1 {
		t.Fatalf("after one Update: %+v", got)
	}
	// The charge's leaf, its index's leaf, the root bucket's and the meta
	// page at least.
	if got[0].Writes < 3 || got[0].Work <= 0 || got[0].Commit <= 0 {
		t.Fatalf("one Update reported %+v", got[0])
	}

	_ = db.update(func(tx *Tx) error {
		if err := tx.PutCharge(simpleCharge("c2", "shop", t0)); err != nil {
			return err
		}
		return core.ErrNotFound
	})
	mustView(t, db, func(tx *Tx) error { _, err := tx.Charge("c1"); return err })
	if err := db.Batch(func(tx store.Tx) error { _, err := tx.Charge("c1"); return err }); err != nil {
		t.Fatal(err)
	}
	if got := reports()[n0:]; len(got) != 1 {
		t.Fatalf("a rollback, a View and a batch that wrote nothing reported: %+v", got[1:])
	}

	const calls = 40
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.Batch(func(tx store.Tx) error { return tx.PutCharge(simpleCharge(fmt.Sprintf("b%d", i), "shop", t0)) }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got = reports()[n0+1:]
	sum := 0
	for _, c := range got {
		sum += c.Calls
	}
	if sum != calls {
		t.Fatalf("batches reported %d calls in all, want %d: %+v", sum, calls, got)
	}
	if n := int64(len(reports()) - n0); n != db.Commits()-c0 {
		t.Fatalf("%d reports for %d commits", n, db.Commits()-c0)
	}
}

// A commit's writes follow the B+tree nodes it changed: records spread over
// many leaves cost a write each, records next to each other share one.
func TestOnCommitWritesFollowTheLeavesChanged(t *testing.T) {
	var last atomic.Pointer[CommitInfo]
	db, err := Open(filepath.Join(t.TempDir(), "hppd.db"), Options{NoSync: true, OnCommit: func(c CommitInfo) { last.Store(&c) }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []string
	for i := range 4000 {
		ids = append(ids, fmt.Sprintf("c%05d", i))
	}
	for chunk := range slices.Chunk(ids, 500) {
		mustUpdate(t, db, func(tx *Tx) error {
			for _, id := range chunk {
				if err := tx.PutCharge(simpleCharge(id, "shop", t0)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	rewrite := func(ids ...string) int64 {
		mustUpdate(t, db, func(tx *Tx) error {
			for _, id := range ids {
				c, err := tx.Charge(id)
				if err != nil {
					return err
				}
				c.UpdatedAt = c.UpdatedAt.Add(time.Second)
				if err := tx.PutCharge(c); err != nil {
					return err
				}
			}
			return nil
		})
		return last.Load().Writes
	}
	near := rewrite(ids[100:120]...)
	var spread []string
	for i := 0; i < len(ids); i += 200 {
		spread = append(spread, ids[i])
	}
	far := rewrite(spread...)
	if far < near+10 {
		t.Fatalf("20 neighbouring charges rewritten in %d page writes, 20 spread over the file in %d: want the spread ones to need a leaf each", near, far)
	}
}
