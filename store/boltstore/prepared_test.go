package boltstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// A prepared write stores exactly what PutSessionKeepDue stores: two files
// with the same session take the same callbacks, one through prepared
// writes, the other read-change-write in the transaction, and end with the
// same bytes in every bucket (the record with its marks and due list,
// sessions_due, the listing, the counters). The callbacks move CheckAt later
// (the due entry stays), earlier (an entry is added) and to a final status
// (the entries go).
func TestPreparedWriteIsThePutSessionKeepDueWrite(t *testing.T) {
	prepared, ordinary := openTest(t), openTest(t)
	s := realisticSession(rand.New(rand.NewPCG(3, 3)), "shop", t0)
	for _, db := range []*DB{prepared, ordinary} {
		mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	}
	steps := []func(*core.Session, int){
		func(s *core.Session, i int) {
			s.CheckAt = s.CheckAt.Add(time.Hour)
			s.KlarnaStatus = core.KlarnaInProgress
		},
		func(s *core.Session, i int) { s.CheckAt = s.CheckAt.Add(time.Hour); s.KlarnaStatus = core.KlarnaBack },
		func(s *core.Session, i int) {
			s.CheckAt = t0.Add(time.Minute)
			s.UpdatedAt = t0.Add(time.Duration(i) * time.Second)
		},
		func(s *core.Session, i int) { s.CheckAt = t0.Add(30 * time.Second) },
		func(s *core.Session, i int) { s.Status, s.CheckAt = core.SessionExpired, time.Time{} },
	}
	for i, step := range steps {
		event := fmt.Sprint("ev-", i)
		var v store.SessionVersion
		var cur *core.Session
		mustView(t, prepared, func(tx *Tx) error {
			var err error
			cur, v, err = tx.SessionVersion(s.ID)
			return err
		})
		step(cur, i)
		p, err := v.Prepare(cur)
		if err != nil {
			t.Fatal(err)
		}
		mustUpdate(t, prepared, func(tx *Tx) error {
			if err := tx.MarkEvent(s.HPPSessionID, event, t0); err != nil {
				return err
			}
			wrote, err := tx.PutPrepared(p)
			if err == nil && !wrote {
				err = fmt.Errorf("step %d: prepared write not written", i)
			}
			return err
		})
		mustUpdate(t, ordinary, func(tx *Tx) error {
			if err := tx.MarkEvent(s.HPPSessionID, event, t0); err != nil {
				return err
			}
			cur, err := tx.Session(s.ID)
			if err != nil {
				return err
			}
			step(cur, i)
			return tx.PutSessionKeepDue(cur)
		})
		for _, name := range allBuckets {
			a, b := bucketDump(t, prepared, name), bucketDump(t, ordinary, name)
			if !bytes.Equal(a, b) {
				t.Errorf("step %d: bucket %s differs:\nprepared %x\nordinary %x", i, name, a, b)
			}
		}
	}
}

// bucketDump is every key and value of a bucket, concatenated.
func bucketDump(t *testing.T, db *DB, name []byte) []byte {
	t.Helper()
	var out []byte
	mustView(t, db, func(tx *Tx) error {
		return tx.tx.Bucket(name).ForEach(func(k, v []byte) error {
			out = fmt.Appendf(out, "%x=%x;", k, v)
			return nil
		})
	})
	return out
}

// A prepared write is refused by a session changed since its version was
// read, and by a value that was not prepared by boltstore; a prepared value
// is checked like PutSession's.
func TestPreparedWriteRefusals(t *testing.T) {
	db := openTest(t)
	s := simpleSession("ses_1", "shop", t0)
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	var v store.SessionVersion
	var cur *core.Session
	mustView(t, db, func(tx *Tx) error {
		var err error
		cur, v, err = tx.SessionVersion(s.ID)
		return err
	})
	bad := *cur
	bad.Storefront = ""
	if _, err := v.Prepare(&bad); core.ErrorCodeOf(err) != core.CodeInvalid {
		t.Errorf("prepare a session without storefront: %v, want invalid", err)
	}
	other := simpleSession("ses_2", "shop", t0)
	if _, err := v.Prepare(other); err == nil {
		t.Error("prepared ses_2 from a version of ses_1")
	}
	cur.KlarnaStatus = core.KlarnaBack
	p, err := v.Prepare(cur)
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, db, func(tx *Tx) error {
		changed := simpleSession("ses_1", "shop", t0)
		changed.KlarnaStatus = core.KlarnaInProgress
		return tx.PutSession(changed)
	})
	mustUpdate(t, db, func(tx *Tx) error {
		wrote, err := tx.PutPrepared(p)
		if err == nil && wrote {
			err = fmt.Errorf("wrote a prepared session over a newer one")
		}
		return err
	})
	mustView(t, db, func(tx *Tx) error {
		got, err := tx.Session("ses_1")
		if err == nil && got.KlarnaStatus != core.KlarnaInProgress {
			err = fmt.Errorf("Klarna status %q, want the newer write's %q", got.KlarnaStatus, core.KlarnaInProgress)
		}
		return err
	})
	if err := db.update(func(tx *Tx) error {
		_, err := tx.PutPrepared(foreignPrepared{})
		return err
	}); err == nil {
		t.Error("PutPrepared took a value boltstore did not prepare")
	}
}

type foreignPrepared struct{}

func (foreignPrepared) SessionID() string { return "ses_1" }

// MarkPrepared is SeenEvent, MarkEvent and PutPrepared in one step: two
// files with the same session take the same callbacks, one through
// MarkPrepared (and the three steps when it reports the session stale), the
// other through the three steps, and report the same outcome and end with
// the same bytes in every bucket after each. The callbacks repeat events
// (seen in the record, and in event_ids once the record's marks are full),
// the horizon moves (dead marks drop out of the record), and now and then
// the session is written between the read and the callback (stale).
func TestMarkPreparedIsTheThreeSteps(t *testing.T) {
	one, three := openTest(t), openTest(t)
	r := rand.New(rand.NewPCG(5, 8))
	s := realisticSession(r, "shop", t0)
	for _, db := range []*DB{one, three} {
		mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	}
	counts := map[string]int{}
	for i := range 400 {
		at := t0.Add(time.Duration(i) * time.Minute)
		event := fmt.Sprint("ev-", r.IntN(40))
		var cur *core.Session
		var v store.SessionVersion
		var full bool
		mustView(t, one, func(tx *Tx) error {
			var err error
			cur, v, err = tx.SessionVersion(s.ID)
			full = recordMarks(t, tx, s.ID) == maxRecordMarks
			return err
		})
		cur.KlarnaStatus = []string{core.KlarnaInProgress, core.KlarnaBack}[r.IntN(2)]
		cur.UpdatedAt = at
		cur.CheckAt = at.Add(time.Duration(r.IntN(60)) * time.Minute)
		p, err := v.Prepare(cur)
		if err != nil {
			t.Fatal(err)
		}
		switch r.IntN(12) {
		case 0: // written between the read and the callback
			for _, db := range []*DB{one, three} {
				mustUpdate(t, db, func(tx *Tx) error {
					cur, err := tx.Session(s.ID)
					if err != nil {
						return err
					}
					cur.Rereads++
					return tx.PutSessionKeepDue(cur)
				})
			}
		case 1: // the horizon moves
			before := at.Add(-time.Duration(r.IntN(90)) * time.Minute)
			for _, db := range []*DB{one, three} {
				mustUpdate(t, db, func(tx *Tx) error { _, err := tx.PruneEvents(before, 0); return err })
			}
		}
		var got, want store.PreparedOutcome
		mustUpdate(t, one, func(tx *Tx) error {
			var err error
			if got, err = tx.MarkPrepared(p, s.HPPSessionID, event, at); err != nil || got != store.PreparedStale {
				return err
			}
			got, err = threeSteps(tx, p, s.HPPSessionID, event, at)
			return err
		})
		mustUpdate(t, three, func(tx *Tx) error {
			var err error
			want, err = threeSteps(tx, p, s.HPPSessionID, event, at)
			return err
		})
		if got != want {
			t.Fatalf("step %d (%s): outcome %d, the three steps' %d", i, event, got, want)
		}
		for _, name := range allBuckets {
			if a, b := bucketDump(t, one, name), bucketDump(t, three, name); !bytes.Equal(a, b) {
				t.Fatalf("step %d (%s, outcome %d): bucket %s differs:\none step    %x\nthree steps %x", i, event, got, name, a, b)
			}
		}
		counts[fmt.Sprint(got, full)]++
	}
	// Every case was met: written with room in the record and with the
	// record full, seen in either place, stale.
	for _, k := range []string{"2 false", "2 true", "1 false", "1 true", "0 false"} {
		if counts[k] == 0 {
			t.Errorf("no step had outcome and full record %q: %v", k, counts)
		}
	}
}

// threeSteps is a callback's SeenEvent, MarkEvent and PutPrepared; a stale
// outcome has marked the event.
func threeSteps(tx *Tx, p store.PreparedSession, hppID, event string, at time.Time) (store.PreparedOutcome, error) {
	seen, err := tx.SeenEvent(hppID, event)
	if err != nil || seen {
		return store.EventSeen, err
	}
	if err := tx.MarkEvent(hppID, event, at); err != nil {
		return 0, err
	}
	wrote, err := tx.PutPrepared(p)
	if err != nil || !wrote {
		return store.PreparedStale, err
	}
	return store.PreparedWritten, nil
}

// MarkPrepared writes nothing for a session of another HPP session, and
// refuses a value boltstore did not prepare and a bad event id.
func TestMarkPreparedRefusals(t *testing.T) {
	db := openTest(t)
	s := simpleSession("ses_1", "shop", t0)
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	var p store.PreparedSession
	mustView(t, db, func(tx *Tx) error {
		cur, v, err := tx.SessionVersion(s.ID)
		if err != nil {
			return err
		}
		cur.KlarnaStatus = core.KlarnaBack
		p, err = v.Prepare(cur)
		return err
	})
	before := bucketDump(t, db, bucketSessions)
	mustUpdate(t, db, func(tx *Tx) error {
		if out, err := tx.MarkPrepared(p, "hpp-other", "ev-1", t0); err != nil || out != store.PreparedStale {
			t.Errorf("another HPP session: %d, %v; want stale", out, err)
		}
		if _, err := tx.MarkPrepared(foreignPrepared{}, s.HPPSessionID, "ev-1", t0); err == nil {
			t.Error("MarkPrepared took a value boltstore did not prepare")
		}
		if _, err := tx.MarkPrepared(p, s.HPPSessionID, "", t0); err == nil {
			t.Error("MarkPrepared took an empty event id")
		}
		return nil
	})
	if after := bucketDump(t, db, bucketSessions); !bytes.Equal(before, after) {
		t.Error("a refused MarkPrepared wrote")
	}
}
