package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// testPrepared checks prepared session writes (store.SessionVersions): on a
// store with versions, a write prepared from a View is written as it is when
// nothing changed the session since (callback marks do not count), and not at
// all when something did; on a store without, nothing is prepared and
// PutPrepared writes nothing. Either way a caller that falls back to the
// ordinary read-change-write loses no change.
func testPrepared(t *testing.T, open Open) {
	t.Run("WrittenUnlessChanged", func(t *testing.T) { testPreparedUnlessChanged(t, open) })
	t.Run("CallbacksToOneSessionAtOnce", func(t *testing.T) { testPreparedCallbacksAtOnce(t, open) })
}

// prepare reads session id at its version in a View of db, applies change to
// it and prepares the write; nil when db has no versions.
func prepare(t *testing.T, db store.Store, id string, change func(*core.Session)) store.PreparedSession {
	t.Helper()
	var cur *core.Session
	var v store.SessionVersion
	view(t, db, func(tx store.Tx) error {
		var err error
		cur, v, err = store.ReadSessionVersion(tx, id)
		return err
	})
	if v == nil {
		return nil
	}
	change(cur)
	p, err := v.Prepare(cur)
	if err != nil {
		t.Fatalf("prepare %s: %v", id, err)
	}
	if p.SessionID() != id {
		t.Fatalf("prepared write of %s names session %s", id, p.SessionID())
	}
	return p
}

// applyPrepared is a callback's Batch function with a prepared write: mark
// the event, write p if the session is unchanged, and otherwise read the
// session, apply change and write it. wrote reports whether p was written.
func applyPrepared(tx store.Tx, id, event string, p store.PreparedSession, change func(*core.Session)) (wrote bool, err error) {
	if err := tx.MarkEvent("hpp-"+id, event, t0); err != nil {
		return false, err
	}
	if wrote, err := store.PutPrepared(tx, p); err != nil || wrote {
		return wrote, err
	}
	s, err := tx.Session(id)
	if err != nil {
		return false, err
	}
	change(s)
	return false, store.PutSessionKeepDue(tx, s)
}

// addHistory returns a change that appends a history entry named reason and
// moves CheckAt to checkAt.
func addHistory(reason string, checkAt time.Time) func(*core.Session) {
	return func(s *core.Session) {
		s.History = append(s.History, core.Change{At: t0, From: string(s.Status), To: string(s.Status), Source: core.SourceCallback, Reason: reason})
		s.CheckAt = checkAt
	}
}

func hasVersions(t *testing.T, db store.Store, id string) bool {
	t.Helper()
	var v store.SessionVersion
	view(t, db, func(tx store.Tx) error {
		var err error
		_, v, err = store.ReadSessionVersion(tx, id)
		return err
	})
	return v != nil
}

// Two writes prepared from one version: the first is written (its event's
// mark before it does not make it stale), the second finds the session
// changed and its caller writes its change the ordinary way; both changes
// and both marks are kept, and the session's due time is the last write's.
func testPreparedUnlessChanged(t *testing.T, open Open) {
	a, b := open(t)
	update(t, a, func(tx store.Tx) error { return tx.PutSession(session("ses_1", "shop", t0)) })
	versions := hasVersions(t, a, "ses_1")
	first, second := addHistory("first", t0.Add(5*time.Minute)), addHistory("second", t0.Add(10*time.Minute))
	p1 := prepare(t, a, "ses_1", first)
	p2 := prepare(t, b, "ses_1", second)
	if versions != (p1 != nil && p2 != nil) {
		t.Fatalf("store with versions %v prepared %v and %v", versions, p1 != nil, p2 != nil)
	}
	var wrote1, wrote2 bool
	if err := a.Batch(func(tx store.Tx) error {
		var err error
		wrote1, err = applyPrepared(tx, "ses_1", "ev-1", p1, first)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Batch(func(tx store.Tx) error {
		var err error
		wrote2, err = applyPrepared(tx, "ses_1", "ev-2", p2, second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if wrote1 != versions || wrote2 {
		t.Errorf("prepared writes written: first %v, second %v; want %v, false (store with versions: %v)", wrote1, wrote2, versions, versions)
	}
	// A store without versions writes nothing prepared, whatever it is given.
	if !versions {
		var wrote bool
		update(t, a, func(tx store.Tx) error {
			var err error
			wrote, err = store.PutPrepared(tx, nil)
			return err
		})
		if wrote {
			t.Error("PutPrepared(nil) wrote")
		}
	}
	view(t, b, func(tx store.Tx) error {
		s, err := tx.Session("ses_1")
		if err != nil {
			return err
		}
		var reasons []string
		for _, c := range s.History {
			reasons = append(reasons, c.Reason)
		}
		if fmt.Sprint(reasons) != "[first second]" {
			t.Errorf("history reasons %q, want [first second]", reasons)
		}
		if want := t0.Add(10 * time.Minute); !s.CheckAt.Equal(want) {
			t.Errorf("CheckAt %v, want %v", s.CheckAt, want)
		}
		for _, ev := range []string{"ev-1", "ev-2"} {
			if seen, err := tx.SeenEvent("hpp-ses_1", ev); err != nil || !seen {
				t.Errorf("event %s seen %v, %v; want marked", ev, seen, err)
			}
		}
		ids, err := tx.SessionsDue(t0.Add(10*time.Minute), 0)
		if err != nil {
			return err
		}
		if len(ids) != 1 || ids[0] != "ses_1" {
			t.Errorf("due at its CheckAt: %v, want [ses_1]", ids)
		}
		return nil
	})
	// Writing a prepared session again after it was overtaken writes nothing.
	if versions {
		var wrote bool
		update(t, a, func(tx store.Tx) error {
			var err error
			wrote, err = store.PutPrepared(tx, p1)
			return err
		})
		if wrote {
			t.Error("a stale prepared write was written")
		}
	}
}

// Callbacks to one session at once, on two handles, each prepared from its
// own View and written in a Batch with the ordinary write as the fallback:
// every change and every mark is kept, whichever path each took.
func testPreparedCallbacksAtOnce(t *testing.T, open Open) {
	a, b := open(t)
	update(t, a, func(tx store.Tx) error { return tx.PutSession(session("ses_1", "shop", t0)) })
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		db := []store.Store{a, b}[i%2]
		event := fmt.Sprintf("ev-%02d", i)
		change := addHistory(event, t0.Add(time.Duration(i+1)*time.Minute))
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := prepare(t, db, "ses_1", change)
			if err := db.Batch(func(tx store.Tx) error {
				seen, err := tx.SeenEvent("hpp-ses_1", event)
				if err != nil || seen {
					return err
				}
				_, err = applyPrepared(tx, "ses_1", event, p, change)
				return err
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	view(t, b, func(tx store.Tx) error {
		if err := eachEventOnce(t, tx, n); err != nil {
			return err
		}
		for i := range n {
			ev := fmt.Sprintf("ev-%02d", i)
			if seen, err := tx.SeenEvent("hpp-ses_1", ev); err != nil || !seen {
				t.Errorf("event %s seen %v, %v; want marked", ev, seen, err)
			}
		}
		return nil
	})
}
