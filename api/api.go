// Package api defines the JSON resources of hppd's storefront API: what the
// HTTP handlers answer and what storefront events carry ("the resource as the
// API would return it"). Views leave out what a storefront must never see
// again: callback secrets (hashed anyway), authorization tokens, and all but
// the last characters of customer tokens.
package api

import (
	"time"

	"github.com/hppd/hppd/core"
)

// KlarnaIDs are Klarna's ids of a session.
type KlarnaIDs struct {
	KPSessionID  string `json:"kp_session_id,omitempty"`
	HPPSessionID string `json:"hpp_session_id,omitempty"`
}

// Error is Klarna's refusal as kept on a session or charge.
type Error struct {
	HTTPStatus    int      `json:"http_status,omitempty"`
	ErrorCode     string   `json:"error_code,omitempty"`
	ErrorMessages []string `json:"error_messages,omitempty"`
	CorrelationID string   `json:"correlation_id,omitempty"`
}

// Session is the session resource.
type Session struct {
	ID               string    `json:"id"`
	Status           string    `json:"status"`
	KlarnaStatus     string    `json:"klarna_status,omitempty"`
	Integration      string    `json:"integration"`
	PlaceOrderMode   string    `json:"place_order_mode"`
	RedirectURL      string    `json:"redirect_url,omitempty"`
	ClientToken      string    `json:"client_token,omitempty"`
	QRCodeURL        string    `json:"qr_code_url,omitempty"`
	DistributionURL  string    `json:"distribution_url,omitempty"`
	Klarna           KlarnaIDs `json:"klarna"`
	OrderID          string    `json:"order_id,omitempty"`
	OrderIDUnknown   bool      `json:"order_id_unknown,omitempty"`
	FraudStatus      string    `json:"fraud_status,omitempty"`
	ChargeID         string    `json:"charge_id,omitempty"`
	KlarnaAccount    string    `json:"klarna_account,omitempty"`
	PurchaseCountry  string    `json:"purchase_country"`
	PurchaseCurrency string    `json:"purchase_currency"`
	OrderAmount      int64     `json:"order_amount"`
	MerchantRef1     string    `json:"merchant_reference1,omitempty"`
	Error            *Error    `json:"error,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
	ExpiresAt        time.Time `json:"expires_at"`
	// Sequence is the number of the last storefront event about the session
	// (0: none yet); each event carries the session with its own number.
	Sequence int64         `json:"sequence"`
	History  []core.Change `json:"history"`
}

// SessionLink is the short form of a session inside a charge.
type SessionLink struct {
	ID          string    `json:"id"`
	Status      string    `json:"status,omitempty"`
	RedirectURL string    `json:"redirect_url,omitempty"`
	ClientToken string    `json:"client_token,omitempty"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
}

// Charge is the charge resource.
type Charge struct {
	ID               string       `json:"id"`
	Status           string       `json:"status"`
	CustomerToken    string       `json:"customer_token"`
	CustomerPresent  bool         `json:"customer_present"`
	OrderID          string       `json:"order_id,omitempty"`
	OrderIDUnknown   bool         `json:"order_id_unknown,omitempty"`
	FraudStatus      string       `json:"fraud_status,omitempty"`
	ErrorCode        string       `json:"error_code,omitempty"`
	ErrorMessages    []string     `json:"error_messages,omitempty"`
	Session          *SessionLink `json:"session,omitempty"`
	KlarnaAccount    string       `json:"klarna_account,omitempty"`
	PurchaseCurrency string       `json:"purchase_currency"`
	OrderAmount      int64        `json:"order_amount"`
	MerchantRef1     string       `json:"merchant_reference1,omitempty"`
	// Retries counts the scheduled retries used (customer absent);
	// NextRetryAt is when the next one is due, while the charge is retrying.
	Retries     int            `json:"retries"`
	NextRetryAt *time.Time     `json:"next_retry_at,omitempty"`
	Attempts    []core.Attempt `json:"attempts"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
	// Sequence is like Session.Sequence, for the charge's events.
	Sequence int64         `json:"sequence"`
	History  []core.Change `json:"history"`
}

// Token is hppd's and Klarna's view of a customer token.
type Token struct {
	CustomerToken string       `json:"customer_token"`
	LastChargeID  string       `json:"last_charge_id,omitempty"`
	LastOutcome   string       `json:"last_outcome,omitempty"`
	LastChargeAt  *time.Time   `json:"last_charge_at,omitempty"`
	Recovered     bool         `json:"recovered"`
	RecoveredAt   *time.Time   `json:"recovered_at,omitempty"`
	RecoveredBy   string       `json:"recovered_by,omitempty"`
	KlarnaAccount string       `json:"klarna_account,omitempty"`
	Klarna        *TokenKlarna `json:"klarna,omitempty"`
	KlarnaError   *Error       `json:"klarna_error,omitempty"`
}

// TokenKlarna is Klarna's status of a token.
type TokenKlarna struct {
	Status            string `json:"status"`
	PaymentMethodType string `json:"payment_method_type,omitempty"`
	MaskedNumber      string `json:"masked_number,omitempty"`
	Brand             string `json:"brand,omitempty"`
	ExpiryDate        string `json:"expiry_date,omitempty"`
}

// List is a page of resources.
type List[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// ErrorBody is every error answer of hppd's API.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong; Field names the offending request field.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// MaskToken shows only the last four characters of a customer token.
func MaskToken(t string) string {
	if len(t) <= 4 {
		return "****"
	}
	return "****" + t[len(t)-4:]
}

func apiError(e *core.KlarnaError) *Error {
	if e == nil {
		return nil
	}
	return &Error{HTTPStatus: e.HTTPStatus, ErrorCode: e.Code, ErrorMessages: e.Messages, CorrelationID: e.CorrelationID}
}

// FromSession builds the session resource.
func FromSession(s *core.Session) Session {
	h := s.History
	if h == nil {
		h = []core.Change{}
	}
	return Session{
		ID: s.ID, Status: string(s.Status), KlarnaStatus: s.KlarnaStatus, Integration: s.Integration,
		PlaceOrderMode: s.PlaceOrderMode, RedirectURL: s.RedirectURL, ClientToken: s.ClientToken,
		QRCodeURL: s.QRCodeURL, DistributionURL: s.DistributionURL,
		Klarna:  KlarnaIDs{KPSessionID: s.KPSessionID, HPPSessionID: s.HPPSessionID},
		OrderID: s.OrderID, OrderIDUnknown: s.OrderIDUnknown, FraudStatus: s.FraudStatus, ChargeID: s.ChargeID,
		KlarnaAccount:   s.KlarnaAccount,
		PurchaseCountry: s.Purchase.PurchaseCountry, PurchaseCurrency: s.Purchase.PurchaseCurrency,
		OrderAmount: s.Purchase.OrderAmount, MerchantRef1: s.Purchase.MerchantReference1,
		Error: apiError(s.Error), CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, ExpiresAt: s.ExpiresAt, History: h,
		Sequence: s.Sequence,
	}
}

// FromCharge builds the charge resource; sess is its fallback session, if any.
func FromCharge(c *core.Charge, sess *core.Session) Charge {
	out := Charge{
		ID: c.ID, Status: string(c.Status), CustomerToken: MaskToken(c.CustomerToken), CustomerPresent: c.CustomerPresent,
		OrderID: c.OrderID, OrderIDUnknown: c.OrderIDUnknown, FraudStatus: c.FraudStatus, PurchaseCurrency: c.Purchase.PurchaseCurrency,
		OrderAmount: c.Purchase.OrderAmount, MerchantRef1: c.Purchase.MerchantReference1, Retries: c.Retries,
		Attempts: c.Attempts, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, History: c.History,
		KlarnaAccount: c.KlarnaAccount, Sequence: c.Sequence,
	}
	if c.Status == core.ChargeRetrying && !c.NextRetryAt.IsZero() {
		t := c.NextRetryAt
		out.NextRetryAt = &t
	}
	if out.Attempts == nil {
		out.Attempts = []core.Attempt{}
	}
	if out.History == nil {
		out.History = []core.Change{}
	}
	if c.Error != nil && !c.Status.Paid() {
		out.ErrorCode, out.ErrorMessages = c.Error.Code, c.Error.Messages
	}
	if c.SessionID != "" {
		out.Session = &SessionLink{ID: c.SessionID}
		if sess != nil {
			out.Session.Status = string(sess.Status)
			out.Session.RedirectURL = sess.RedirectURL
			out.Session.ClientToken = sess.ClientToken
			out.Session.ExpiresAt = sess.ExpiresAt
		}
	}
	return out
}
