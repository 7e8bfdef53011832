package hpp

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
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
			db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{})
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
			if err := db.Update(func(tx store.Tx) error { return tx.PutSession(sess) }); err != nil {
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
			if err := db.View(func(tx store.Tx) error {
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

// CheckCallback is what an outsider's request costs: an id hppd cannot have
// made, an unknown session and a wrong secret all get the same answer.
func TestCheckCallback(t *testing.T) {
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc := New(db, &scriptedKlarna{}, Config{Now: func() time.Time { return chargeT0 }})
	id := newID(core.SessionIDPrefix)
	secret, hash := NewSecret()
	notify, notifyHash := NewSecret()
	sess := &core.Session{ID: id, Storefront: "shop", Integration: core.IntegrationHPP, Status: core.SessionPending, HPPSessionID: "hpp_c",
		SecretHash: hash, NotifySecretHash: notifyHash, CreatedAt: chargeT0, UpdatedAt: chargeT0, ExpiresAt: chargeT0.Add(47 * time.Hour)}
	if err := db.Update(func(tx store.Tx) error { return tx.PutSession(sess) }); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		kind   CallbackKind
		id     string
		secret string
		hppID  string
		want   error
	}{
		{"status", CallbackHPPStatus, id, secret, "hpp_c", nil},
		{"an id hppd cannot have made", CallbackHPPStatus, "ses_../../etc", secret, "hpp_c", errNoCallback},
		{"an unknown session", CallbackHPPStatus, newID(core.SessionIDPrefix), secret, "hpp_c", errNoCallback},
		{"a wrong secret", CallbackHPPStatus, id, "wrong", "hpp_c", errNoCallback},
		{"no secret", CallbackHPPStatus, id, "", "hpp_c", errNoCallback},
		{"no hppId", CallbackHPPStatus, id, secret, "", errHPPMismatch},
		{"a malformed hppId", CallbackHPPStatus, id, secret, "hpp c/..", errHPPMismatch},
		{"the authorization callback needs no hppId", CallbackKPAuthorization, id, secret, "", nil},
		{"a notification takes the notification secret", CallbackKPNotification, id, notify, "", nil},
		{"a notification refuses the callback secret", CallbackKPNotification, id, secret, "", errNoCallback},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chk, err := svc.CheckCallback(tc.kind, tc.id, tc.secret, tc.hppID)
			if err != tc.want {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if (chk != nil) != (err == nil) || chk != nil && chk.session.ID != id {
				t.Fatalf("checked %+v with err %v", chk, err)
			}
		})
	}
}

// The SDK's authorization callback authorizes the session and commits its
// place_order job (body and key built once); a repeat is acknowledged, a
// different token is a conflict.
func TestHandleAuthorization(t *testing.T) {
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc := New(db, &scriptedKlarna{}, Config{PublicURL: "https://hppd.example", Now: func() time.Time { return chargeT0 }})
	secret, hash := NewSecret()
	sess := &core.Session{ID: "ses_a", Storefront: "shop", Integration: core.IntegrationSDK, PlaceOrderMode: core.ModeNone, Status: core.SessionPending,
		KPSessionID: "kp_a", SecretHash: hash, Purchase: chargeRequest(true).Purchase,
		CreatedAt: chargeT0, UpdatedAt: chargeT0, ExpiresAt: chargeT0.Add(48 * time.Hour)}
	hppSess := *sess
	hppSess.ID, hppSess.Integration, hppSess.KPSessionID = "ses_h", core.IntegrationHPP, "kp_h"
	if err := db.Update(func(tx store.Tx) error {
		if err := tx.PutSession(sess); err != nil {
			return err
		}
		return tx.PutSession(&hppSess)
	}); err != nil {
		t.Fatal(err)
	}
	body := func(tok, kp string) []byte {
		return []byte(`{"authorization_token":"` + tok + `","session_id":"` + kp + `"}`)
	}
	if _, err := svc.HandleAuthorization("ses_a", secret, body("tok_1", "kp_other")); err != errKPSessionID {
		t.Fatalf("another KP session: %v", err)
	}
	if _, err := svc.HandleAuthorization("ses_h", secret, body("tok_1", "kp_h")); err != errNotSDK {
		t.Fatalf("an HPP session: %v", err)
	}
	if _, err := svc.HandleAuthorization("ses_a", "wrong", body("tok_1", "kp_a")); err != errNoCallback {
		t.Fatalf("a wrong secret: %v", err)
	}
	res, err := svc.HandleAuthorization("ses_a", secret, body("tok_1", "kp_a"))
	if err != nil || res.Duplicate {
		t.Fatalf("%+v, %v", res, err)
	}
	var cur *core.Session
	var job *core.Job
	if err := db.View(func(tx store.Tx) error {
		var err error
		if cur, err = tx.Session("ses_a"); err != nil {
			return err
		}
		job, err = tx.Job(core.PlaceOrderJobID("ses_a"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if cur.Status != core.SessionAuthorized || !cur.AuthorizedWith("tok_1") || len(cur.NotifySecretHash) == 0 {
		t.Fatalf("session %+v", cur)
	}
	if job.IdempotencyKey != "hppd-order-ses_a" || !strings.Contains(string(job.Request), `"merchant_reference2":"ses_a"`) ||
		!strings.Contains(string(job.Request), "https://hppd.example/klarna/kp/ses_a/notification?secret=") {
		t.Fatalf("place_order job %+v: %s", job, job.Request)
	}
	if res, err := svc.HandleAuthorization("ses_a", secret, body("tok_1", "kp_a")); err != nil || !res.Duplicate {
		t.Fatalf("repeat: %+v, %v", res, err)
	}
	if _, err := svc.HandleAuthorization("ses_a", secret, body("tok_2", "kp_a")); core.ErrorCodeOf(err) != core.CodeConflict {
		t.Fatalf("another token: %v", err)
	}
}
