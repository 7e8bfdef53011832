package boltstore

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	bolt "go.etcd.io/bbolt"
)

// dueKeys returns the sessions_due entries of id, as times.
func dueKeys(t *testing.T, tx *Tx, id string) []time.Time {
	t.Helper()
	var out []time.Time
	err := tx.tx.Bucket(bucketSessionsDue).ForEach(func(k, _ []byte) error {
		ns, kid, err := splitTimeKey(k)
		if err == nil && kid == id {
			out = append(out, timeOf(ns))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dueIDsAt(t *testing.T, db *DB, now time.Time) []string {
	t.Helper()
	var ids []string
	mustView(t, db, func(tx *Tx) error {
		var err error
		ids, err = tx.SessionsDue(now, 0)
		return err
	})
	return ids
}

// A callback's write (PutSessionKeepDue) that pushes CheckAt back leaves the
// due entry where it was, however often, and keeps the record readable and
// its marks; PutSession files the entry at CheckAt again. The store's Check
// (at cleanup) holds the invariant at every step it is run.
func TestKeepDueLeavesTheEntry(t *testing.T) {
	db := openTest(t)
	s := simpleSession("ses_1", "shop", t0)
	c1 := s.CheckAt
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	for i, c := range []time.Time{c1.Add(time.Minute), c1.Add(time.Hour)} {
		mustUpdate(t, db, func(tx *Tx) error {
			cur, err := tx.Session(s.ID)
			if err != nil {
				return err
			}
			cur.CheckAt = c
			if err := tx.MarkEvent(s.HPPSessionID, "e"+string(rune('0'+i)), c); err != nil {
				return err
			}
			return tx.PutSessionKeepDue(cur)
		})
		if err := db.Check(); err != nil {
			t.Fatalf("check after push %d: %v", i, err)
		}
		mustView(t, db, func(tx *Tx) error {
			if got := dueKeys(t, tx, s.ID); len(got) != 1 || !got[0].Equal(c1) {
				t.Errorf("push %d: due entries %v, want [%v]", i, got, c1)
			}
			cur, err := tx.Session(s.ID)
			if err == nil && !cur.CheckAt.Equal(c) {
				t.Errorf("push %d: CheckAt %v, want %v", i, cur.CheckAt, c)
			}
			for j := 0; j <= i; j++ {
				if seen, err := tx.SeenEvent(s.HPPSessionID, "e"+string(rune('0'+j))); err != nil || !seen {
					t.Errorf("push %d: event %d seen %v, %v", i, j, seen, err)
				}
			}
			return err
		})
	}
	if got := dueIDsAt(t, db, c1); !slices.Equal(got, []string{s.ID}) {
		t.Errorf("SessionsDue at the lagging entry = %v, want the session (early)", got)
	}
	// The poller's re-file.
	mustUpdate(t, db, func(tx *Tx) error {
		cur, err := tx.Session(s.ID)
		if err != nil {
			return err
		}
		return tx.PutSession(cur)
	})
	mustView(t, db, func(tx *Tx) error {
		if got := dueKeys(t, tx, s.ID); len(got) != 1 || !got[0].Equal(c1.Add(time.Hour)) {
			t.Errorf("after PutSession: due entries %v, want [%v]", got, c1.Add(time.Hour))
		}
		raw := tx.tx.Bucket(bucketSessions).Get([]byte(s.ID))
		if _, body, _ := splitMarks(raw); len(body) == 0 || body[0] == codecDue {
			t.Errorf("after PutSession the record still has a due header")
		}
		return nil
	})
	if got := dueIDsAt(t, db, c1); len(got) != 0 {
		t.Errorf("SessionsDue before CheckAt after the re-file = %v, want none", got)
	}
}

// Moving CheckAt earlier through PutSessionKeepDue adds an entry and leaves
// the old one (up to maxDueEntries, then the list is filed exactly); moving
// it to zero and deleting the session drop every entry.
func TestKeepDueEarlierZeroAndDelete(t *testing.T) {
	db := openTest(t)
	a, b, c := simpleSession("ses_a", "shop", t0), simpleSession("ses_b", "shop", t0), simpleSession("ses_c", "shop", t0)
	c1 := a.CheckAt
	push := func(s *core.Session, fn func(*core.Session)) {
		t.Helper()
		mustUpdate(t, db, func(tx *Tx) error {
			cur, err := tx.Session(s.ID)
			if err != nil {
				return err
			}
			fn(cur)
			return tx.PutSessionKeepDue(cur)
		})
	}
	mustUpdate(t, db, func(tx *Tx) error {
		for _, s := range []*core.Session{a, b, c} {
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		return nil
	})
	for _, s := range []*core.Session{a, b, c} {
		push(s, func(cur *core.Session) { cur.CheckAt = c1.Add(time.Hour) })
	}
	push(a, func(cur *core.Session) { cur.CheckAt = c1.Add(-time.Minute) })
	push(b, func(cur *core.Session) { cur.CheckAt, cur.Status = time.Time{}, core.SessionFailed })
	mustUpdate(t, db, func(tx *Tx) error {
		cur, err := tx.Session(c.ID)
		if err != nil {
			return err
		}
		return tx.deleteSession(cur)
	})
	mustView(t, db, func(tx *Tx) error {
		if got := dueKeys(t, tx, a.ID); !slices.EqualFunc(got, []time.Time{c1.Add(-time.Minute), c1}, time.Time.Equal) {
			t.Errorf("brought forward: due entries %v, want [%v %v]", got, c1.Add(-time.Minute), c1)
		}
		if got := dueKeys(t, tx, b.ID); len(got) != 0 {
			t.Errorf("final: due entries %v, want none", got)
		}
		if got := dueKeys(t, tx, c.ID); len(got) != 0 {
			t.Errorf("deleted: due entries %v, want none", got)
		}
		return nil
	})
	if got := dueIDsAt(t, db, c1); !slices.Equal(got, []string{a.ID}) {
		t.Errorf("SessionsDue with two entries of one session due = %v, want it once", got)
	}
	// Three more moves earlier: the fourth entry fills the list, the fifth
	// files the session exactly.
	for i := 2; i <= 4; i++ {
		push(a, func(cur *core.Session) { cur.CheckAt = c1.Add(-time.Duration(i) * time.Minute) })
	}
	mustView(t, db, func(tx *Tx) error {
		if got := dueKeys(t, tx, a.ID); !slices.EqualFunc(got, []time.Time{c1.Add(-4 * time.Minute)}, time.Time.Equal) {
			t.Errorf("after a full list: due entries %v, want [%v]", got, c1.Add(-4*time.Minute))
		}
		return nil
	})
}

// Check refuses a due header that files the entry after CheckAt, and a
// record whose entry is missing.
func TestCheckFindsBadDueHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := simpleSession("ses_1", "shop", t0)
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	err = db.bolt.Update(func(btx *bolt.Tx) error {
		b := btx.Bucket(bucketSessions)
		raw := b.Get([]byte(s.ID))
		return b.Put([]byte(s.ID), withDue([]uint64{nanos(s.CheckAt.Add(time.Second))}, raw))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Check(); err == nil {
		t.Fatal("Check passed a due entry filed after CheckAt")
	}
}
