package hpp

import (
	"context"
	"errors"
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

// The place_order job against a real store, with Klarna's answers to the
// placement and to the HPP session read scripted: every answer of the
// placeOrder doc comment and what the session ends as.

type placingKlarna struct {
	Klarna

	mu      sync.Mutex
	answers []placeAnswer
	bodies  [][]byte
	keys    []string
	hppRead *klarna.HPPSessionStatus // nil: the read fails (503)
}

type placeAnswer struct {
	order *klarna.Order
	err   error
}

func (k *placingKlarna) PlaceOrderRaw(_ context.Context, _ string, body []byte, key string) (*klarna.Order, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.bodies = append(k.bodies, body)
	k.keys = append(k.keys, key)
	a := k.answers[0]
	k.answers = k.answers[1:]
	return a.order, a.err
}

func (k *placingKlarna) ReadHPPSessionAt(context.Context, string, string) (*klarna.HPPSessionStatus, error) {
	if k.hppRead == nil {
		return nil, &klarna.Error{Op: "read_hpp_session", HTTPStatus: 503}
	}
	return k.hppRead, nil
}

func placeErr(status int, code string, msgs ...string) placeAnswer {
	return placeAnswer{err: &klarna.Error{Op: "place_order", HTTPStatus: status, Code: code, Messages: msgs}}
}

func TestPlaceOrderOutcomes(t *testing.T) {
	ok := placeAnswer{order: &klarna.Order{OrderID: "ord_1", FraudStatus: core.FraudAccepted}}
	unusableOrder := placeAnswer{err: &klarna.Error{Op: "place_order", HTTPStatus: 200, Err: errors.New("no order_id")}}
	cases := []struct {
		name      string
		answers   []placeAnswer
		hppRead   *klarna.HPPSessionStatus
		status    core.SessionStatus // after every answer was given
		orderID   string
		idUnknown bool
		jobLeft   bool
	}{
		{"placed", []placeAnswer{ok}, nil, core.SessionOrderPlaced, "ord_1", false, false},
		{"no answer replays the same bytes, then placed", []placeAnswer{placeErr(503, ""), ok}, nil, core.SessionOrderPlaced, "ord_1", false, false},
		{"no answer keeps the job", []placeAnswer{placeErr(503, "")}, nil, core.SessionAuthorized, "", false, true},
		{"already consumed: the order exists, its id from the HPP read", []placeAnswer{placeErr(403, klarna.CodeInvalidOperation)},
			&klarna.HPPSessionStatus{Status: core.KlarnaCompleted, OrderID: "ord_hpp"}, core.SessionOrderPlaced, "ord_hpp", false, false},
		{"session completed: the order exists without a readable id", []placeAnswer{placeErr(404, klarna.CodeSessionCompleted)},
			&klarna.HPPSessionStatus{Status: core.KlarnaCompleted}, core.SessionOrderPlaced, "", true, false},
		{"completed with a different body: the order exists", []placeAnswer{placeErr(409, klarna.CodeBadValue, "order has been already completed with different request body")},
			&klarna.HPPSessionStatus{Status: core.KlarnaCompleted, OrderID: "ord_hpp"}, core.SessionOrderPlaced, "ord_hpp", false, false},
		{"three unusable 2xx: the order exists", []placeAnswer{unusableOrder, unusableOrder, unusableOrder},
			&klarna.HPPSessionStatus{Status: core.KlarnaCompleted, OrderID: "ord_hpp"}, core.SessionOrderPlaced, "ord_hpp", false, false},
		{"refused fails the session", []placeAnswer{placeErr(409, klarna.CodeBadValue, "Not matching fields: [order_amount]")}, nil, core.SessionFailed, "", false, false},
		{"refused after a lost answer, the HPP session has the order", []placeAnswer{placeErr(503, ""), placeErr(404, "NOT_FOUND", "Invalid authorization token")},
			&klarna.HPPSessionStatus{Status: core.KlarnaCompleted, OrderID: "ord_hpp"}, core.SessionOrderPlaced, "ord_hpp", false, false},
		{"refused after a lost answer, no order anywhere", []placeAnswer{placeErr(503, ""), placeErr(404, "NOT_FOUND", "Invalid authorization token")},
			&klarna.HPPSessionStatus{Status: core.KlarnaCompleted}, core.SessionFailed, "", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db, err := boltstore.Open(filepath.Join(t.TempDir(), "hppd.db"), boltstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			kl := &placingKlarna{answers: tc.answers, hppRead: tc.hppRead}
			svc := New(db, kl, Config{Now: func() time.Time { return chargeT0 }})
			authorizedWithJob(t, db, "ses_p", chargeT0)
			if err := db.Update(func(tx store.Tx) error {
				s, err := tx.Session("ses_p")
				if err != nil {
					return err
				}
				s.HPPSessionID = "hpp_p"
				return tx.PutSession(s)
			}); err != nil {
				t.Fatal(err)
			}
			jobID := core.PlaceOrderJobID("ses_p")
			for range tc.answers {
				if err := svc.RunJob(context.Background(), jobID); err != nil && !strings.Contains(err.Error(), "session ses_p") {
					t.Fatalf("job error %q does not name the session", err)
				}
			}
			var sess *core.Session
			var job *core.Job
			if err := db.View(func(tx store.Tx) error {
				var err error
				if sess, err = tx.Session("ses_p"); err != nil {
					return err
				}
				job, err = tx.Job(jobID)
				if core.IsNotFound(err) {
					job, err = nil, nil
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if sess.Status != tc.status || sess.OrderID != tc.orderID || sess.OrderIDUnknown != tc.idUnknown {
				t.Fatalf("session %s order %q unknown %v, want %s %q %v", sess.Status, sess.OrderID, sess.OrderIDUnknown, tc.status, tc.orderID, tc.idUnknown)
			}
			if (job != nil) != tc.jobLeft {
				t.Fatalf("job left: %+v", job)
			}
			if job != nil && (job.Sent != len(tc.answers) || job.Attempts != len(tc.answers) || !strings.Contains(job.LastError, "place order of session ses_p")) {
				t.Fatalf("job %+v", job)
			}
			for i := range kl.bodies {
				if string(kl.bodies[i]) != string(kl.bodies[0]) || kl.keys[i] != "hppd-order-ses_p" {
					t.Fatalf("attempt %d sent %q with key %q: every attempt replays the stored request", i, kl.bodies[i], kl.keys[i])
				}
			}
		})
	}
}

func TestUpstreamMessages(t *testing.T) {
	cases := []struct {
		name string
		err  error
		code core.ErrorCode
		msg  string
	}{
		{"refusal", &klarna.Error{Op: "create_kp_session", HTTPStatus: 400, Code: "BAD_VALUE", Messages: []string{"Bad value: order_lines"}},
			core.CodeUpstream, "create KP session: klarna answered 400 BAD_VALUE (Bad value: order_lines)"},
		{"5xx", &klarna.Error{Op: "create_kp_session", HTTPStatus: 503}, core.CodeUnavailable, "create KP session: klarna answered 503"},
		{"no response", &klarna.Error{Op: "create_kp_session", Err: errors.New("dial tcp: connection refused")}, core.CodeUnavailable, "create KP session: klarna did not answer"},
		{"deadline", context.DeadlineExceeded, core.CodeUnavailable, "create KP session: klarna did not answer in time"},
		{"ours", errors.New("disk full"), core.CodeInternal, "create KP session failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := upstream("create KP session", tc.err)
			var ce *core.Error
			if !errors.As(err, &ce) || ce.Code != tc.code || ce.Message != tc.msg || !errors.Is(err, tc.err) {
				t.Fatalf("%#v", err)
			}
			// The message is what a client sees: never the cause's text.
			if strings.Contains(ce.Message, "dial tcp") || strings.Contains(ce.Message, "disk full") {
				t.Fatalf("message %q leaks the cause", ce.Message)
			}
		})
	}
}

func TestFallbackTransient(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&klarna.Error{HTTPStatus: 503}, true},
		{&klarna.Error{HTTPStatus: 429}, true},
		{context.DeadlineExceeded, true},
		{core.Errorf(core.CodeConflict, "creation in progress"), true},
		{&core.Error{Code: core.CodeInternal, Message: "store session"}, true},
		{upstream("create KP session", &klarna.Error{HTTPStatus: 400, Code: "BAD_VALUE"}), false},
		{core.Invalid("return_urls", "is required"), false},
	}
	for _, tc := range cases {
		if got := fallbackTransient(tc.err); got != tc.want {
			t.Errorf("fallbackTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
