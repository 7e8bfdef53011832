package hpp

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// Session creation and its failure modes against a real store, with
// Klarna's KP and HPP answers scripted.

type sessionKlarna struct {
	Klarna

	mu       sync.Mutex
	kp       []*klarna.KPSessionRequest
	hpp      []*klarna.HPPSessionRequest
	hppErrs  []error // answers to the HPP creations, in order; nil: created
	disabled []string
}

func (k *sessionKlarna) CreateKPSession(_ context.Context, req *klarna.KPSessionRequest) (*klarna.KPSession, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kp = append(k.kp, req)
	return &klarna.KPSession{SessionID: "kp_1", ClientToken: "ct"}, nil
}

func (k *sessionKlarna) CreateHPPSession(_ context.Context, req *klarna.HPPSessionRequest) (*klarna.HPPSession, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hpp = append(k.hpp, req)
	if len(k.hppErrs) > 0 {
		err := k.hppErrs[0]
		k.hppErrs = k.hppErrs[1:]
		if err != nil {
			return nil, err
		}
	}
	exp := chargeT0.Add(47 * time.Hour)
	return &klarna.HPPSession{SessionID: "hpp_1", SessionURL: "https://klarna.example/hpp/v1/sessions/hpp_1",
		RedirectURL: "https://pay.example/hpp_1", ExpiresAt: &exp}, nil
}

func (k *sessionKlarna) DisableHPPSessionAt(_ context.Context, id, _ string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.disabled = append(k.disabled, id)
	return nil
}

func (k *sessionKlarna) PaymentSessionURL(id string) string {
	return "https://klarna.example/payments/v1/sessions/" + id
}

func newSessionEnv(t *testing.T, hppErrs ...error) (*Service, *sessionKlarna, *boltstore.DB) {
	t.Helper()
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kl := &sessionKlarna{hppErrs: hppErrs}
	svc := New(db, kl, Config{PublicURL: "https://hppd.example", Now: func() time.Time { return chargeT0 }})
	return svc, kl, db
}

func sessionRequest(key string) SessionRequest {
	r := chargeRequest(true)
	return SessionRequest{Purchase: r.Purchase, ReturnURLs: r.ReturnURLs, IdempotencyKey: key}
}

func TestCreateSessionRecordsKPAndHPP(t *testing.T) {
	svc, kl, _ := newSessionEnv(t)
	sess, err := svc.CreateSession(context.Background(), "shop", sessionRequest(""))
	if err != nil {
		t.Fatal(err)
	}
	if sess.Status != core.SessionPending || sess.KPSessionID != "kp_1" || sess.HPPSessionID != "hpp_1" || sess.RedirectURL == "" ||
		sess.KlarnaStatus != core.KlarnaWaiting || sess.PlaceOrderMode != core.ModeNone || !sess.CheckAt.Equal(chargeT0.Add(svc.cfg.Policy.StaleAfter)) {
		t.Fatalf("session %+v", sess)
	}
	if len(kl.kp) != 1 || kl.kp[0].MerchantReference2 != sess.ID {
		t.Fatalf("KP request %+v: the session id goes into merchant_reference2", kl.kp)
	}
	mu := kl.hpp[0].MerchantURLs
	u, err := url.Parse(mu.StatusUpdate)
	if err != nil {
		t.Fatal(err)
	}
	if u.Path != "/klarna/hpp/"+sess.ID+"/status" || !SecretMatches(u.Query().Get("secret"), sess.SecretHash) || u.Query().Get("hppId") != "{{session_id}}" {
		t.Fatalf("status_update %q does not carry the session's secret and hppId", mu.StatusUpdate)
	}
	if strings.Contains(mu.Success, "secret") || !strings.HasPrefix(mu.Success, "https://hppd.example/shopper/"+sess.ID+"/success?") {
		t.Fatalf("success URL %q", mu.Success)
	}
	got, err := svc.Session("shop", sess.ID)
	if err != nil || got.HPPSessionID != "hpp_1" {
		t.Fatalf("stored %+v, %v", got, err)
	}
	if _, err := svc.Session("other", sess.ID); !core.IsNotFound(err) {
		t.Fatalf("another storefront's read: %v", err)
	}
}

// A transient HPP failure with an Idempotency-Key keeps the session; the
// retry with the same key finishes it on the same KP session.
func TestHPPStepTransientWithKeyIsResumed(t *testing.T) {
	svc, kl, _ := newSessionEnv(t, &klarna.Error{Op: "create_hpp_session", HTTPStatus: 503})
	_, err := svc.CreateSession(context.Background(), "shop", sessionRequest("key-1"))
	if core.ErrorCodeOf(err) != core.CodeUnavailable || !strings.Contains(err.Error(), "retry with the same Idempotency-Key") {
		t.Fatalf("err %v", err)
	}
	sess, err := svc.CreateSession(context.Background(), "shop", sessionRequest("key-1"))
	if err != nil {
		t.Fatal(err)
	}
	if sess.Status != core.SessionPending || sess.HPPSessionID != "hpp_1" || len(kl.kp) != 1 || len(kl.hpp) != 2 {
		t.Fatalf("session %+v after %d KP and %d HPP creations", sess, len(kl.kp), len(kl.hpp))
	}
}

// Without a key (or with Klarna's refusal) the HPP step's failure fails the
// session, naming it.
func TestHPPStepRefusedFailsTheSession(t *testing.T) {
	svc, _, db := newSessionEnv(t, &klarna.Error{Op: "create_hpp_session", HTTPStatus: 400, Code: "BAD_VALUE"})
	_, err := svc.CreateSession(context.Background(), "shop", sessionRequest("key-2"))
	var ce *core.Error
	if !asCoreError(err, &ce) || ce.Code != core.CodeUpstream || !strings.Contains(ce.Message, "recorded as failed") {
		t.Fatalf("err %v", err)
	}
	var failed []*core.Session
	if err := db.View(func(tx store.Tx) error {
		var err error
		failed, _, err = tx.ListSessions(core.ListQuery{Storefront: "shop", Limit: 10})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || failed[0].Status != core.SessionFailed || failed[0].Error == nil || failed[0].Error.Code != "BAD_VALUE" {
		t.Fatalf("sessions %+v", failed)
	}
}

// A session whose creation stopped between the KP and the HPP step (hppd
// stopped) is given up by its re-read: nobody got a page to pay on.
func TestInterruptedCreationIsGivenUp(t *testing.T) {
	svc, _, db := newSessionEnv(t)
	sess := &core.Session{ID: "ses_i", Storefront: "shop", Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone,
		Status: core.SessionPending, KPSessionID: "kp_1", CreatedAt: chargeT0, UpdatedAt: chargeT0, ExpiresAt: chargeT0.Add(48 * time.Hour)}
	job := &core.Job{ID: core.RereadJobID("ses_i"), Kind: core.JobRereadSession, SessionID: "ses_i", DueAt: chargeT0, CreatedAt: chargeT0, Source: core.SourcePoller}
	if err := db.Update(func(tx store.Tx) error {
		if err := tx.PutSession(sess); err != nil {
			return err
		}
		_, err := tx.AddJob(job)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := svc.RunJob(context.Background(), job.ID); err != nil {
		t.Fatal(err)
	}
	got, err := svc.Session("shop", "ses_i")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != core.SessionFailed || got.History[len(got.History)-1].Reason != "creation interrupted" {
		t.Fatalf("session %+v", got)
	}
}

// A storefront's cancel disables the HPP session at Klarna and ends the
// session cancelled; a second cancel changes nothing.
func TestCancelSession(t *testing.T) {
	svc, kl, _ := newSessionEnv(t)
	sess, err := svc.CreateSession(context.Background(), "shop", sessionRequest(""))
	if err != nil {
		t.Fatal(err)
	}
	got, err := svc.CancelSession(context.Background(), "shop", sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != core.SessionCancelled || got.KlarnaStatus != core.KlarnaDisabled || len(kl.disabled) != 1 || kl.disabled[0] != "hpp_1" {
		t.Fatalf("session %+v, disabled %v", got, kl.disabled)
	}
	if got, err = svc.CancelSession(context.Background(), "shop", sess.ID); err != nil || got.Status != core.SessionCancelled || len(kl.disabled) != 1 {
		t.Fatalf("second cancel: %+v, %v, disabled %v", got, err, kl.disabled)
	}
	if _, err := svc.CancelSession(context.Background(), "other", sess.ID); !core.IsNotFound(err) {
		t.Fatalf("another storefront's cancel: %v", err)
	}
}
