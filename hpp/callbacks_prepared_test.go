package hpp

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// batchSpy is a bbolt store whose Batch functions run on a Tx that counts
// how callbacks wrote: prepared writes written (by MarkPrepared or
// PutPrepared), MarkPrepared's stale outcomes, PutPrepared's refusals (the
// session changed since the callback's View) and sessions read in the Batch
// (the ordinary path), and the read transactions (View). before, when set,
// runs once before the next Batch.
type batchSpy struct {
	*boltstore.DB
	before                                func()
	written, stale, refused, reads, views atomic.Int64
}

func (s *batchSpy) View(fn func(store.Tx) error) error {
	s.views.Add(1)
	return s.DB.View(fn)
}

func (s *batchSpy) Batch(fn func(store.Tx) error) error {
	if f := s.before; f != nil {
		s.before = nil
		f()
	}
	return s.DB.Batch(func(tx store.Tx) error { return fn(&spyTx{Tx: tx.(*boltstore.Tx), spy: s}) })
}

type spyTx struct {
	*boltstore.Tx
	spy *batchSpy
}

func (tx *spyTx) PutPrepared(p store.PreparedSession) (bool, error) {
	wrote, err := tx.Tx.PutPrepared(p)
	if err == nil && wrote {
		tx.spy.written.Add(1)
	} else if err == nil {
		tx.spy.refused.Add(1)
	}
	return wrote, err
}

func (tx *spyTx) MarkPrepared(p store.PreparedSession, hppID, eventID string, at time.Time) (store.PreparedOutcome, error) {
	out, err := tx.Tx.MarkPrepared(p, hppID, eventID, at)
	if err == nil && out == store.PreparedWritten {
		tx.spy.written.Add(1)
	} else if err == nil && out == store.PreparedStale {
		tx.spy.stale.Add(1)
	}
	return out, err
}

func (tx *spyTx) Session(id string) (*core.Session, error) {
	tx.spy.reads.Add(1)
	return tx.Tx.Session(id)
}

// newSpyService returns a Service on a fresh bbolt file behind a batchSpy,
// with pending sessions ses_0… (HPP sessions hpp_0…) and their secret.
func newSpyService(t *testing.T, sessions int) (*Service, *batchSpy, string) {
	t.Helper()
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
		db.Close()
	})
	spy := &batchSpy{DB: db}
	svc := New(spy, &scriptedKlarna{}, Config{Now: func() time.Time { return chargeT0 }})
	secret, hash := NewSecret()
	for i := range sessions {
		sess := &core.Session{ID: fmt.Sprint("ses_", i), Storefront: "shop", Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone,
			Status: core.SessionPending, KlarnaStatus: core.KlarnaWaiting, HPPSessionID: fmt.Sprint("hpp_", i), SecretHash: hash,
			CreatedAt: chargeT0, UpdatedAt: chargeT0, ExpiresAt: chargeT0.Add(47 * time.Hour), CheckAt: chargeT0.Add(time.Minute)}
		if err := db.Update(func(tx store.Tx) error { return tx.PutSession(sess) }); err != nil {
			t.Fatal(err)
		}
	}
	return svc, spy, secret
}

func callbackBody(hppID, event, status string) []byte {
	return fmt.Appendf(nil, `{"event_id":%q,"session":{"session_id":%q,"status":%q}}`, event, hppID, status)
}

// klarnaHistory is the Klarna statuses of a session's history entries and
// whether each event is marked.
func klarnaHistory(t *testing.T, db store.Store, id, hppID string, events ...string) ([]string, []bool) {
	t.Helper()
	var statuses []string
	var marked []bool
	if err := db.View(func(tx store.Tx) error {
		s, err := tx.Session(id)
		if err != nil {
			return err
		}
		for _, c := range s.History {
			statuses = append(statuses, c.KlarnaStatus)
		}
		if last := statuses[len(statuses)-1]; last != s.KlarnaStatus {
			t.Errorf("%s: Klarna status %s, last history entry %s", id, s.KlarnaStatus, last)
		}
		for _, ev := range events {
			seen, err := tx.SeenEvent(hppID, ev)
			if err != nil {
				return err
			}
			marked = append(marked, seen)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return statuses, marked
}

// A callback's session write is prepared in its View and written as it is
// when nothing changed the session meanwhile: its Batch reads no session.
// When another callback changed it between the View and the Batch, the
// prepared write is refused and the Batch reads the session and observes
// again: both callbacks' history entries and marks are kept.
func TestCallbackPreparedWrite(t *testing.T) {
	t.Run("nothing changed", func(t *testing.T) {
		svc, spy, secret := newSpyService(t, 1)
		res, err := svc.HandleCallback("ses_0", secret, "hpp_0", callbackBody("hpp_0", "ev_1", core.KlarnaInProgress))
		if err != nil || res.Duplicate {
			t.Fatalf("callback: %+v, %v", res, err)
		}
		if w, st, r, n := spy.written.Load(), spy.stale.Load(), spy.refused.Load(), spy.reads.Load(); w != 1 || st != 0 || r != 0 || n != 0 {
			t.Errorf("prepared writes written %d, stale %d, refused %d, sessions read in the Batch %d; want 1, 0, 0, 0", w, st, r, n)
		}
		statuses, marked := klarnaHistory(t, spy, "ses_0", "hpp_0", "ev_1")
		if !slices.Equal(statuses, []string{core.KlarnaInProgress}) || !marked[0] {
			t.Errorf("history %v, marked %v", statuses, marked)
		}
		var cur *core.Session
		if err := spy.View(func(tx store.Tx) error { var err error; cur, err = tx.Session("ses_0"); return err }); err != nil {
			t.Fatal(err)
		}
		if !cur.CheckAt.After(chargeT0.Add(time.Minute)) || !cur.UpdatedAt.Equal(chargeT0) {
			t.Errorf("CheckAt %v, UpdatedAt %v: the observation was not applied", cur.CheckAt, cur.UpdatedAt)
		}
		if res, err := svc.HandleCallback("ses_0", secret, "hpp_0", callbackBody("hpp_0", "ev_1", core.KlarnaInProgress)); err != nil || !res.Duplicate {
			t.Errorf("the same event again: %+v, %v; want a duplicate", res, err)
		}
	})
	t.Run("changed between the View and the Batch", func(t *testing.T) {
		svc, spy, secret := newSpyService(t, 1)
		// The first callback's Batch waits for a second callback to the same
		// session to commit: its prepared write is then stale.
		spy.before = func() {
			if _, err := svc.HandleCallback("ses_0", secret, "hpp_0", callbackBody("hpp_0", "ev_2", core.KlarnaBack)); err != nil {
				t.Errorf("second callback: %v", err)
			}
		}
		if _, err := svc.HandleCallback("ses_0", secret, "hpp_0", callbackBody("hpp_0", "ev_1", core.KlarnaInProgress)); err != nil {
			t.Fatal(err)
		}
		if w, st, r, n := spy.written.Load(), spy.stale.Load(), spy.refused.Load(), spy.reads.Load(); w != 1 || st != 1 || r != 1 || n != 1 {
			t.Errorf("prepared writes written %d, stale %d, refused %d, sessions read in the Batch %d; want 1, 1, 1, 1", w, st, r, n)
		}
		statuses, marked := klarnaHistory(t, spy, "ses_0", "hpp_0", "ev_1", "ev_2")
		if !slices.Equal(statuses, []string{core.KlarnaBack, core.KlarnaInProgress}) || !marked[0] || !marked[1] {
			t.Errorf("history %v, marked %v; want [BACK IN_PROGRESS], both marked", statuses, marked)
		}
		if got := svc.Stats.CallbacksAccepted.Load(); got != 2 {
			t.Errorf("%d callbacks accepted, want 2", got)
		}
	})
	// A session id CheckCallback accepts, and its secret.
	checkedSession := func(t *testing.T, spy *batchSpy) (id, secret string) {
		t.Helper()
		id = newID(core.SessionIDPrefix)
		secret, hash := NewSecret()
		sess := &core.Session{ID: id, Storefront: "shop", Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone,
			Status: core.SessionPending, KlarnaStatus: core.KlarnaWaiting, HPPSessionID: "hpp_c", SecretHash: hash,
			CreatedAt: chargeT0, UpdatedAt: chargeT0, ExpiresAt: chargeT0.Add(47 * time.Hour), CheckAt: chargeT0.Add(time.Minute)}
		if err := spy.DB.Update(func(tx store.Tx) error { return tx.PutSession(sess) }); err != nil {
			t.Fatal(err)
		}
		return id, secret
	}
	t.Run("checked: one read for the check and the write", func(t *testing.T) {
		svc, spy, _ := newSpyService(t, 0)
		id, secret := checkedSession(t, spy)
		chk, err := svc.CheckCallback(CallbackHPPStatus, id, secret, "hpp_c")
		if err != nil {
			t.Fatal(err)
		}
		res, err := svc.HandleCheckedCallback(chk, secret, "hpp_c", callbackBody("hpp_c", "ev_1", core.KlarnaInProgress))
		if err != nil || res.Duplicate || res.SessionID != id {
			t.Fatalf("callback: %+v, %v", res, err)
		}
		if v, w, n := spy.views.Load(), spy.written.Load(), spy.reads.Load(); v != 1 || w != 1 || n != 0 {
			t.Errorf("views %d, prepared writes written %d, sessions read in the Batch %d; want 1, 1, 0", v, w, n)
		}
		statuses, marked := klarnaHistory(t, spy, id, "hpp_c", "ev_1")
		if !slices.Equal(statuses, []string{core.KlarnaInProgress}) || !marked[0] {
			t.Errorf("history %v, marked %v", statuses, marked)
		}
	})
	t.Run("checked: changed while the body arrived", func(t *testing.T) {
		svc, spy, _ := newSpyService(t, 0)
		id, secret := checkedSession(t, spy)
		chk, err := svc.CheckCallback(CallbackHPPStatus, id, secret, "hpp_c")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.HandleCallback(id, secret, "hpp_c", callbackBody("hpp_c", "ev_2", core.KlarnaBack)); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.HandleCheckedCallback(chk, secret, "hpp_c", callbackBody("hpp_c", "ev_1", core.KlarnaInProgress)); err != nil {
			t.Fatal(err)
		}
		if w, st, r, n := spy.written.Load(), spy.stale.Load(), spy.refused.Load(), spy.reads.Load(); w != 1 || st != 1 || r != 1 || n != 1 {
			t.Errorf("prepared writes written %d, stale %d, refused %d, sessions read in the Batch %d; want 1, 1, 1, 1", w, st, r, n)
		}
		statuses, marked := klarnaHistory(t, spy, id, "hpp_c", "ev_1", "ev_2")
		if !slices.Equal(statuses, []string{core.KlarnaBack, core.KlarnaInProgress}) || !marked[0] || !marked[1] {
			t.Errorf("history %v, marked %v; want [BACK IN_PROGRESS], both marked", statuses, marked)
		}
	})
	t.Run("a status change takes the ordinary path", func(t *testing.T) {
		svc, spy, secret := newSpyService(t, 1)
		// An unsigned claim of completion adds a re-read job: not prepared.
		if _, err := svc.HandleCallback("ses_0", secret, "hpp_0", callbackBody("hpp_0", "ev_1", core.KlarnaCompleted)); err != nil {
			t.Fatal(err)
		}
		if w, r, n := spy.written.Load(), spy.refused.Load(), spy.reads.Load(); w != 0 || r != 0 || n != 1 {
			t.Errorf("prepared writes written %d, refused %d, sessions read in the Batch %d; want 0, 0, 1", w, r, n)
		}
		if err := spy.View(func(tx store.Tx) error { _, err := tx.Job(core.SyncJobID("ses_0")); return err }); err != nil {
			t.Errorf("re-read job: %v", err)
		}
	})
}

// Callbacks to one session at once, four sessions at a time, each callback a
// different Klarna status: whichever order they commit in and whichever path
// each takes, every callback adds its history entry once and its mark.
func TestCallbacksToOneSessionAtOnce(t *testing.T) {
	const sessions = 8
	svc, spy, secret := newSpyService(t, sessions)
	statuses := []string{core.KlarnaInProgress, core.KlarnaBack, core.KlarnaFailed, core.KlarnaErrorStatus}
	var wg sync.WaitGroup
	for i := range sessions {
		for j, st := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, hppID := fmt.Sprint("ses_", i), fmt.Sprint("hpp_", i)
				if res, err := svc.HandleCallback(id, secret, hppID, callbackBody(hppID, fmt.Sprint("ev_", j), st)); err != nil || res.Duplicate {
					t.Errorf("callback %d to %s: %+v, %v", j, id, res, err)
				}
			}()
		}
	}
	wg.Wait()
	for i := range sessions {
		got, marked := klarnaHistory(t, spy, fmt.Sprint("ses_", i), fmt.Sprint("hpp_", i), "ev_0", "ev_1", "ev_2", "ev_3")
		sorted := slices.Sorted(slices.Values(got))
		if want := slices.Sorted(slices.Values(statuses)); !slices.Equal(sorted, want) {
			t.Errorf("ses_%d: history %v, want each of %v once", i, got, statuses)
		}
		if slices.Contains(marked, false) {
			t.Errorf("ses_%d: events marked %v", i, marked)
		}
	}
	if w, r := spy.written.Load(), spy.refused.Load(); w+r != sessions*4 || w == 0 {
		t.Errorf("prepared writes written %d, refused %d; want %d in all, some written", w, r, sessions*4)
	}
	t.Logf("prepared writes written %d, refused %d", spy.written.Load(), spy.refused.Load())
}
