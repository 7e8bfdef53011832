package hpp

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
)

// Storefront event types of a fraud review outcome.
const (
	EventSessionFraudStatus = "session.fraud_status_changed"
	EventChargeFraudStatus  = core.EventChargeFraudStatus
)

// fraudRecheckAfter is how long an order under fraud review waits for
// Klarna's notification before the poller reads it from Order Management,
// and then between reads while Order Management still says PENDING. A
// charge's check_fraud job is due again this long after it records a
// PENDING answer, by the clock at that moment, not when its read started.
const fraudRecheckAfter = 15 * time.Minute

func (s *Service) fraudRecheck() time.Duration { return fraudRecheckAfter }

// NotificationURL is the KP merchant_urls.notification of the order of
// session id with secret: Klarna POSTs {"order_id", "event_type"} there when
// a PENDING fraud review ends (FACTS 8.4).
func NotificationURL(publicURL, id, secret string) string {
	return publicURL + "/klarna/kp/" + url.PathEscape(id) + "/notification?secret=" + url.QueryEscape(secret)
}

// Notification is a decoded fraud notification body.
type Notification struct {
	OrderID   string
	EventType string
}

// DecodeNotification decodes and checks a notification body; fields Klarna
// may add are ignored, and so is an event type hppd does not know (Klarna
// adds enum values without notice): the Order Management read decides.
func DecodeNotification(body []byte) (*Notification, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, core.Invalid("body", "is not a JSON notification")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, core.Invalid("body", "has data after the JSON object")
	}
	var n Notification
	for _, f := range []struct {
		name string
		dst  *string
	}{{"order_id", &n.OrderID}, {"event_type", &n.EventType}} {
		v, ok := raw[f.name]
		if !ok {
			return nil, core.Invalid(f.name, "is required")
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			return nil, core.Invalid(f.name, "must be a string")
		}
		if *f.dst == "" {
			return nil, core.Invalid(f.name, "is required")
		}
		if len(*f.dst) > 255 {
			return nil, core.Invalid(f.name, "is longer than 255 characters")
		}
	}
	return &n, nil
}

// NotificationResult says what a notification did.
type NotificationResult struct {
	SessionID string
	// FraudStatus is the order's fraud status as Order Management reported
	// it ("" when the read is deferred to a job).
	FraudStatus string
	// Changed: hppd recorded a new fraud status.
	Changed bool
	// Deferred: Order Management could not be read now; a job reads it.
	Deferred bool
}

var (
	errNotifyOrder  = &core.Error{Code: core.CodeNotFound, Field: "order_id", Message: "the session has no order with that id"}
	errStillPending = &core.Error{Code: core.CodeConflict, Field: "event_type", Message: "klarna's order management still reports the order's fraud review as PENDING"}
	errOMUnknown    = &core.Error{Code: core.CodeNotFound, Field: "order_id", Message: "klarna's order management does not know the order"}
)

// HandleNotification verifies a fraud notification for the order of session
// id. Notifications are unsigned: after the secret and the order id, the
// order is read from Order Management, and only what that read says is
// recorded (a history entry on the session and its charge, and storefront
// events). When the read fails, a job repeats it and the answer says the
// outcome is deferred.
func (s *Service) HandleNotification(ctx context.Context, id, secret string, body []byte) (NotificationResult, error) {
	res := NotificationResult{SessionID: id}
	cur, err := s.session(id)
	if err != nil {
		if core.IsNotFound(err) {
			s.Stats.CallbacksRejected.Add(1)
			return res, errNoCallback
		}
		return res, err
	}
	if secret == "" || !SecretMatches(secret, cur.NotifySecretHash) {
		s.Stats.CallbacksRejected.Add(1)
		return res, errBadSecret
	}
	n, err := DecodeNotification(body)
	if err != nil {
		s.Stats.CallbacksRejected.Add(1)
		return res, err
	}
	if cur.OrderID == "" || subtle.ConstantTimeCompare([]byte(n.OrderID), []byte(cur.OrderID)) != 1 {
		s.Stats.CallbacksRejected.Add(1)
		return res, errNotifyOrder
	}
	log := s.logger(ctx).With("session_id", id, "order_id", cur.OrderID)
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	fs, changed, err := s.readFraud(rctx, id, core.SourceCallback, nil)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, errOMUnknown):
		s.Stats.CallbacksRejected.Add(1)
		log.Warn("fraud notification for an order order management does not know; nothing changed")
		return res, err
	case errors.Is(err, errReadOrderFinal):
		s.Stats.CallbacksRejected.Add(1)
		return res, upstream("read order", err)
	default:
		log.Warn("fraud notification: order management not read; a job reads it", "err", err)
		now := s.now()
		if err := s.db.Update(func(tx store.Tx) error {
			_, err := tx.AddJob(&core.Job{ID: core.SyncJobID(id), Kind: core.JobSyncSession, SessionID: id, DueAt: now, CreatedAt: now, Source: core.SourceCallback})
			return err
		}); err != nil {
			return res, &core.Error{Code: core.CodeInternal, Message: "record notification", Err: err}
		}
		s.Wake()
		s.Stats.CallbacksAccepted.Add(1)
		res.Deferred = true
		return res, nil
	}
	res.FraudStatus, res.Changed = fs, changed
	if fs == core.FraudPending {
		s.Stats.CallbacksRejected.Add(1)
		log.Warn("fraud notification, but order management still reports PENDING; nothing changed", "event_type", n.EventType)
		return res, errStillPending
	}
	s.Stats.CallbacksAccepted.Add(1)
	log.Info("fraud notification verified", "event_type", n.EventType, "fraud_status", fs, "changed", changed)
	return res, nil
}

// errReadOrderFinal wraps a definitive Klarna refusal of the Order
// Management read (other than 404).
var errReadOrderFinal = errors.New("order management refused the read")

// checkFraud is the sync job of a session whose order is under fraud review.
func (s *Service) checkFraud(ctx context.Context, sess *core.Session, src core.Source, job *core.Job) error {
	_, _, err := s.readFraud(ctx, sess.ID, src, job)
	if errors.Is(err, errOMUnknown) || errors.Is(err, errReadOrderFinal) {
		s.log.Error("order management read of an order under fraud review refused; the poller reads it again later",
			"session_id", sess.ID, "order_id", sess.OrderID, "err", err)
		if job != nil {
			return s.completeJob(job)
		}
		return nil
	}
	return err
}

// readFraud reads the order of session id from Order Management and records
// its fraud status when it is an outcome the session does not have yet, on
// the session and its charge, with storefront events, in one transaction
// that also completes job (nil: none). It returns the status read and whether it
// changed anything. A transient failure is returned as it is (retry later).
func (s *Service) readFraud(ctx context.Context, id string, src core.Source, job *core.Job) (string, bool, error) {
	sess, err := s.session(id)
	if err != nil {
		return "", false, err
	}
	if sess.OrderID == "" {
		return "", false, errOMUnknown
	}
	order, err := s.klarnaFor(sess.KlarnaAccount).ReadOrder(ctx, sess.OrderID)
	if err != nil {
		if klarna.IsNotFound(err) {
			return "", false, errOMUnknown
		}
		if retryable(err) {
			return "", false, fmt.Errorf("read order of session %s from order management: %w", id, err)
		}
		return "", false, fmt.Errorf("%w: %w", errReadOrderFinal, err)
	}
	if order.OrderID != "" && order.OrderID != sess.OrderID {
		return "", false, errOMUnknown
	}
	fs := order.FraudStatus
	now := s.now()
	var changed bool
	err = s.db.Update(func(tx store.Tx) error {
		changed = false
		if job != nil {
			if err := tx.CompleteJob(job, now); err != nil {
				return err
			}
		}
		cur, err := tx.Session(id)
		if err != nil {
			return err
		}
		pending := cur.FraudReviewPending()
		if !cur.SetFraudStatus(fs, src, "fraud review: order management reports "+fs, now) {
			if pending && cur.CheckAt.IsZero() {
				cur.CheckAt = now.Add(s.fraudRecheck())
				return tx.PutSession(cur)
			}
			return nil
		}
		changed = true
		if cur.FraudReviewPending() {
			cur.CheckAt = now.Add(s.fraudRecheck())
		}
		if err := tx.PutSession(cur); err != nil {
			return err
		}
		if err := s.sessionEvent(tx, cur, EventSessionFraudStatus, now); err != nil {
			return err
		}
		if cur.ChargeID == "" {
			return nil
		}
		c, err := tx.Charge(cur.ChargeID)
		if core.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if c.SessionID != cur.ID || c.OrderID != cur.OrderID || !c.SetFraudStatus(fs, src, "fraud review of the fallback order: "+fs, now) {
			return nil
		}
		return s.chargeEvent(tx, c, EventChargeFraudStatus, now)
	})
	if err != nil {
		return "", false, fmt.Errorf("record the fraud status of session %s: %w", id, err)
	}
	if changed {
		s.log.Info("fraud status recorded", "session_id", id, "order_id", sess.OrderID, "fraud_status", fs, "source", src)
	}
	return fs, changed, nil
}

// checkChargeFraud runs a check_fraud job: it reads the charge's order from
// Order Management and records a decided fraud status on the charge (history
// entry and storefront event); while the order is still PENDING the job is
// due again fraudRecheckAfter after that answer is recorded.
func (s *Service) checkChargeFraud(ctx context.Context, j *core.Job) error {
	c, err := s.charge(j.ChargeID)
	if core.IsNotFound(err) {
		return s.completeJob(j)
	}
	if err != nil {
		return err
	}
	if !c.FraudReviewPending() {
		return s.completeJob(j)
	}
	log := s.log.With("charge_id", c.ID, "order_id", c.OrderID, "job_id", j.ID)
	order, err := s.klarnaFor(c.KlarnaAccount).ReadOrder(ctx, c.OrderID)
	if err != nil && retryable(err) && !klarna.IsNotFound(err) {
		return fmt.Errorf("read order of charge %s from order management: %w", c.ID, err)
	}
	now := s.now()
	if err != nil {
		log.Error("order management refused the read of a charged order under fraud review; not checking it again", "err", err)
		return s.completeJob(j)
	}
	err = s.db.Update(func(tx store.Tx) error {
		cur, err := tx.Charge(c.ID)
		if err != nil {
			return err
		}
		st := cur.FraudRead(order.FraudStatus, now)
		if !st.Settled {
			// Still under review: read again later.
			nj := *j
			nj.DueAt = now.Add(s.fraudRecheck())
			return tx.ReleaseJob(&nj, now)
		}
		if err := tx.CompleteJob(j, now); err != nil {
			return err
		}
		if st.Changed {
			log.Info("fraud status recorded", "fraud_status", order.FraudStatus)
		}
		return s.writeCharge(tx, cur, st, now)
	})
	if err != nil {
		return fmt.Errorf("record the fraud status of charge %s: %w", c.ID, err)
	}
	return nil
}
