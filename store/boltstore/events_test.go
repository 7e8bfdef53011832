package boltstore

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	json "github.com/go-json-experiment/json/v1"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/storetest"
	bolt "go.etcd.io/bbolt"
)

// recordMarks returns the number of event marks in session id's record.
func recordMarks(t *testing.T, tx *Tx, id string) int {
	t.Helper()
	marks, _, err := splitMarks(tx.tx.Bucket(bucketSessions).Get([]byte(id)))
	if err != nil {
		t.Fatalf("record of %s: %v", id, err)
	}
	return len(marks) / markLen
}

// bucketLen counts the keys of a bucket.
func bucketLen(tx *Tx, name []byte) int {
	n := 0
	c := tx.tx.Bucket(name).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// The marks of a stored session's events live in its record, up to
// maxRecordMarks of them; the rest go to event_ids. Rewriting the session
// keeps them, and the session reads back unchanged.
func TestEventMarksLiveInTheSessionRecord(t *testing.T) {
	db := openTest(t)
	s := simpleSession("ses_1", "shop", t0)
	hpp := s.HPPSessionID
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	n := maxRecordMarks + 3
	for i := range n {
		// One transaction per callback, as the callback path marks and then
		// rewrites the session.
		mustUpdate(t, db, func(tx *Tx) error {
			if err := tx.MarkEvent(hpp, fmt.Sprint("e", i), t0.Add(time.Duration(i)*time.Minute)); err != nil {
				return err
			}
			cur, err := tx.Session(s.ID)
			if err != nil {
				return err
			}
			cur.KlarnaStatus = fmt.Sprint("S", i)
			return tx.PutSession(cur)
		})
	}
	mustView(t, db, func(tx *Tx) error {
		if got := recordMarks(t, tx, s.ID); got != maxRecordMarks {
			t.Errorf("record holds %d marks, want %d", got, maxRecordMarks)
		}
		if got := bucketLen(tx, bucketEventIDs); got != n-maxRecordMarks {
			t.Errorf("event_ids holds %d marks, want %d", got, n-maxRecordMarks)
		}
		if got := bucketLen(tx, bucketEventsByTime); got != n-maxRecordMarks {
			t.Errorf("events_by_time holds %d entries, want %d", got, n-maxRecordMarks)
		}
		for i := range n {
			if seen, err := tx.SeenEvent(hpp, fmt.Sprint("e", i)); err != nil || !seen {
				t.Errorf("e%d: seen %v, %v", i, seen, err)
			}
		}
		if seen, err := tx.SeenEvent(hpp, "never"); err != nil || seen {
			t.Errorf("an unmarked event: seen %v, %v", seen, err)
		}
		got, err := tx.Session(s.ID)
		if err != nil {
			return err
		}
		if want := fmt.Sprint("S", n-1); got.KlarnaStatus != want {
			t.Errorf("session reads back with klarna status %q, want %q", got.KlarnaStatus, want)
		}
		return nil
	})
	// Marking again keeps the first time: pruning before the tenth minute
	// forgets e0 although it is marked again at minute 100.
	mustUpdate(t, db, func(tx *Tx) error { return tx.MarkEvent(hpp, "e0", t0.Add(100*time.Minute)) })
	mustUpdate(t, db, func(tx *Tx) error {
		_, err := tx.PruneEvents(t0.Add(10*time.Minute), 0)
		return err
	})
	mustView(t, db, func(tx *Tx) error {
		for i := range n {
			seen, err := tx.SeenEvent(hpp, fmt.Sprint("e", i))
			if err != nil || seen != (i >= 10) {
				t.Errorf("after pruning e%d: seen %v, %v", i, seen, err)
			}
		}
		return nil
	})
	// The next mark drops the pruned ones from the record and fits in it.
	mustUpdate(t, db, func(tx *Tx) error { return tx.MarkEvent(hpp, "e0", t0.Add(200*time.Minute)) })
	mustView(t, db, func(tx *Tx) error {
		if got, want := recordMarks(t, tx, s.ID), maxRecordMarks-10+1; got != want {
			t.Errorf("record holds %d marks after pruning and one more, want %d", got, want)
		}
		if seen, err := tx.SeenEvent(hpp, "e0"); err != nil || !seen {
			t.Errorf("e0 marked again: seen %v, %v", seen, err)
		}
		return nil
	})
}

// A callback's mark and the session's new state dirty the session's page,
// not a page of event_ids or events_by_time.
func TestMarkingAStoredSessionsEventWritesOnlyItsRecord(t *testing.T) {
	db := openTest(t)
	s := simpleSession("ses_1", "shop", t0)
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	mustUpdate(t, db, func(tx *Tx) error { return tx.MarkEvent(s.HPPSessionID, "e1", t0) })
	mustView(t, db, func(tx *Tx) error {
		if n := bucketLen(tx, bucketEventIDs) + bucketLen(tx, bucketEventsByTime); n != 0 {
			t.Errorf("the global event buckets hold %d entries, want none", n)
		}
		if got := recordMarks(t, tx, s.ID); got != 1 {
			t.Errorf("record holds %d marks, want 1", got)
		}
		return nil
	})
}

// The pruner moves the horizon of record marks even when event_ids is
// empty.
func TestPrunerForgetsRecordMarks(t *testing.T) {
	db := openTest(t)
	s := simpleSession("ses_1", "shop", t0)
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutSession(s); err != nil {
			return err
		}
		return tx.MarkEvent(s.HPPSessionID, "e1", t0)
	})
	p := db.NewPruner(store.PruneConfig{Retention: 180 * day, IdempotencyTTL: 24 * time.Hour})
	storetest.PruneAll(t, p, t0.Add(100*24*time.Hour))
	mustView(t, db, func(tx *Tx) error {
		if seen, err := tx.SeenEvent(s.HPPSessionID, "e1"); err != nil || seen {
			t.Errorf("an event marked 100 days ago: seen %v, %v", seen, err)
		}
		return nil
	})
}

// A schema 2, 3 or 4 file opens as the current schema with its records and
// marks as they were, and its due entries (exact in those schemas) work.
// Its sessions are JSON (S2), as those schemas wrote them: they read, and a
// prepared write over one works and stores the binary encoding.
func TestSchema2To4FilesOpen(t *testing.T) {
	for _, v := range []string{"2", "3", "4"} {
		t.Run("schema"+v, func(t *testing.T) { testOldSchemaOpens(t, v) })
	}
}

func testOldSchemaOpens(t *testing.T, version string) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s := simpleSession("ses_1", "shop", t0)
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutSession(s); err != nil {
			return err
		}
		// Schema 2 kept every mark in event_ids.
		return tx.MarkEvent("hpp-other", "e1", t0)
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(btx *bolt.Tx) error {
		sessions := btx.Bucket(bucketSessions)
		if v := sessions.Get([]byte(s.ID)); len(v) == 0 || v[0] != codecSessionBin1 {
			return fmt.Errorf("session stored as %x…, want a bare binary session", v[:min(len(v), 4)])
		}
		if err := sessions.Put([]byte(s.ID), legacySessionValue(t, s)); err != nil {
			return err
		}
		return btx.Bucket(bucketMeta).Put(keySchema, []byte(version))
	})
	if err2 := bdb.Close(); err == nil {
		err = err2
	}
	if err != nil {
		t.Fatal(err)
	}
	db = openTestAt(t, path)
	if v, err := db.SchemaVersion(); err != nil || v != SchemaVersion {
		t.Fatalf("schema %d after open (%v), want %d", v, err, SchemaVersion)
	}
	mustView(t, db, func(tx *Tx) error {
		got, err := tx.Session(s.ID)
		if err != nil {
			return err
		}
		if want := jsonRoundTrip(t, s); !reflect.DeepEqual(got, want) {
			t.Errorf("schema %s session reads back as\n%+v\nwant\n%+v", version, got, want)
		}
		if seen, err := tx.SeenEvent("hpp-other", "e1"); err != nil || !seen {
			t.Errorf("schema %s mark: seen %v, %v", version, seen, err)
		}
		return nil
	})
	// A callback's prepared write over a session still in JSON.
	var prep store.PreparedSession
	mustView(t, db, func(tx *Tx) error {
		cur, v, err := tx.SessionVersion(s.ID)
		if err != nil {
			return err
		}
		cur.KlarnaStatus = "IN_PROGRESS"
		prep, err = v.Prepare(cur)
		return err
	})
	mustUpdate(t, db, func(tx *Tx) error {
		if wrote, err := tx.PutPrepared(prep); err != nil || !wrote {
			t.Errorf("prepared write over a JSON session: wrote %v, %v", wrote, err)
		}
		return nil
	})
	mustView(t, db, func(tx *Tx) error {
		got, err := tx.Session(s.ID)
		if err != nil || got.KlarnaStatus != "IN_PROGRESS" {
			t.Errorf("after the prepared write: %+v, %v", got, err)
		}
		if v := tx.tx.Bucket(bucketSessions).Get([]byte(s.ID)); v[0] != codecSessionBin1 {
			t.Errorf("rewritten with codec 0x%02x, want 0x%02x", v[0], codecSessionBin1)
		}
		return nil
	})
	if got := dueIDsAt(t, db, s.CheckAt); !slices.Equal(got, []string{s.ID}) {
		t.Errorf("due at CheckAt: %v", got)
	}
	mustUpdate(t, db, func(tx *Tx) error {
		cur, err := tx.Session(s.ID)
		if err != nil {
			return err
		}
		cur.CheckAt = cur.CheckAt.Add(time.Hour)
		return tx.PutSessionKeepDue(cur)
	})
}

// legacySessionValue is s as schemas 2 to 4 stored a pending session: S2 of
// its JSON.
func legacySessionValue(t *testing.T, s *core.Session) []byte {
	t.Helper()
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{codecS2Dict1}, s2Dict1.Encode(nil, raw)...)
}
