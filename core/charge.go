package core

import (
	"strconv"
	"time"
)

// ChargeStatus is the outcome of a token charge.
type ChargeStatus string

// Charge statuses.
const (
	// ChargePending: created, the first attempt's answer is not recorded yet
	// (a crash here is repaired by resending the same attempt).
	ChargePending       ChargeStatus = "pending"
	ChargeCharged       ChargeStatus = "charged"
	ChargeFallback      ChargeStatus = "fallback"
	ChargeNeedsCustomer ChargeStatus = "needs_customer"
	ChargeRetrying      ChargeStatus = "retrying"
	ChargeFailed        ChargeStatus = "failed"
	ChargeRecovered     ChargeStatus = "recovered"
)

// ChargeStatuses lists every charge status.
var ChargeStatuses = []ChargeStatus{ChargePending, ChargeCharged, ChargeFallback, ChargeNeedsCustomer, ChargeRetrying, ChargeFailed, ChargeRecovered}

// Valid reports whether s is a known status.
func (s ChargeStatus) Valid() bool {
	for _, v := range ChargeStatuses {
		if s == v {
			return true
		}
	}
	return false
}

// Paid reports whether money moved for the charge: nothing changes it again.
func (s ChargeStatus) Paid() bool { return s == ChargeCharged || s == ChargeRecovered }

// Attempt results.
const (
	AttemptCharged     = "charged"
	AttemptDeclined    = "declined"    // 403 PAYMENT_METHOD_FAILED: a new attempt gets a new key
	AttemptUnavailable = "unavailable" // 403 UNAVAILABLE_PAYMENT_METHOD: fallback
	AttemptTransient   = "transient"   // no definitive answer: resend with the same key
	AttemptFinal       = "final"       // other 4xx
)

// Attempt is one token order call (or one resend of it).
type Attempt struct {
	At             time.Time `json:"at"`
	IdempotencyKey string    `json:"idempotency_key"`
	Result         string    `json:"result"`
	HTTPStatus     int       `json:"http_status,omitempty"`
	ErrorCode      string    `json:"error_code,omitempty"`
	CorrelationID  string    `json:"correlation_id,omitempty"`
}

// Charge is one charge of a saved customer token and its recovery.
type Charge struct {
	ID              string     `json:"id"`
	Storefront      string     `json:"storefront"`
	CustomerToken   string     `json:"customer_token"`
	CustomerPresent bool       `json:"customer_present"`
	Purchase        Purchase   `json:"purchase"`
	AutoCapture     bool       `json:"auto_capture,omitempty"`
	ReturnURLs      ReturnURLs `json:"return_urls"`
	// Integration of the fallback purchase: hpp (default) or sdk.
	Integration string       `json:"integration,omitempty"`
	Status      ChargeStatus `json:"status"`
	OrderID     string       `json:"order_id,omitempty"`
	FraudStatus string       `json:"fraud_status,omitempty"`
	Error       *KlarnaError `json:"error,omitempty"`
	SessionID   string       `json:"session_id,omitempty"`
	// OrderIDUnknown: the order exists but Klarna's answers did not say its
	// id (see Session.OrderIDUnknown).
	OrderIDUnknown bool `json:"order_id_unknown,omitempty"`
	// KlarnaAccount names the Klarna account the token is charged at (the
	// one that issued it); empty: the default account.
	KlarnaAccount string `json:"klarna_account,omitempty"`

	// Request is the token order body, built once and sent unchanged by every attempt.
	Request []byte `json:"request,omitempty"`
	// Try counts definitive attempts (each has its own idempotency key);
	// AttemptKey is the key of the current one, persisted before it is sent.
	Try        int    `json:"try"`
	AttemptKey string `json:"attempt_key"`
	Retries    int    `json:"retries"` // scheduled retries used (customer absent)
	// NextRetryAt is when the scheduled retry of a retrying charge is due;
	// zero in every other status.
	NextRetryAt time.Time `json:"next_retry_at,omitzero"`
	Attempts    []Attempt `json:"attempts"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Sequence counts the storefront events about the charge, like
	// Session.Sequence.
	Sequence int64    `json:"sequence,omitempty"`
	History  []Change `json:"history"`
}

// NextEvent counts one more storefront event about the charge and returns its
// sequence number (1 for the first).
func (c *Charge) NextEvent() int64 {
	c.Sequence++
	return c.Sequence
}

// AttemptKey is the Klarna-Idempotency-Key of try n of a charge.
func AttemptKey(chargeID string, try int) string { return chargeID + "-" + strconv.Itoa(try) }

// RetryChargeJobID is the id of the scheduled retry number n of a charge.
func RetryChargeJobID(chargeID string, n int) string {
	return "retry_charge/" + chargeID + "/" + strconv.Itoa(n)
}

// NextTry starts a new definitive attempt with a fresh idempotency key.
func (c *Charge) NextTry() {
	c.Try++
	c.AttemptKey = AttemptKey(c.ID, c.Try)
}

// SetStatus moves the charge, recording history. It refuses to move a paid
// charge and reports whether anything changed.
func (c *Charge) SetStatus(to ChargeStatus, src Source, reason string, now time.Time) bool {
	if c.Status.Paid() || c.Status == to {
		return false
	}
	c.History = append(c.History, Change{At: now, From: string(c.Status), To: string(to), Source: src, Reason: reason})
	c.Status = to
	c.UpdatedAt = now
	if to != ChargeRetrying {
		c.NextRetryAt = time.Time{}
	}
	return true
}

// TokenInfo is hppd's view of a customer token, per storefront.
type TokenInfo struct {
	Storefront    string       `json:"storefront"`
	CustomerToken string       `json:"customer_token"`
	LastChargeID  string       `json:"last_charge_id,omitempty"`
	LastOutcome   ChargeStatus `json:"last_outcome,omitempty"`
	LastChargeAt  time.Time    `json:"last_charge_at,omitzero"`
	Recovered     bool         `json:"recovered"`
	RecoveredAt   time.Time    `json:"recovered_at,omitzero"`
	RecoveredBy   string       `json:"recovered_by,omitempty"`

	// KlarnaAccount is the account the token was first charged at: later
	// charges and reads of the token go there.
	KlarnaAccount string `json:"klarna_account,omitempty"`
}

// IdempotencyRecord remembers a storefront POST by its Idempotency-Key.
type IdempotencyRecord struct {
	Storefront  string `json:"storefront"`
	Key         string `json:"key"`
	RequestHash []byte `json:"request_hash"`
	Status      int    `json:"status"`
	Body        []byte `json:"body,omitempty"`
	Done        bool   `json:"done"`
	// Owner names the process run that is answering a request not yet done;
	// a record left by a run that died may be taken over at once, because
	// the ids of what the request creates derive from its key.
	Owner     string    `json:"owner,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Scope is chosen when a key is first used (and again when it is used
	// after its TTL): the ids of what the request creates derive from the
	// key and its scope, so a key reused after its TTL makes new records
	// instead of finding the old ones. Records written before scopes existed
	// have none, and their ids derive from the key alone.
	Scope string `json:"scope,omitempty"`
}

// ListQuery selects a storefront's sessions or charges, newest first.
type ListQuery struct {
	Storefront string
	Status     string
	Limit      int
	Cursor     string
}
