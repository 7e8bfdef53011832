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
