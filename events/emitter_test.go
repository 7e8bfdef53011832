package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/events"
	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

var _ hpp.Emitter = (*events.Emitter)(nil)

// t0 is the tests' fixed clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC)

func fixedNow() time.Time { return t0 }

func openStore(t *testing.T, path string) *boltstore.DB {
	t.Helper()
	db, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return db
}

// tempStore opens a store in t.TempDir(), checked and closed at cleanup.
func tempStore(t *testing.T) *boltstore.DB {
	t.Helper()
	db := openStore(t, filepath.Join(t.TempDir(), "hppd.db"))
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("store check: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return db
}

func mustConfig(t *testing.T, storefront, url, secret string) *events.Config {
	t.Helper()
	cfg, err := events.ParseConfig([]byte(configJSON(storefront, url, secret)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func sampleSession(id, storefront string, st core.SessionStatus) *core.Session {
	return &core.Session{
		ID: id, Storefront: storefront, Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone,
		Status: st, KlarnaStatus: "COMPLETED", CustomerToken: "tok_secret_customer_token_1234",
		Purchase: core.Purchase{
			PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 10000,
			OrderLines:         []core.OrderLine{{Name: "Socks", Quantity: 1, UnitPrice: 10000, TaxRate: 2500, TotalAmount: 10000, TotalTaxAmount: 2000}},
			MerchantReference1: "order-42",
		},
		KPSessionID: "kp_" + id, HPPSessionID: "hpp_" + id, RedirectURL: "https://pay.klarna.example/" + id,
		SecretHash: bytes.Repeat([]byte{1}, 32), AuthorizationToken: "auth_secret_token",
		OrderID: "ord_1", FraudStatus: "ACCEPTED",
		CreatedAt: t0.Add(-time.Hour), UpdatedAt: t0, ExpiresAt: t0.Add(46 * time.Hour),
		History: []core.Change{{At: t0, From: "authorized", To: string(st), Source: core.SourceJob}},
	}
}

func sampleCharge(id, storefront, sessionID string, st core.ChargeStatus) *core.Charge {
	return &core.Charge{
		ID: id, Storefront: storefront, CustomerToken: "tok_secret_customer_token_1234", CustomerPresent: true,
		Purchase: core.Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK", OrderAmount: 10000, MerchantReference1: "order-42"},
		Status:   st, SessionID: sessionID, Try: 1, AttemptKey: id + "-1",
		Attempts:  []core.Attempt{{At: t0, IdempotencyKey: id + "-1", Result: core.AttemptUnavailable, HTTPStatus: 403, ErrorCode: "UNAVAILABLE_PAYMENT_METHOD"}},
		CreatedAt: t0.Add(-time.Hour), UpdatedAt: t0,
	}
}

func allJobs(t *testing.T, db *boltstore.DB) []*core.Job {
	t.Helper()
	var jobs []*core.Job
	if err := db.View(func(tx store.Tx) error {
		return tx.AllJobs(func(j *core.Job) error { jobs = append(jobs, j); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return jobs
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEmitSessionWritesOneJobWithTheExactPayload(t *testing.T) {
	db := tempStore(t)
	em := events.New(mustConfig(t, "shop", "https://shop.example/e", testSecret), events.Options{})
	sess := sampleSession("ses_1", "shop", core.SessionOrderPlaced)
	if err := db.Update(func(tx store.Tx) error {
		if err := tx.PutSession(sess); err != nil {
			return err
		}
		return emitSession(tx, em, sess, events.SessionOrderPlaced, t0)
	}); err != nil {
		t.Fatal(err)
	}
	jobs := allJobs(t, db)
	if len(jobs) != 1 {
		t.Fatalf("%d jobs, want 1", len(jobs))
	}
	j := jobs[0]
	want := `{"type":"session.order_placed","timestamp":"2026-03-01T12:00:00.123Z","data":` + mustJSON(t, api.FromSession(sess)) + `}`
	if string(j.Request) != want {
		t.Fatalf("payload\n got %s\nwant %s", j.Request, want)
	}
	msgID, ok := strings.CutPrefix(j.ID, "deliver_event/msg_")
	if !ok || len(msgID) != 26 || strings.ContainsAny(msgID, ".=") {
		t.Fatalf("job id %q is not deliver_event/msg_<26 chars>", j.ID)
	}
	if j.Kind != core.JobDeliverEvent || j.Storefront != "shop" || j.EventType != events.SessionOrderPlaced ||
		!j.DueAt.Equal(t0) || j.SessionID != "ses_1" || j.Attempts != 0 {
		t.Fatalf("job = %+v", j)
	}
	// The API view leaves out what a storefront must not see.
	for _, s := range []string{"auth_secret_token", "tok_secret_customer_token_1234", "secret_hash"} {
		if strings.Contains(string(j.Request), s) {
			t.Fatalf("payload carries %s", s)
		}
	}
	var due []*core.Job
	if err := db.View(func(tx store.Tx) error {
		var err error
		due, err = tx.JobsDue(t0, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(due) != 1 || due[0].ID != j.ID {
		t.Fatalf("the job is not due at once: %v", due)
	}
}

func TestEmitChargeIncludesItsFallbackSession(t *testing.T) {
	db := tempStore(t)
	em := events.New(mustConfig(t, "shop", "https://shop.example/e", testSecret), events.Options{})
	sess := sampleSession("ses_2", "shop", core.SessionPending)
	sess.ChargeID = "chg_1"
	ch := sampleCharge("chg_1", "shop", "ses_2", core.ChargeFallback)
	if err := db.Update(func(tx store.Tx) error {
		if err := tx.PutSession(sess); err != nil {
			return err
		}
		if err := tx.PutCharge(ch); err != nil {
			return err
		}
		return emitCharge(tx, em, ch, events.ChargeFallback, t0)
	}); err != nil {
		t.Fatal(err)
	}
	jobs := allJobs(t, db)
	if len(jobs) != 1 {
		t.Fatalf("%d jobs, want 1", len(jobs))
	}
	want := `{"type":"charge.fallback","timestamp":"2026-03-01T12:00:00.123Z","data":` + mustJSON(t, api.FromCharge(ch, sess)) + `}`
	if string(jobs[0].Request) != want {
		t.Fatalf("payload\n got %s\nwant %s", jobs[0].Request, want)
	}
	var ev struct {
		Data api.Charge `json:"data"`
	}
	if err := json.Unmarshal(jobs[0].Request, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Data.Session == nil || ev.Data.Session.RedirectURL != sess.RedirectURL || ev.Data.Session.Status != "pending" {
		t.Fatalf("charge event lacks its fallback session: %+v", ev.Data.Session)
	}
	if ev.Data.CustomerToken != "****1234" || jobs[0].ChargeID != "chg_1" {
		t.Fatalf("charge view: token %q, job charge %q", ev.Data.CustomerToken, jobs[0].ChargeID)
	}

	// A charge whose session is not stored still emits, with the link only.
	lone := sampleCharge("chg_2", "shop", "ses_missing", core.ChargeNeedsCustomer)
	if err := db.Update(func(tx store.Tx) error { return emitCharge(tx, em, lone, events.ChargeNeedsCustomer, t0) }); err != nil {
		t.Fatal(err)
	}
	if n := len(allJobs(t, db)); n != 2 {
		t.Fatalf("%d jobs, want 2", n)
	}
}

func TestEmitSkipsUnconfiguredAndRefusesUnknownTypes(t *testing.T) {
	db := tempStore(t)
	em := events.New(mustConfig(t, "shop", "https://shop.example/e", testSecret), events.Options{})
	other := sampleSession("ses_3", "other-shop", core.SessionCancelled)
	if err := db.Update(func(tx store.Tx) error {
		if err := emitSession(tx, em, other, events.SessionCancelled, t0); err != nil {
			return err
		}
		return emitCharge(tx, em, sampleCharge("chg_3", "other-shop", "", core.ChargeCharged), events.ChargeCharged, t0)
	}); err != nil {
		t.Fatal(err)
	}
	if n := len(allJobs(t, db)); n != 0 {
		t.Fatalf("%d jobs for a storefront without an endpoint", n)
	}

	// No config at all: nothing, never an error.
	none := events.New(nil, events.Options{})
	if err := db.Update(func(tx store.Tx) error {
		return emitSession(tx, none, sampleSession("ses_4", "shop", core.SessionExpired), events.SessionExpired, t0)
	}); err != nil {
		t.Fatal(err)
	}

	// An unknown type is an error that rolls the whole transaction back.
	sess := sampleSession("ses_5", "shop", core.SessionPending)
	err := db.Update(func(tx store.Tx) error {
		if err := tx.PutSession(sess); err != nil {
			return err
		}
		return emitSession(tx, em, sess, "session.pending", t0)
	})
	if err == nil || !strings.Contains(err.Error(), "unknown session event type") {
		t.Fatalf("unknown type: %v", err)
	}
	if err := db.Update(func(tx store.Tx) error {
		return emitCharge(tx, em, sampleCharge("chg_5", "shop", "", core.ChargeCharged), events.SessionAuthorized, t0)
	}); err == nil {
		t.Fatal("a session type for a charge was accepted")
	}
	if n := len(allJobs(t, db)); n != 0 {
		t.Fatalf("%d jobs after refused emits", n)
	}
	if err := db.View(func(tx store.Tx) error { _, err := tx.Session("ses_5"); return err }); !core.IsNotFound(err) {
		t.Fatalf("the session of the failed transaction was kept: %v", err)
	}
}

// receiver is a storefront endpoint that verifies every delivery with Verify.
type receiver struct {
	t      *testing.T
	secret string
	now    time.Time
	status func(n int) int // status of delivery n (from 1)

	mu       sync.Mutex
	verified []delivery
	rejected int
}

type delivery struct {
	header http.Header
	body   []byte
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := events.Verify(rc.secret, r.Header, body, time.Minute, rc.now); err != nil || r.Method != http.MethodPost {
		rc.rejected++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rc.verified = append(rc.verified, delivery{header: r.Header.Clone(), body: body})
	st := http.StatusNoContent
	if rc.status != nil {
		st = rc.status(len(rc.verified))
	}
	if st == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "7200")
	}
	w.WriteHeader(st)
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.verified...)
}

func newReceiver(t *testing.T, status func(int) int) (*receiver, *httptest.Server) {
	rc := &receiver{t: t, secret: testSecret, now: t0, status: status}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv
}

// emitOne stores a session and its order_placed event; it returns the job.
func emitOne(t *testing.T, db *boltstore.DB, em *events.Emitter, id string) *core.Job {
	t.Helper()
	sess := sampleSession(id, "shop", core.SessionOrderPlaced)
	var job *core.Job
	if err := db.Update(func(tx store.Tx) error {
		if err := tx.PutSession(sess); err != nil {
			return err
		}
		if err := emitSession(tx, em, sess, events.SessionOrderPlaced, t0); err != nil {
			return err
		}
		return tx.AllJobs(func(j *core.Job) error {
			if j.SessionID == id {
				job = j
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return job
}

func TestDeliverSignsThePayload(t *testing.T) {
	rc, srv := newReceiver(t, nil)
	db := tempStore(t)
	em := events.New(mustConfig(t, "shop", srv.URL+"/hooks?k=v", testSecret), events.Options{Now: fixedNow})
	j := emitOne(t, db, em, "ses_d1")
	if err := em.Deliver(context.Background(), j); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	got := rc.deliveries()
	if len(got) != 1 {
		t.Fatalf("%d verified deliveries (rejected %d)", len(got), rc.rejected)
	}
	d := got[0]
	if !bytes.Equal(d.body, j.Request) {
		t.Fatalf("body is not the stored payload")
	}
	if d.header.Get("webhook-id") != strings.TrimPrefix(j.ID, "deliver_event/") ||
		d.header.Get("webhook-timestamp") != strconv.FormatInt(t0.Unix(), 10) ||
		d.header.Get("Content-Type") != "application/json" ||
		!strings.HasPrefix(d.header.Get("webhook-signature"), "v1,") {
		t.Fatalf("headers: %v", d.header)
	}
	want, _ := events.Sign(testSecret, d.header.Get("webhook-id"), t0, j.Request)
	if d.header.Get("webhook-signature") != want {
		t.Fatalf("signature %s, want %s", d.header.Get("webhook-signature"), want)
	}
	if em.Delivered() != 1 || em.Dropped() != 0 {
		t.Fatalf("delivered %d dropped %d", em.Delivered(), em.Dropped())
	}

	// A later attempt of the same event keeps its id and signs its own time.
	later := t0.Add(time.Hour)
	rc.mu.Lock()
	rc.now = later
	rc.mu.Unlock()
	em2 := events.New(mustConfig(t, "shop", srv.URL+"/hooks", testSecret), events.Options{Now: func() time.Time { return later }})
	j.Attempts = 3
	if err := em2.Deliver(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	got = rc.deliveries()
	if len(got) != 2 || got[1].header.Get("webhook-id") != got[0].header.Get("webhook-id") ||
		got[1].header.Get("webhook-timestamp") != strconv.FormatInt(later.Unix(), 10) {
		t.Fatalf("retry headers: %v", got[1].header)
	}
}

func TestDeliverFailureFollowsTheSchedule(t *testing.T) {
	schedule := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute}
	statuses := []int{http.StatusInternalServerError, http.StatusNotFound, http.StatusBadRequest, http.StatusGone}
	for _, st := range statuses {
		t.Run(strconv.Itoa(st), func(t *testing.T) {
			_, srv := newReceiver(t, func(int) int { return st })
			em := events.New(mustConfig(t, "shop", srv.URL, testSecret), events.Options{Now: fixedNow, Schedule: schedule, Jitter: -1})
			j := &core.Job{ID: "deliver_event/msg_a", Kind: core.JobDeliverEvent, Storefront: "shop", EventType: events.SessionExpired, Request: []byte(`{"type":"session.expired"}`)}
			for n, want := range schedule {
				j.Attempts = n
				err := em.Deliver(context.Background(), j)
				var de *events.DeliveryError
				if !errors.As(err, &de) {
					t.Fatalf("attempt %d: %v, want a *DeliveryError", n+1, err)
				}
				if de.RetryAfter() != want || de.StatusCode != st {
					t.Fatalf("attempt %d: RetryAfter %v status %d, want %v %d", n+1, de.RetryAfter(), de.StatusCode, want, st)
				}
				if !strings.Contains(err.Error(), "msg_a") || !strings.Contains(err.Error(), strconv.Itoa(st)) {
					t.Fatalf("error %q names neither the message nor the status", err)
				}
			}
			if em.Dropped() != 0 || em.Delivered() != 0 {
				t.Fatalf("dropped %d delivered %d", em.Dropped(), em.Delivered())
			}
		})
	}
}

func TestDeliverJitterAndRetryAfter(t *testing.T) {
	_, srv := newReceiver(t, func(int) int { return http.StatusBadGateway })
	em := events.New(mustConfig(t, "shop", srv.URL, testSecret), events.Options{Now: fixedNow})
	j := &core.Job{ID: "deliver_event/msg_b", Kind: core.JobDeliverEvent, Storefront: "shop", Request: []byte(`{}`)}
	for n, base := range events.DefaultSchedule {
		j.Attempts = n
		var de *events.DeliveryError
		if err := em.Deliver(context.Background(), j); !errors.As(err, &de) {
			t.Fatalf("attempt %d: %v", n+1, err)
		}
		hi := base + time.Duration(float64(base)*events.DefaultJitter)
		if d := de.RetryAfter(); d < base || d > hi {
			t.Fatalf("attempt %d: RetryAfter %v outside [%v, %v]", n+1, d, base, hi)
		}
	}

	// A receiver's longer Retry-After wins over the schedule.
	_, busy := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })
	em = events.New(mustConfig(t, "shop", busy.URL, testSecret), events.Options{Now: fixedNow, Jitter: -1})
	j.Attempts = 0
	var de *events.DeliveryError
	if err := em.Deliver(context.Background(), j); !errors.As(err, &de) || de.RetryAfter() != 2*time.Hour {
		t.Fatalf("Retry-After 7200: %v", err)
	}
}

func TestDeliverDropsWhenTheScheduleIsUsedUp(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, srv := newReceiver(t, func(int) int { return http.StatusInternalServerError })
	db := tempStore(t)
	em := events.New(mustConfig(t, "shop", srv.URL+"/hooks?token=querysecret", testSecret),
		events.Options{Now: fixedNow, Logger: logger, Schedule: []time.Duration{time.Second, time.Minute}})
	j := emitOne(t, db, em, "ses_x")
	for n := 0; n < 2; n++ {
		j.Attempts = n
		if err := em.Deliver(context.Background(), j); err == nil {
			t.Fatalf("attempt %d succeeded", n+1)
		}
	}
	j.Attempts = 2
	if err := em.Deliver(context.Background(), j); err != nil {
		t.Fatalf("last attempt: %v, want nil (dropped)", err)
	}
	if em.Dropped() != 1 {
		t.Fatalf("Dropped = %d", em.Dropped())
	}
	out := logs.String()
	if !strings.Contains(out, "event dropped: delivery attempts used up") || !strings.Contains(out, "level=ERROR") {
		t.Fatalf("no error logged:\n%s", out)
	}
	assertNoSecrets(t, out, j.Request)

	// A storefront removed from the config: dropped too, with no request.
	em2 := events.New(mustConfig(t, "another", srv.URL, testSecret), events.Options{Logger: logger})
	if err := em2.Deliver(context.Background(), j); err != nil || em2.Dropped() != 1 {
		t.Fatalf("unconfigured storefront: %v, dropped %d", err, em2.Dropped())
	}
}

// assertNoSecrets fails if s carries the endpoint secret, the URL's query or
// the event body.
func assertNoSecrets(t *testing.T, s string, body []byte) {
	t.Helper()
	for _, bad := range []string{testSecret, strings.TrimPrefix(testSecret, "whsec_"), "querysecret", string(body), `"data"`} {
		if bad != "" && strings.Contains(s, bad) {
			t.Fatalf("output discloses %.40q:\n%s", bad, s)
		}
	}
}

func TestDeliverNeverFollowsRedirects(t *testing.T) {
	var followed int
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed++ }))
	defer target.Close()
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	em := events.New(mustConfig(t, "shop", redirect.URL, testSecret), events.Options{HTTPClient: client, Jitter: -1})
	j := &core.Job{ID: "deliver_event/msg_r", Kind: core.JobDeliverEvent, Storefront: "shop", Request: []byte(`{}`)}
	var de *events.DeliveryError
	if err := em.Deliver(context.Background(), j); !errors.As(err, &de) || de.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("redirect: %v", err)
	}
	if followed != 0 {
		t.Fatal("the redirect was followed")
	}
	if de.RetryAfter() != events.DefaultSchedule[0] {
		t.Fatalf("RetryAfter %v", de.RetryAfter())
	}
}

func TestDeliverTransportErrorsHideTheURL(t *testing.T) {
	// A server that hangs up without answering.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	var logs bytes.Buffer
	em := events.New(mustConfig(t, "shop", srv.URL+"/p?token=querysecret", testSecret),
		events.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Jitter: -1})
	j := &core.Job{ID: "deliver_event/msg_t", Kind: core.JobDeliverEvent, Storefront: "shop", Request: []byte(`{"data":1}`)}
	err := em.Deliver(context.Background(), j)
	var de *events.DeliveryError
	if !errors.As(err, &de) || de.StatusCode != 0 || de.Err == nil || de.RetryAfter() != 5*time.Second {
		t.Fatalf("hang-up: %v", err)
	}
	assertNoSecrets(t, err.Error()+logs.String(), j.Request)
	if strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("error carries the URL: %v", err)
	}

	// The per-attempt timeout turns a silent receiver into a retry, too.
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer slow.Close()
	defer close(block)
	em = events.New(mustConfig(t, "shop", slow.URL, testSecret), events.Options{Timeout: 50 * time.Millisecond, Jitter: -1})
	if err := em.Deliver(context.Background(), j); !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
}

// TestOutboxSurvivesRestartAndRunsThroughHPP emits in one process, "crashes"
// (closes the store), and delivers from the reopened file through hpp's job
// runner: a failure is rescheduled by the schedule, a success removes the job.
func TestOutboxSurvivesRestartAndRunsThroughHPP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	rc, srv := newReceiver(t, func(n int) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	cfg := mustConfig(t, "shop", srv.URL, testSecret)

	db := openStore(t, path)
	first := events.New(cfg, events.Options{Now: fixedNow})
	j := emitOne(t, db, first, "ses_r")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openStore(t, path)
	defer db.Close()
	jobs := allJobs(t, db)
	if len(jobs) != 1 || jobs[0].ID != j.ID || !bytes.Equal(jobs[0].Request, j.Request) {
		t.Fatalf("after reopening: %+v", jobs)
	}

	now := t0
	clock := func() time.Time { return now }
	em := events.New(cfg, events.Options{Now: clock, Jitter: -1})
	svc := hpp.New(db, nil, hpp.Config{Emitter: em, Now: clock})
	if n := svc.RunDue(context.Background()); n != 1 {
		t.Fatalf("RunDue ran %d jobs", n)
	}
	jobs = allJobs(t, db)
	if len(jobs) != 1 || jobs[0].Attempts != 1 || !jobs[0].DueAt.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("after a 500: %+v", jobs)
	}
	if strings.Contains(jobs[0].LastError, testSecret[6:]) || !strings.Contains(jobs[0].LastError, "answered 500") {
		t.Fatalf("LastError = %q", jobs[0].LastError)
	}
	if n := svc.RunDue(context.Background()); n != 0 {
		t.Fatalf("a job ran before it was due (%d)", n)
	}
	now = t0.Add(5 * time.Second)
	if n := svc.RunDue(context.Background()); n != 1 {
		t.Fatalf("RunDue ran %d jobs", n)
	}
	if jobs := allJobs(t, db); len(jobs) != 0 {
		t.Fatalf("the delivered job is still there: %+v", jobs)
	}
	got := rc.deliveries()
	if len(got) != 2 || !bytes.Equal(got[1].body, j.Request) || got[0].header.Get("webhook-id") != got[1].header.Get("webhook-id") {
		t.Fatalf("deliveries: %d", len(got))
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	if em.Delivered() != 1 {
		t.Fatalf("Delivered = %d", em.Delivered())
	}
}

// emitSession writes a session event's job in tx, as hpp does.
func emitSession(tx store.Tx, em *events.Emitter, s *core.Session, eventType string, now time.Time) error {
	j, err := em.SessionEvent(s, eventType, now)
	if err != nil || j == nil {
		return err
	}
	_, err = tx.AddJob(j)
	return err
}

// emitCharge writes a charge event's job in tx with the charge's fallback
// session as tx has it, as hpp does.
func emitCharge(tx store.Tx, em *events.Emitter, c *core.Charge, eventType string, now time.Time) error {
	var sess *core.Session
	if c.SessionID != "" {
		s, err := tx.Session(c.SessionID)
		if err != nil && !core.IsNotFound(err) {
			return err
		}
		sess = s
	}
	j, err := em.ChargeEvent(c, sess, eventType, now)
	if err != nil || j == nil {
		return err
	}
	_, err = tx.AddJob(j)
	return err
}
