package hpp

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Status callbacks against a real store: what is checked before anything is
// recorded, and what each accepted callback writes.
func TestHandleCallback(t *testing.T) {
	const body = `{"event_id":"ev_1","session":{"session_id":"hpp_c","status":"IN_PROGRESS"}}`
	cases := []struct {
		name      string
		final     bool   // the session is order_placed
		id        string // default ses_c
		secret    string // default the session's
		hppID     string // default hpp_c
		body      string
		twice     bool // the same callback again
		err       error
		duplicate bool
		resync    bool
		klarna    string // Klarna's status on file after
		syncJob   bool
	}{
		{name: "in progress is recorded", body: body, klarna: core.KlarnaInProgress},
		{name: "a claimed completion only schedules a re-read", body: `{"event_id":"ev_2","session":{"session_id":"hpp_c","status":"COMPLETED","authorization_token":"forged"}}`,
			klarna: core.KlarnaWaiting, syncJob: true},
		{name: "a repeated event changes nothing", body: body, twice: true, duplicate: true, klarna: core.KlarnaInProgress},
		{name: "a status hppd does not know is re-read", body: `{"event_id":"ev_3","session":{"session_id":"hpp_c","status":"NEW_STATUS"}}`,
			resync: true, klarna: core.KlarnaWaiting, syncJob: true},
		{name: "an unreadable body with the right secret is re-read", body: `{"event_id":`, resync: true, klarna: core.KlarnaWaiting, syncJob: true},
		{name: "a final session acknowledges", final: true, body: body, duplicate: true, klarna: core.KlarnaCompleted},
		{name: "an unknown session is refused", id: "ses_unknown", body: body, err: errNoCallback, klarna: core.KlarnaWaiting},
		{name: "a wrong secret gets the same answer", secret: "wrong", body: body, err: errNoCallback, klarna: core.KlarnaWaiting},
		{name: "no hppId is refused", hppID: "-", body: body, err: errHPPMismatch, klarna: core.KlarnaWaiting},
		{name: "a body naming another HPP session is refused", body: `{"event_id":"ev_4","session":{"session_id":"hpp_x","status":"IN_PROGRESS"}}`,
			err: errBodyHPPID, klarna: core.KlarnaWaiting},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db, err := store.Open(filepath.Join(t.TempDir(), "hppd.db"), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			svc := New(db, &scriptedKlarna{}, Config{Now: func() time.Time { return chargeT0 }})
			secret, hash := NewSecret()
			sess := &core.Session{ID: "ses_c", Storefront: "shop", Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone,
				Status: core.SessionPending, KlarnaStatus: core.KlarnaWaiting, HPPSessionID: "hpp_c", SecretHash: hash,
				CreatedAt: chargeT0, UpdatedAt: chargeT0, ExpiresAt: chargeT0.Add(47 * time.Hour)}
			if tc.final {
				sess.Status, sess.KlarnaStatus, sess.OrderID = core.SessionOrderPlaced, core.KlarnaCompleted, "ord_1"
			}
			if err := db.Update(func(tx *store.Tx) error { return tx.PutSession(sess) }); err != nil {
				t.Fatal(err)
			}
			id, sec, hppID := "ses_c", secret, "hpp_c"
			if tc.id != "" {
				id = tc.id
			}
			if tc.secret != "" {
				sec = tc.secret
			}
			if tc.hppID == "-" {
				hppID = ""
			}
			res, err := svc.HandleCallback(id, sec, hppID, []byte(tc.body))
			if tc.twice {
				res, err = svc.HandleCallback(id, sec, hppID, []byte(tc.body))
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if res.Duplicate != tc.duplicate || res.Resync != tc.resync {
				t.Fatalf("result %+v", res)
			}
			var cur *core.Session
			var syncJob bool
			if err := db.View(func(tx *store.Tx) error {
				var err error
				if cur, err = tx.Session("ses_c"); err != nil {
					return err
				}
				_, err = tx.Job(core.SyncJobID("ses_c"))
				syncJob = err == nil
				if core.IsNotFound(err) {
					err = nil
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if cur.KlarnaStatus != tc.klarna || syncJob != tc.syncJob {
				t.Fatalf("klarna status %s, sync job %v; want %s, %v", cur.KlarnaStatus, syncJob, tc.klarna, tc.syncJob)
			}
			if cur.Status != sess.Status {
				t.Fatalf("a callback moved the session to %s", cur.Status)
			}
			accepted := svc.Stats.CallbacksAccepted.Load() + svc.Stats.CallbacksResync.Load()
			rejected := svc.Stats.CallbacksRejected.Load()
			switch {
			case tc.err != nil && (accepted != 0 || rejected != 1):
				t.Fatalf("refused callback counted %d accepted, %d rejected", accepted, rejected)
			case tc.err == nil && rejected != 0:
				t.Fatalf("accepted callback counted as rejected")
			}
		})
	}
}
