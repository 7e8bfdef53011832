package core

import "time"

// Fraud statuses of a placed order (Klarna's values; FACTS 2.3, 8.4).
// PENDING means Klarna decides later and tells the order's
// merchant_urls.notification; hppd then reads the order from Order
// Management before it records the outcome.
const (
	FraudAccepted = "ACCEPTED"
	FraudPending  = "PENDING"
	FraudRejected = "REJECTED"
	FraudStopped  = "STOPPED"
)

// JobCheckFraud reads the order of a charge under fraud review from Order
// Management until Klarna decides (token orders have no notification URL).
const JobCheckFraud JobKind = "check_fraud"

// CheckFraudJobID is the id of the fraud review check of a charge's order.
func CheckFraudJobID(chargeID string) string { return "check_fraud/" + chargeID }

// FraudDecided reports whether fs is a fraud review outcome (not PENDING,
// not empty).
func FraudDecided(fs string) bool {
	return fs != "" && fs != FraudPending
}

// FraudReviewPending reports whether the session's order waits for Klarna's
// fraud review, or was placed by Klarna (HPP PLACE_ORDER, CAPTURE_ORDER) and
// hppd has not read its fraud status yet.
func (s *Session) FraudReviewPending() bool {
	if s.Status != SessionOrderPlaced {
		return false
	}
	return s.FraudStatus == FraudPending ||
		(s.FraudStatus == "" && s.OrderID != "" && (s.PlaceOrderMode == ModePlace || s.PlaceOrderMode == ModeCapture))
}

// fraudMoves reports whether a recorded fraud status may become to: a review
// outcome replaces PENDING (or nothing); PENDING replaces only nothing; an
// accepted order may still be stopped or rejected (FRAUD_RISK_STOPPED);
// REJECTED and STOPPED are final.
func fraudMoves(from, to string) bool {
	if to == FraudPending {
		return from == "" // first learnt from Order Management
	}
	if !FraudDecided(to) || from == to {
		return false
	}
	switch from {
	case "", FraudPending:
		return true
	case FraudAccepted:
		return to == FraudRejected || to == FraudStopped
	}
	return false
}

// SetFraudStatus records the outcome of the fraud review of the session's
// order, read from Klarna, as a history entry. It changes nothing unless the
// session has an order and fs is an outcome its fraud status may move to; it
// reports whether it changed anything.
func (s *Session) SetFraudStatus(fs string, src Source, reason string, now time.Time) bool {
	if s.Status != SessionOrderPlaced || !fraudMoves(s.FraudStatus, fs) {
		return false
	}
	s.History = append(s.History, Change{At: now, From: string(s.Status), To: string(s.Status), KlarnaStatus: s.KlarnaStatus, Source: src, Reason: reason, FraudStatus: fs})
	s.FraudStatus = fs
	s.UpdatedAt = now
	s.CheckAt = time.Time{}
	return true
}

// SetFraudStatus records the outcome of the fraud review of the charge's
// order as a history entry; it reports whether it changed anything. The
// charge's status stays what it is: the money question is the storefront's
// (a REJECTED order is cancelled by Klarna, and the event says so).
func (c *Charge) SetFraudStatus(fs string, src Source, reason string, now time.Time) bool {
	if c.OrderID == "" || !fraudMoves(c.FraudStatus, fs) {
		return false
	}
	c.History = append(c.History, Change{At: now, From: string(c.Status), To: string(c.Status), Source: src, Reason: reason, FraudStatus: fs})
	c.FraudStatus = fs
	c.UpdatedAt = now
	return true
}
