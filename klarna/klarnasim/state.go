package klarnasim

import (
	"encoding/json"
	"errors"
	"time"
)

// Errors of the Go-side test driver (and the /_sim/ status they map to).
var (
	// ErrNotFound: unknown or expired session (404).
	ErrNotFound = errors.New("klarnasim: not found or expired")
	// ErrConflict: the session cannot take this action any more (409).
	ErrConflict = errors.New("klarnasim: conflict")
	// ErrInvalid: the driver request itself is wrong (400).
	ErrInvalid = errors.New("klarnasim: invalid request")
	// ErrDeclined: the shopper declined the KP authorization.
	ErrDeclined = errors.New("klarnasim: authorization declined")
)

// kpSession is a Klarna Payments session.
type kpSession struct {
	id          string
	created     time.Time
	expires     time.Time
	fields      map[string]json.RawMessage // the request fields, echoed on read
	data        orderData
	clientToken string
	orderID     string // set once an order is placed: the session is complete
	latestAuth  string
	authURL     string   // merchant_urls.authorization: the authorization callback
	hppIDs      []string // the HPP sessions created on it
}

func (k *kpSession) expired(now time.Time) bool { return !now.Before(k.expires) }

// authorization is a KP authorization token and what it authorized.
type authorization struct {
	token      string
	kpID       string
	expires    time.Time
	data       orderData // the session as authorized
	superseded bool
	cancelled  bool
	orderID    string
	orderBody  any   // the first successful place-order body, decoded
	orderRep   reply // its answer, repeated for an identical replay
}

// hppSession is a Hosted Payment Page session.
type hppSession struct {
	id        string
	kpID      string
	status    string
	updated   time.Time
	expires   time.Time
	mode      string
	urls      hppURLs
	title     string
	authToken string
	orderID   string
	klarnaRef string
}

// hppURLs are the merchant URL templates of an HPP session.
type hppURLs struct {
	success, cancel, back, failure, errorURL, statusUpdate string
}

func (h *hppSession) final() bool {
	switch h.status {
	case "COMPLETED", "CANCELLED", "DISABLED":
		return true
	}
	return false
}

// Customer token behaviours (POST /_sim/tokens).
const (
	BehaviorOK          = "ok"
	BehaviorUnavailable = "unavailable"
	BehaviorFailed      = "failed"
)

// finalTokenCodes are the behaviours that are a final error code.
var finalTokenCodes = map[string]bool{
	"TOKEN_CANCELLED": true, "TOKEN_SUSPENDED": true, "TOKEN_FORBIDDEN": true,
	"PAYMENT_METHOD_CURRENCY_MISMATCH": true, "TOKEN_NOT_FOUND": true,
}

// custToken is a customer token with its scripted behaviour.
type custToken struct {
	id           string
	behavior     string
	failuresLeft int
	status       string // ACTIVE, CANCELLED, SUSPENDED
	recovered    bool
}

// idemEntry is the remembered reply of a token order with an idempotency key.
type idemEntry struct {
	rep reply
	at  time.Time
}

// Order sources in OrderRecord.Source.
const (
	SourceKP            = "kp"
	SourceHPP           = "hpp"
	SourceCustomerToken = "customer_token"
)

// OrderRecord is one order the simulator placed.
type OrderRecord struct {
	OrderID            string          `json:"order_id"`
	Source             string          `json:"source"`
	AuthorizationToken string          `json:"authorization_token,omitempty"`
	CustomerToken      string          `json:"customer_token,omitempty"`
	KPSessionID        string          `json:"kp_session_id,omitempty"`
	HPPSessionID       string          `json:"hpp_session_id,omitempty"`
	IdempotencyKey     string          `json:"idempotency_key,omitempty"`
	OrderAmount        int64           `json:"order_amount"`
	PurchaseCurrency   string          `json:"purchase_currency"`
	Captured           bool            `json:"captured"`
	FraudStatus        string          `json:"fraud_status"`
	ConfirmationURL    string          `json:"confirmation_url,omitempty"`
	Request            json.RawMessage `json:"request"`
	CreatedAt          time.Time       `json:"created_at"`

	// Cancelled: Klarna cancelled the order (fraud review REJECTED).
	Cancelled bool `json:"cancelled,omitempty"`

	// Account names the simulated Klarna account the order was placed at
	// (Options.Account; set by a Multi).
	Account string `json:"account,omitempty"`
}

// Orders returns every order placed, oldest first.
func (s *Sim) Orders() []OrderRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]OrderRecord(nil), s.orders...)
	for i := range out {
		out[i].Account = s.opts.Account
	}
	return out
}

// recoverToken marks an unavailable customer token recovered after a KP
// order from a buy session carrying it (D-recover). Caller holds s.mu.
func (s *Sim) recoverToken(k *kpSession) {
	if k.data.Customer == nil || k.data.Customer.CustomerToken == "" || k.data.Intent != "buy" {
		return
	}
	if t := s.tokens[k.data.Customer.CustomerToken]; t != nil && t.behavior == BehaviorUnavailable {
		t.recovered = true
	}
}

// authorize issues a new authorization token for k, superseding the older
// ones. Caller holds s.mu.
func (s *Sim) authorize(k *kpSession, now time.Time) *authorization {
	if prev := s.auths[k.latestAuth]; prev != nil {
		prev.superseded = true
	}
	a := &authorization{
		token:   s.newID(),
		kpID:    k.id,
		expires: now.Add(authorizationLifetime),
		data:    k.data,
	}
	s.auths[a.token] = a
	k.latestAuth = a.token
	return a
}
