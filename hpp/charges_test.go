package hpp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// The charge flow against a real store, with Klarna's answers scripted: what
// hpp writes for each answer (the charge, its jobs, the token's view, the
// storefront events), and what its errors say.

// scriptedKlarna answers token orders from a script, one answer a call, and
// creates KP and HPP sessions unless told to refuse.
type scriptedKlarna struct {
	Klarna // the calls these tests do not make

	mu      sync.Mutex
	answers []tokenAnswer
	keys    []string // the Klarna-Idempotency-Key of each token order
	tokens  []string
	kpErr   error
	om      *klarna.OMOrder // ReadOrder's answer
	omErr   error
	before  func() // runs before a token order is answered

	kpCalls, hppCalls int
	hppErrs           []error  // the first HPP creations' answers, one a call
	beforeHPP         func()   // runs before an HPP session is made
	disabled          []string // HPP sessions disabled
}

func (k *scriptedKlarna) ReadOrder(context.Context, string) (*klarna.OMOrder, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.om, k.omErr
}

type tokenAnswer struct {
	order *klarna.Order
	err   error
}

func (k *scriptedKlarna) CreateTokenOrderRaw(_ context.Context, token string, _ []byte, key string) (*klarna.Order, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append(k.keys, key)
	k.tokens = append(k.tokens, token)
	if k.before != nil {
		k.before()
	}
	if len(k.answers) == 0 {
		return nil, &klarna.Error{Op: "create_token_order", Err: errors.New("script ran out")}
	}
	a := k.answers[0]
	k.answers = k.answers[1:]
	return a.order, a.err
}

func (k *scriptedKlarna) calls() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.keys...)
}

func (k *scriptedKlarna) CreateKPSession(context.Context, *klarna.KPSessionRequest) (*klarna.KPSession, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kpCalls++
	if k.kpErr != nil {
		return nil, k.kpErr
	}
	return &klarna.KPSession{SessionID: fmt.Sprint("kp_", k.kpCalls), ClientToken: "ct"}, nil
}

func (k *scriptedKlarna) CreateHPPSession(context.Context, *klarna.HPPSessionRequest) (*klarna.HPPSession, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hppCalls++
	if k.beforeHPP != nil {
		k.beforeHPP()
	}
	if len(k.hppErrs) > 0 {
		err := k.hppErrs[0]
		k.hppErrs = k.hppErrs[1:]
		return nil, err
	}
	id := fmt.Sprint("hpp_", k.hppCalls)
	return &klarna.HPPSession{SessionID: id, RedirectURL: "https://pay.example/" + id}, nil
}

func (k *scriptedKlarna) DisableHPPSessionAt(_ context.Context, id, _ string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.disabled = append(k.disabled, id)
	return nil
}

func (k *scriptedKlarna) PaymentSessionURL(id string) string {
	return "https://klarna.example/payments/v1/sessions/" + id
}

// recordingEmitter keeps the storefront events emitted, in order.
type recordingEmitter struct {
	mu     sync.Mutex
	events []string
}

func (e *recordingEmitter) SessionEvent(s *core.Session, eventType string, _ time.Time) (*core.Job, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, eventType+" "+s.ID)
	return nil, nil
}

func (e *recordingEmitter) ChargeEvent(c *core.Charge, _ *core.Session, eventType string, _ time.Time) (*core.Job, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, eventType)
	return nil, nil
}

func (e *recordingEmitter) Deliver(context.Context, *core.Job) error { return nil }

func (e *recordingEmitter) charges() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.events {
		if strings.HasPrefix(ev, "charge.") {
			out = append(out, ev)
		}
	}
	return out
}

var chargeT0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

type chargeEnv struct {
	db   *boltstore.DB
	kl   *scriptedKlarna
	ev   *recordingEmitter
	svc  *Service
	logs *lockedWriter
}

func newChargeEnv(t *testing.T, answers ...tokenAnswer) *chargeEnv {
	t.Helper()
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &chargeEnv{db: db, kl: &scriptedKlarna{answers: answers}, ev: &recordingEmitter{}, logs: &lockedWriter{}}
	e.svc = New(db, e.kl, Config{
		PublicURL: "https://hppd.example", Now: func() time.Time { return chargeT0 }, Emitter: e.ev,
		PresentRetryDelay: time.Millisecond, ChargeRetrySchedule: []time.Duration{time.Hour, 6 * time.Hour},
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
	})
	return e
}

// lockedWriter is a log sink the runner's goroutines and the test share.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func chargeRequest(present bool) ChargeRequest {
	return ChargeRequest{
		CustomerToken: "tok_secret_1", CustomerPresent: &present,
		Purchase: core.Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 10000, OrderTaxAmount: 2000,
			OrderLines: []core.OrderLine{{Type: "physical", Name: "Cup", Quantity: 2, UnitPrice: 5000, TaxRate: 2500, TotalAmount: 10000, TotalTaxAmount: 2000}}},
		ReturnURLs: core.ReturnURLs{Success: "https://shop.example/ok", Failure: "https://shop.example/fail"},
	}
}

// jobs lists the jobs on file as "id key due-after-t0".
func (e *chargeEnv) jobs(t *testing.T) []string {
	t.Helper()
	var out []string
	if err := e.db.View(func(tx store.Tx) error {
		js, err := tx.JobsDue(chargeT0.Add(1000*time.Hour), 0)
		for _, j := range js {
			out = append(out, fmt.Sprintf("%s %s %s", j.ID, j.IdempotencyKey, j.DueAt.Sub(chargeT0)))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// onlyCharge returns the one charge on file.
func (e *chargeEnv) onlyCharge(t *testing.T) *core.Charge {
	t.Helper()
	list, _, err := e.svc.Charges(core.ListQuery{Storefront: "shop", Limit: 10})
	if err != nil || len(list) != 1 {
		t.Fatalf("charges %v, %v", list, err)
	}
	return list[0]
}

func (e *chargeEnv) token(t *testing.T) *core.TokenInfo {
	t.Helper()
	var ti *core.TokenInfo
	if err := e.db.View(func(tx store.Tx) error {
		var err error
		ti, err = tx.Token("shop", "tok_secret_1")
		if core.IsNotFound(err) {
			return nil
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ti
}

func declined() tokenAnswer {
	return tokenAnswer{err: &klarna.Error{Op: "create_token_order", HTTPStatus: 403, Code: klarna.CodePaymentMethodFailed}}
}

func unavailable() tokenAnswer {
	return tokenAnswer{err: &klarna.Error{Op: "create_token_order", HTTPStatus: 403, Code: klarna.CodeUnavailablePaymentMethod}}
}

func unusable() tokenAnswer {
	return tokenAnswer{err: &klarna.Error{Op: "create_token_order", HTTPStatus: 200, Err: errors.New("no order_id")}}
}

func charged(fraud string) tokenAnswer {
	return tokenAnswer{order: &klarna.Order{OrderID: "ord_1", FraudStatus: fraud}}
}

func TestCreateChargeWritesWhatTheAnswerDecides(t *testing.T) {
	cases := []struct {
		name    string
		present bool
		answers []tokenAnswer
		status  core.ChargeStatus
		keys    []string // attempt keys sent, by try
		jobs    []string // left on file, with the charge id as %s
		events  []string
		token   core.ChargeStatus // the token's last outcome; "" no view
	}{
		{"charged", false, []tokenAnswer{charged(core.FraudAccepted)}, core.ChargeCharged, []string{"1"}, nil, []string{"charge.charged"}, core.ChargeCharged},
		{"charged under fraud review is watched", false, []tokenAnswer{charged(core.FraudPending)}, core.ChargeCharged, []string{"1"},
			[]string{"check_fraud/%s  15m0s"}, []string{"charge.charged"}, core.ChargeCharged},
		{"declined absent is scheduled", false, []tokenAnswer{declined()}, core.ChargeRetrying, []string{"1"},
			[]string{"retry_charge/%s/1 %s-2 1h0m0s"}, nil, ""},
		{"unavailable absent needs the customer", false, []tokenAnswer{unavailable()}, core.ChargeNeedsCustomer, []string{"1"}, nil,
			[]string{"charge.needs_customer"}, core.ChargeNeedsCustomer},
		{"refused fails", false, []tokenAnswer{{err: &klarna.Error{Op: "create_token_order", HTTPStatus: 400, Code: "BAD_VALUE"}}}, core.ChargeFailed, []string{"1"}, nil,
			[]string{"charge.failed"}, core.ChargeFailed},
		{"no answer keeps the safety job", false, []tokenAnswer{{err: &klarna.Error{Op: "create_token_order", HTTPStatus: 503}}}, core.ChargePending, []string{"1"},
			[]string{"retry_charge/%s/0 %s-1 1m0s"}, nil, ""},
		{"declined present tries new keys at once", true, []tokenAnswer{declined(), declined(), charged(core.FraudAccepted)}, core.ChargeCharged, []string{"1", "2", "3"}, nil,
			[]string{"charge.charged"}, core.ChargeCharged},
		{"declined present until the retries are used up fails", true, []tokenAnswer{declined(), declined(), declined()}, core.ChargeFailed, []string{"1", "2", "3"}, nil,
			[]string{"charge.failed"}, core.ChargeFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newChargeEnv(t, tc.answers...)
			c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(tc.present))
			if err != nil {
				t.Fatal(err)
			}
			if c.Status != tc.status {
				t.Fatalf("status %s, want %s", c.Status, tc.status)
			}
			var keys []string
			for _, k := range tc.keys {
				keys = append(keys, c.ID+"-"+k)
			}
			if got := e.kl.calls(); fmt.Sprint(got) != fmt.Sprint(keys) {
				t.Fatalf("keys sent %v, want %v", got, keys)
			}
			var jobs []string
			for _, j := range tc.jobs {
				jobs = append(jobs, strings.ReplaceAll(j, "%s", c.ID))
			}
			if got := e.jobs(t); fmt.Sprint(got) != fmt.Sprint(jobs) {
				t.Fatalf("jobs %q, want %q", got, jobs)
			}
			if got := e.ev.charges(); fmt.Sprint(got) != fmt.Sprint(tc.events) {
				t.Fatalf("events %v, want %v", got, tc.events)
			}
			if len(c.Attempts) != len(tc.keys) {
				t.Fatalf("attempts %+v", c.Attempts)
			}
			ti := e.token(t)
			switch {
			case tc.token == "" && ti != nil:
				t.Fatalf("token view %+v before an outcome", ti)
			case tc.token != "" && (ti == nil || ti.LastOutcome != tc.token || ti.LastChargeID != c.ID):
				t.Fatalf("token view %+v, want last outcome %s", ti, tc.token)
			}
		})
	}
}

// A 2xx hppd cannot use is resent with the same key; the third is taken at
// its word: charged, the order's id unknown, counted.
func TestUnusableTokenOrderAnswersEndCharged(t *testing.T) {
	e := newChargeEnv(t, unusable(), unusable(), unusable())
	c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(false))
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != core.ChargePending {
		t.Fatalf("status %s after one unusable answer", c.Status)
	}
	safety := core.RetryChargeJobID(c.ID, 0)
	if err := e.svc.RunJob(context.Background(), safety); err == nil {
		t.Fatal("the second unusable answer settled the charge")
	}
	if err := e.svc.RunJob(context.Background(), safety); err != nil {
		t.Fatalf("the third unusable answer: %v", err)
	}
	c, err = e.svc.Charge("shop", c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != core.ChargeCharged || !c.OrderIDUnknown || c.OrderID != "" {
		t.Fatalf("charge %+v", c)
	}
	if got := e.kl.calls(); len(got) != 3 || got[0] != got[1] || got[1] != got[2] {
		t.Fatalf("keys %v: an unusable answer must be resent with the same key", got)
	}
	if e.svc.Stats.UnusableTokenOrder.Load() != 3 || e.svc.Stats.OrdersIDUnknown.Load() != 1 {
		t.Fatalf("unusable %d, id unknown %d", e.svc.Stats.UnusableTokenOrder.Load(), e.svc.Stats.OrdersIDUnknown.Load())
	}
	if jobs := e.jobs(t); len(jobs) != 0 {
		t.Fatalf("jobs left %v", jobs)
	}
}

// A retry job of an attempt that is settled ends without calling Klarna.
func TestStaleRetryJobIsDropped(t *testing.T) {
	e := newChargeEnv(t, charged(core.FraudAccepted))
	c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(false))
	if err != nil {
		t.Fatal(err)
	}
	stale := c.SafetyJob(chargeT0, e.svc.chargePolicy())
	if err := e.db.Update(func(tx store.Tx) error { _, err := tx.AddJob(&stale); return err }); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RunJob(context.Background(), stale.ID); err != nil {
		t.Fatal(err)
	}
	if n := len(e.kl.calls()); n != 1 {
		t.Fatalf("%d token orders, want 1", n)
	}
	if jobs := e.jobs(t); len(jobs) != 0 {
		t.Fatalf("jobs left %v", jobs)
	}
}

// The scheduled retry runs the next attempt outside a request: declined
// again it takes the next delay, and at the end of the schedule it fails.
func TestScheduledRetriesRunTheSchedule(t *testing.T) {
	e := newChargeEnv(t, declined(), declined(), declined())
	c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RunJob(context.Background(), core.RetryChargeJobID(c.ID, 1)); err != nil {
		t.Fatal(err)
	}
	if got, want := e.jobs(t), []string{"retry_charge/" + c.ID + "/2 " + c.ID + "-3 6h0m0s"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("jobs %q, want %q", got, want)
	}
	if err := e.svc.RunJob(context.Background(), core.RetryChargeJobID(c.ID, 2)); err != nil {
		t.Fatal(err)
	}
	c, _ = e.svc.Charge("shop", c.ID)
	if c.Status != core.ChargeFailed || c.Retries != 2 || len(c.Attempts) != 3 {
		t.Fatalf("charge %+v", c)
	}
	if got := e.ev.charges(); fmt.Sprint(got) != "[charge.failed]" {
		t.Fatalf("events %v", got)
	}
}

// A present customer whose token is unavailable gets the fallback session,
// linked to the charge; the order placed on it recovers the charge and the
// token.
func TestFallbackRecoversTheCharge(t *testing.T) {
	e := newChargeEnv(t, unavailable())
	c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(true))
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != core.ChargeFallback || c.SessionID == "" {
		t.Fatalf("charge %+v", c)
	}
	if got := e.ev.charges(); fmt.Sprint(got) != "[charge.fallback]" {
		t.Fatalf("events %v", got)
	}
	if jobs := e.jobs(t); len(jobs) != 0 {
		// The resume job ended with the link: it had nothing left to do.
		t.Fatalf("jobs %v", jobs)
	}
	if err := e.svc.update(c.SessionID, func(tx store.Tx, cur *core.Session) (bool, error) {
		return cur.OrderPlaced("ord_9", core.FraudAccepted, chargeT0), nil
	}); err != nil {
		t.Fatal(err)
	}
	c, _ = e.svc.Charge("shop", c.ID)
	if c.Status != core.ChargeRecovered || c.OrderID != "ord_9" {
		t.Fatalf("charge %+v", c)
	}
	if ti := e.token(t); ti == nil || !ti.Recovered || ti.RecoveredBy != c.ID || ti.LastOutcome != core.ChargeRecovered {
		t.Fatalf("token %+v", ti)
	}
	if got := e.ev.charges(); fmt.Sprint(got) != "[charge.fallback charge.recovered]" {
		t.Fatalf("events %v", got)
	}
	if e.svc.Stats.TokensRecovered.Load() != 1 {
		t.Fatal("recovery not counted")
	}
}

// A request that stops before the fallback session exists leaves the charge
// in fallback with its resume job; the job starts the session, and linking
// it ends the job in the same transaction (no lease-lost warning after).
func TestResumeJobStartsTheFallbackAndEnds(t *testing.T) {
	e := newChargeEnv(t, unavailable())
	e.kl.kpErr = &klarna.Error{Op: "create_kp_session", HTTPStatus: 503}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.svc.CreateCharge(ctx, "shop", chargeRequest(true)); err == nil {
		t.Fatal("no error while Klarna did not create the KP session")
	}
	c := e.onlyCharge(t)
	if c.Status != core.ChargeFallback || c.SessionID != "" {
		t.Fatalf("charge %+v", c)
	}
	if jobs := e.jobs(t); len(jobs) != 1 || !strings.HasPrefix(jobs[0], "retry_charge/"+c.ID+"/0 ") {
		t.Fatalf("jobs %v", jobs)
	}
	e.kl.kpErr = nil
	if err := e.svc.RunJob(context.Background(), core.RetryChargeJobID(c.ID, 0)); err != nil {
		t.Fatal(err)
	}
	c, _ = e.svc.Charge("shop", c.ID)
	if c.Status != core.ChargeFallback || c.SessionID == "" {
		t.Fatalf("charge %+v", c)
	}
	if jobs := e.jobs(t); len(jobs) != 0 {
		t.Fatalf("jobs %v", jobs)
	}
	if logs := e.logs.String(); strings.Contains(logs, "lease lost") {
		t.Fatalf("logs:\n%s", logs)
	}
}

// When Klarna made the KP session but not the HPP session at a fallback's
// first try, the KP session is recorded (with the charge's answer) as in
// any creation, and the retry finishes the fallback on it.
func TestFallbackWhoseHPPSessionFailsOnceKeepsItsKPSession(t *testing.T) {
	e := newChargeEnv(t, unavailable())
	e.kl.hppErrs = []error{&klarna.Error{Op: "create_hpp_session", HTTPStatus: 503}}
	c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(true))
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != core.ChargeFallback || c.SessionID == "" {
		t.Fatalf("charge %+v", c)
	}
	sess, err := e.svc.Session("shop", c.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if sess.KPSessionID != "kp_1" || sess.HPPSessionID != "hpp_2" || e.kl.kpCalls != 1 || e.kl.hppCalls != 2 {
		t.Fatalf("session %s/%s after %d KP and %d HPP creations", sess.KPSessionID, sess.HPPSessionID, e.kl.kpCalls, e.kl.hppCalls)
	}
	if jobs := e.jobs(t); len(jobs) != 0 {
		t.Fatalf("jobs %v", jobs)
	}
}

// A fallback whose charge moved while Klarna made its sessions (here: the
// charge was settled meanwhile) records neither session: the HPP session
// nobody will be sent to is disabled at Klarna, and the charge keeps what
// was recorded.
func TestFallbackWhoseChargeMovedMeanwhileDisablesItsHPPSession(t *testing.T) {
	e := newChargeEnv(t, unavailable())
	e.kl.beforeHPP = func() {
		if err := e.db.Update(func(tx store.Tx) error {
			list, _, err := tx.ListCharges(core.ListQuery{Storefront: "shop", Limit: 1})
			if err != nil || len(list) != 1 {
				return fmt.Errorf("charges %v: %w", list, err)
			}
			c := list[0]
			c.OrderID, c.FraudStatus = "ord_elsewhere", core.FraudAccepted
			c.SetStatus(core.ChargeCharged, core.SourceAPI, "settled meanwhile", chargeT0)
			return tx.PutCharge(c)
		}); err != nil {
			t.Error(err)
		}
	}
	c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(true))
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != core.ChargeCharged || c.SessionID != "" || c.OrderID != "ord_elsewhere" {
		t.Fatalf("charge %+v", c)
	}
	if fmt.Sprint(e.kl.disabled) != "[hpp_1]" {
		t.Fatalf("disabled %v, want [hpp_1]", e.kl.disabled)
	}
	if err := e.db.View(func(tx store.Tx) error {
		_, err := tx.SessionIDByHPP("hpp_1")
		return err
	}); !core.IsNotFound(err) {
		t.Fatalf("session of the disabled HPP session: %v", err)
	}
}

// Klarna refusing the fallback session fails the charge and ends its resume
// job; the storefront may ask for the fallback again.
func TestRefusedFallbackFailsTheCharge(t *testing.T) {
	e := newChargeEnv(t, unavailable())
	e.kl.kpErr = &klarna.Error{Op: "create_kp_session", HTTPStatus: 400, Code: "BAD_VALUE"}
	c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(true))
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != core.ChargeFailed || c.SessionID != "" || c.Error == nil || c.Error.Code != "BAD_VALUE" {
		t.Fatalf("charge %+v", c)
	}
	if jobs := e.jobs(t); len(jobs) != 0 {
		t.Fatalf("jobs %v", jobs)
	}
	if got := e.ev.charges(); fmt.Sprint(got) != "[charge.failed]" {
		t.Fatalf("events %v", got)
	}
	e.kl.kpErr = nil
	c, err = e.svc.Fallback(context.Background(), "shop", c.ID, "", core.ReturnURLs{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != core.ChargeFallback || c.SessionID == "" {
		t.Fatalf("charge %+v", c)
	}
}

// An unknown outcome says which charge it is about, keeps Klarna's typed
// error, and names no customer token.
func TestTokenOrderErrorsSayWhatWasDone(t *testing.T) {
	e := newChargeEnv(t, tokenAnswer{err: &klarna.Error{Op: "create_token_order", HTTPStatus: 503}}, tokenAnswer{err: &klarna.Error{Op: "create_token_order", HTTPStatus: 503, RetryAfter: time.Hour}})
	c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(false))
	if err != nil {
		t.Fatal(err)
	}
	err = e.svc.RunJob(context.Background(), core.RetryChargeJobID(c.ID, 0))
	var ke *klarna.Error
	if err == nil || !errors.As(err, &ke) || ke.HTTPStatus != 503 {
		t.Fatalf("err %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "token order of charge "+c.ID) || strings.Contains(msg, "tok_secret_1") {
		t.Fatalf("err %q", msg)
	}
	// The job is rescheduled after Klarna's Retry-After, with the message.
	var j *core.Job
	if err := e.db.View(func(tx store.Tx) error {
		var err error
		j, err = tx.Job(core.RetryChargeJobID(c.ID, 0))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if j.Attempts != 1 || j.DueAt.Sub(chargeT0) < time.Hour || !strings.Contains(j.LastError, c.ID) {
		t.Fatalf("job %+v", j)
	}
	if strings.Contains(e.logs.String(), "tok_secret_1") {
		t.Fatal("a customer token reached the log")
	}
}

func TestAttemptOfClassifiesKlarnasAnswers(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"ok", nil, core.AttemptCharged},
		{"unusable 2xx", unusable().err, core.AttemptTransient},
		{"declined", declined().err, core.AttemptDeclined},
		{"unavailable", unavailable().err, core.AttemptUnavailable},
		{"5xx", &klarna.Error{HTTPStatus: 502}, core.AttemptTransient},
		{"429", &klarna.Error{HTTPStatus: 429}, core.AttemptTransient},
		{"401", &klarna.Error{HTTPStatus: 401}, core.AttemptTransient},
		{"no response", &klarna.Error{Err: context.DeadlineExceeded}, core.AttemptTransient},
		{"not klarna's", fmt.Errorf("wrapped: %w", context.Canceled), core.AttemptTransient},
		{"400", &klarna.Error{HTTPStatus: 400, Code: "BAD_VALUE"}, core.AttemptFinal},
		{"404 token", &klarna.Error{HTTPStatus: 404, Code: "TOKEN_NOT_FOUND"}, core.AttemptFinal},
		{"other 403", &klarna.Error{HTTPStatus: 403, Code: "TOKEN_FORBIDDEN"}, core.AttemptFinal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var order *klarna.Order
			if tc.err == nil {
				order = &klarna.Order{OrderID: "o", FraudStatus: core.FraudAccepted}
			}
			a := tokenOrderAnswer("k-1", order, tc.err, true, chargeT0)
			if a.Attempt.Result != tc.want || a.Attempt.IdempotencyKey != "k-1" || !a.InRequest {
				t.Fatalf("answer %+v, want %s", a, tc.want)
			}
			switch tc.want {
			case core.AttemptCharged:
				if a.OrderID != "o" || a.Error != nil {
					t.Fatalf("answer %+v", a)
				}
			case core.AttemptDeclined, core.AttemptUnavailable, core.AttemptFinal:
				if a.Error == nil || a.Error.HTTPStatus != tc.err.(*klarna.Error).HTTPStatus {
					t.Fatalf("answer %+v keeps no refusal", a)
				}
			}
			if unusable := tc.name == "unusable 2xx"; a.Attempt.Unusable() != unusable {
				t.Fatalf("unusable %v", a.Attempt.Unusable())
			}
		})
	}
}

// The job runner does not discard a store that cannot list due work: it
// logs it and backs off; RunDue logs it too.
func TestRunnerLogsStoreFailures(t *testing.T) {
	e := newChargeEnv(t)
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	if n := e.svc.RunDue(context.Background()); n != 0 {
		t.Fatalf("ran %d jobs on a closed store", n)
	}
	if !strings.Contains(e.logs.String(), "list due jobs") {
		t.Fatalf("logs %s", e.logs.String())
	}
	var feeds [numLanes]chan *core.Job
	if _, _, err := e.svc.dispatch(&feeds); err == nil || !strings.Contains(err.Error(), "list due jobs") {
		t.Fatalf("dispatch err %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.svc.Run(ctx); close(done) }()
	for !strings.Contains(e.logs.String(), "find due jobs; backing off") {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(e.logs.String(), "failures=1") {
		t.Fatalf("logs %s", e.logs.String())
	}
}

// Order Management refusing the read of a notified order is Klarna's
// refusal (502 with its code), not an internal error.
func TestNotificationWithRefusedOrderRead(t *testing.T) {
	e := newChargeEnv(t)
	e.kl.omErr = &klarna.Error{Op: "read_order", HTTPStatus: 403, Code: "NOT_ALLOWED"}
	secret, hash := NewSecret()
	sess := &core.Session{ID: "ses_n", Storefront: "shop", Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone,
		Status: core.SessionOrderPlaced, OrderID: "ord_1", FraudStatus: core.FraudPending, NotifySecretHash: hash,
		CreatedAt: chargeT0, UpdatedAt: chargeT0, ExpiresAt: chargeT0.Add(48 * time.Hour)}
	if err := e.db.Update(func(tx store.Tx) error { return tx.PutSession(sess) }); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.HandleNotification(context.Background(), "ses_n", secret, []byte(`{"order_id":"ord_1","event_type":"FRAUD_RISK_ACCEPTED"}`))
	var ce *core.Error
	if !errors.As(err, &ce) || ce.Code != core.CodeUpstream || !strings.Contains(ce.Message, "NOT_ALLOWED") {
		t.Fatalf("err %v", err)
	}
}

// An answer that cannot be recorded is an error naming the charge, also
// when the answer was a success (the attempt's job resends it).
func TestUnrecordedAnswerIsAnError(t *testing.T) {
	e := newChargeEnv(t, tokenAnswer{err: &klarna.Error{Op: "create_token_order", HTTPStatus: 503}}, charged(core.FraudAccepted))
	c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(false))
	if err != nil {
		t.Fatal(err)
	}
	e.kl.before = func() { e.db.Close() }
	_, err = e.svc.tokenOrder(context.Background(), c, &core.Job{ID: core.RetryChargeJobID(c.ID, 0)}, false, nil)
	if err == nil || !strings.Contains(err.Error(), "record the answer to the token order of charge "+c.ID) || strings.Contains(err.Error(), "%!") {
		t.Fatalf("err %v", err)
	}
}

// A charge answered with fraud status PENDING is read from Order Management
// by its check_fraud job until Klarna decides.
func TestChargeFraudReviewIsFollowed(t *testing.T) {
	e := newChargeEnv(t, charged(core.FraudPending))
	c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(false))
	if err != nil {
		t.Fatal(err)
	}
	job := core.CheckFraudJobID(c.ID)
	e.kl.om = &klarna.OMOrder{OrderID: "ord_1", FraudStatus: core.FraudPending}
	if err := e.svc.RunJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if got, want := e.jobs(t), []string{job + "  15m0s"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("still pending: jobs %q, want %q", got, want)
	}
	e.kl.om = &klarna.OMOrder{OrderID: "ord_1", FraudStatus: core.FraudRejected}
	if err := e.svc.RunJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	c, _ = e.svc.Charge("shop", c.ID)
	if c.FraudStatus != core.FraudRejected || c.Status != core.ChargeCharged {
		t.Fatalf("charge %+v", c)
	}
	if jobs := e.jobs(t); len(jobs) != 0 {
		t.Fatalf("jobs %v", jobs)
	}
	if got := e.ev.charges(); fmt.Sprint(got) != "[charge.charged "+EventChargeFraudStatus+"]" {
		t.Fatalf("events %v", got)
	}
}

// Order Management not knowing the order ends the job without a verdict;
// a read without an answer is retried, naming the charge.
func TestChargeFraudReadFailures(t *testing.T) {
	e := newChargeEnv(t, charged(core.FraudPending))
	c, err := e.svc.CreateCharge(context.Background(), "shop", chargeRequest(false))
	if err != nil {
		t.Fatal(err)
	}
	job := core.CheckFraudJobID(c.ID)
	e.kl.omErr = &klarna.Error{Op: "read_order", HTTPStatus: 503}
	if err := e.svc.RunJob(context.Background(), job); err == nil || !strings.Contains(err.Error(), "read order of charge "+c.ID) {
		t.Fatalf("err %v", err)
	}
	e.kl.omErr = &klarna.Error{Op: "read_order", HTTPStatus: 404}
	if err := e.svc.RunJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if jobs := e.jobs(t); len(jobs) != 0 {
		t.Fatalf("jobs %v", jobs)
	}
	c, _ = e.svc.Charge("shop", c.ID)
	if c.FraudStatus != core.FraudPending {
		t.Fatalf("charge %+v", c)
	}
}
