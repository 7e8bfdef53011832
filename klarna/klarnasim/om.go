package klarnasim

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hppd/hppd/klarna"
)

// Callback kinds (CallbackRecord.Kind, CallbackFaults.Kinds).
const (
	CallbackStatusUpdate  = "status_update"
	CallbackAuthorization = "authorization"
	CallbackNotification  = "notification"
)

// orderLifetime is how long an authorized order can be captured (the
// simulator's stand-in for Klarna's per-payment-method expiry).
const orderLifetime = 28 * 24 * time.Hour

// fraudState is the simulator's fraud review. Guarded by Sim.mu.
type fraudState struct {
	// hold: KP session ids and customer tokens whose orders are placed
	// with fraud_status PENDING.
	hold map[string]bool
	// notify: order id → its merchant_urls.notification, placeholders filled.
	notify map[string]string
}

// applies reports whether the callback faults apply to a callback kind.
func (f CallbackFaults) applies(kind string) bool {
	if len(f.Kinds) == 0 {
		return true
	}
	if kind == "" {
		kind = CallbackStatusUpdate
	}
	for _, k := range f.Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// kpCallbackURL validates merchant_urls.<name> of a KP body as a callback
// URL (https unless loopback or insecure callbacks are allowed; FACTS 8.6)
// and returns it ("" when absent).
func (s *Sim) kpCallbackURL(o jobj, name string) string {
	mu, ok := o.object("merchant_urls", false)
	if !ok {
		return ""
	}
	return s.merchantURL(mu, name, true)
}

// fillKP fills the placeholders of a KP merchant URL ({session.id},
// {order.id}; payments-v1.json merchant_urls).
func fillKP(tmpl, sessionID, orderID string) string {
	return strings.NewReplacer("{session.id}", url.QueryEscape(sessionID), "{order.id}", url.QueryEscape(orderID)).Replace(tmpl)
}

// sendAuthorizationCallback queues the KP authorization callback of a new
// authorization, when the session asked for one (FACTS 8.3). Caller holds
// s.mu.
func (s *Sim) sendAuthorizationCallback(k *kpSession, a *authorization) {
	if k.authURL == "" {
		return
	}
	body, err := marshal(klarna.AuthorizationCallback{AuthorizationToken: a.token, SessionID: k.id})
	if err != nil {
		s.log.Error("encode authorization callback", "kp_session_id", k.id, "err", err)
		return
	}
	s.cb.enqueue(s.callbackFaults(), callbackEvent{
		url:       fillKP(k.authURL, k.id, ""),
		sessionID: k.id,
		eventID:   s.newID(),
		status:    "AUTHORIZED",
		body:      body,
		kind:      CallbackAuthorization,
	})
}

// fraudStatusFor is the fraud_status of a new order of a KP session or a
// customer token. Caller holds s.mu.
func (s *Sim) fraudStatusFor(key string) string {
	if s.fraud.hold[key] {
		return klarna.FraudPending
	}
	return klarna.FraudAccepted
}

// noteNotification remembers an order's notification URL. Caller holds s.mu.
func (s *Sim) noteNotification(orderID, tmpl, kpID string) {
	if tmpl == "" {
		return
	}
	if s.fraud.notify == nil {
		s.fraud.notify = make(map[string]string)
	}
	s.fraud.notify[orderID] = fillKP(tmpl, kpID, orderID)
}

func (s *Sim) holdForFraudReview(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fraud.hold == nil {
		s.fraud.hold = make(map[string]bool)
	}
	s.fraud.hold[id] = true
}

// HoldForFraudReview makes the orders of a KP session or a customer token
// (by id) come back with fraud_status PENDING, to be decided later by
// DecideFraud. Errors: ErrNotFound.
func (s *Sim) HoldForFraudReview(id string) error {
	s.mu.Lock()
	_, isKP := s.kp[id]
	_, isToken := s.tokens[id]
	s.mu.Unlock()
	if !isKP && !isToken {
		return fmt.Errorf("kp session or customer token %s: %w", id, ErrNotFound)
	}
	s.holdForFraudReview(id)
	return nil
}

// DecideFraud ends the fraud review of an order: ACCEPTED or REJECTED for a
// PENDING order, STOPPED for a PENDING or ACCEPTED one. A rejected order is
// cancelled. The order's merchant_urls.notification, when it had one, is
// sent {"order_id", "event_type": "FRAUD_RISK_<decision>"} (FACTS 8.4), with
// the callback faults of kind notification. Errors: ErrInvalid (decision),
// ErrNotFound, ErrConflict (already decided).
func (s *Sim) DecideFraud(orderID, decision string) error {
	var event string
	switch decision {
	case klarna.FraudAccepted:
		event = klarna.FraudRiskAccepted
	case klarna.FraudRejected:
		event = klarna.FraudRiskRejected
	case klarna.FraudStopped:
		event = klarna.FraudRiskStopped
	default:
		return fmt.Errorf("fraud decision %q (want ACCEPTED, REJECTED or STOPPED): %w", decision, ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.orderIndex(orderID)
	if i < 0 {
		return fmt.Errorf("order %s: %w", orderID, ErrNotFound)
	}
	o := &s.orders[i]
	switch {
	case o.FraudStatus == klarna.FraudPending:
	case o.FraudStatus == klarna.FraudAccepted && decision == klarna.FraudStopped:
	default:
		return fmt.Errorf("order %s has fraud_status %s: %w", orderID, o.FraudStatus, ErrConflict)
	}
	o.FraudStatus = decision
	if decision == klarna.FraudRejected {
		o.Cancelled = true
	}
	u := s.fraud.notify[orderID]
	if u == "" {
		return nil
	}
	body, err := marshal(klarna.Notification{OrderID: orderID, EventType: event})
	if err != nil {
		return err
	}
	s.cb.enqueue(s.callbackFaults(), callbackEvent{
		url:       u,
		sessionID: orderID,
		eventID:   s.newID(),
		status:    decision,
		body:      body,
		kind:      CallbackNotification,
	})
	return nil
}

// orderIndex finds an order by id (-1: none). Caller holds s.mu.
func (s *Sim) orderIndex(id string) int {
	for i := range s.orders {
		if s.orders[i].OrderID == id {
			return i
		}
	}
	return -1
}

// readOrder is Order Management's GET /ordermanagement/v1/orders/{id}.
func (s *Sim) readOrder(c *call) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.orderIndex(c.r.PathValue("id"))
	if i < 0 {
		return fail(http.StatusNotFound, "NO_SUCH_ORDER", "Order not found")
	}
	o := s.orders[i]
	status, captured, remaining := "AUTHORIZED", int64(0), o.OrderAmount
	switch {
	case o.Cancelled:
		status, remaining = "CANCELLED", 0
	case o.Captured:
		status, captured, remaining = "CAPTURED", o.OrderAmount, 0
	}
	return ok(http.StatusOK, map[string]any{
		"order_id":                    o.OrderID,
		"status":                      status,
		"fraud_status":                o.FraudStatus,
		"order_amount":                o.OrderAmount,
		"original_order_amount":       o.OrderAmount,
		"captured_amount":             captured,
		"refunded_amount":             0,
		"remaining_authorized_amount": remaining,
		"purchase_currency":           o.PurchaseCurrency,
		"klarna_reference":            strings.ToUpper(strings.ReplaceAll(o.OrderID, "-", "")[:8]),
		"created_at":                  o.CreatedAt.UTC().Format(timeLayout),
		"expires_at":                  o.CreatedAt.Add(orderLifetime).UTC().Format(timeLayout),
	})
}

func (s *Sim) simHoldForFraudReview(w http.ResponseWriter, r *http.Request) {
	if err := s.HoldForFraudReview(r.PathValue("id")); err != nil {
		writeDriverError(w, driverStatus(err), err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) simDecideFraud(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Decision string `json:"decision"`
	}
	if err := decodeStrict(r, &in); err != nil {
		writeDriverError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if err := s.DecideFraud(r.PathValue("id"), in.Decision); err != nil {
		writeDriverError(w, driverStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"order_id": r.PathValue("id"), "fraud_status": in.Decision})
}
