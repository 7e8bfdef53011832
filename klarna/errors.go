package klarna

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Klarna error codes the classification helpers look at (FACTS 3.3).
const (
	CodeUnavailablePaymentMethod = "UNAVAILABLE_PAYMENT_METHOD"
	CodePaymentMethodFailed      = "PAYMENT_METHOD_FAILED"
)

// Klarna error codes of a place-order whose authorization already has an
// order (FACTS 2.3, 8.2).
const (
	CodeInvalidOperation = "INVALID_OPERATION" // 403 "Authorization token already consumed"
	CodeSessionCompleted = "SESSION_COMPLETED" // 404 "Session has already been completed"
	CodeBadValue         = "BAD_VALUE"         // 409 "order has been already completed with different request body"
)

// ErrUnusableAnswer is wrapped by the Err of a *Error whose 2xx answer hppd
// could not use: a body that is not a JSON object, or an order answer without
// order_id. Klarna did act; see IsUnusableAnswer.
var ErrUnusableAnswer = errors.New("unusable success answer")

// ErrInvalidRequest is wrapped by errors about a call's arguments (an empty
// id, a nil or empty body); nothing was sent.
var ErrInvalidRequest = errors.New("klarna: invalid request")

// Error is the failure of a Klarna call: an error answer, a transport
// failure, or a success answer that could not be decoded.
type Error struct {
	Op            string   // e.g. "place_order", "create_hpp_session"
	HTTPStatus    int      // 0 when no response came
	Code          string   // error_code
	Messages      []string // error_messages
	CorrelationID string
	RetryAfter    time.Duration // from Retry-After or X-Ratelimit-Reset on 429/503
	Err           error         // transport or decoding cause, if any
	// Attempt is the number of the HTTP attempt that failed (1 for the
	// first); above 1 the call was resent, so Klarna may have acted on an
	// earlier attempt whose answer was lost.
	Attempt int
}

// Error describes the failure without tokens, secrets or the request URL, for
// example "klarna place_order: 403 PAYMENT_METHOD_FAILED: Purchase failed
// (correlation id 6a0b…)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("klarna ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.HTTPStatus == 0 {
		b.WriteString("no response")
	} else {
		b.WriteString(strconv.Itoa(e.HTTPStatus))
		if e.Code != "" {
			b.WriteString(" ")
			b.WriteString(e.Code)
		} else if e.HTTPStatus >= 300 {
			b.WriteString(" ")
			b.WriteString(http.StatusText(e.HTTPStatus))
		}
	}
	if len(e.Messages) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(e.Messages, "; "))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.CorrelationID != "" {
		fmt.Fprintf(&b, " (correlation id %s)", e.CorrelationID)
	}
	return b.String()
}

// Unwrap returns the transport or decoding cause.
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the failure is transient (see IsTransient).
func (e *Error) Temporary() bool { return e.transient() }

func (e *Error) transient() bool {
	switch {
	case e.HTTPStatus == 0:
		return e.Err != nil
	case e.HTTPStatus == http.StatusTooManyRequests:
		return true
	default:
		return e.HTTPStatus >= 500 && e.HTTPStatus <= 599
	}
}

func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// IsFallbackTrigger reports a 403 UNAVAILABLE_PAYMENT_METHOD: the customer
// token cannot be charged and the fallback purchase flow should start.
func IsFallbackTrigger(err error) bool {
	e := asError(err)
	return e != nil && e.HTTPStatus == http.StatusForbidden && e.Code == CodeUnavailablePaymentMethod
}

// IsRetryCharge reports a 403 PAYMENT_METHOD_FAILED: a definitive decline
// after which a new charge attempt (with a new idempotency key) may succeed.
func IsRetryCharge(err error) bool {
	e := asError(err)
	return e != nil && e.HTTPStatus == http.StatusForbidden && e.Code == CodePaymentMethodFailed
}

// IsTransient reports a failure without a definitive answer: no response
// (timeout, connection error, cancelled context, rate limiter wait), a 5xx or
// a 429. Resending with the same idempotency key is safe.
func IsTransient(err error) bool {
	e := asError(err)
	return e != nil && e.transient()
}

// IsFinal reports any 4xx other than 429, UNAVAILABLE_PAYMENT_METHOD and
// PAYMENT_METHOD_FAILED: the request must not be resent unchanged.
func IsFinal(err error) bool {
	e := asError(err)
	return e != nil && e.HTTPStatus >= 400 && e.HTTPStatus <= 499 &&
		e.HTTPStatus != http.StatusTooManyRequests && !IsFallbackTrigger(e) && !IsRetryCharge(e)
}

// IsNotFound reports a 404 (an unknown or expired session, token or
// authorization).
func IsNotFound(err error) bool {
	e := asError(err)
	return e != nil && e.HTTPStatus == http.StatusNotFound
}

// ErrorCode returns Klarna's error_code of err, or "" unless err is a *Error.
func ErrorCode(err error) string {
	if e := asError(err); e != nil {
		return e.Code
	}
	return ""
}

// retryAfter reads the delay Klarna asks for on a 429 or 503: Retry-After
// (seconds or an HTTP date), else X-Ratelimit-Reset (seconds).
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil {
			return clampSeconds(float64(s))
		}
		if t, err := http.ParseTime(v); err == nil {
			if d := t.Sub(now); d > 0 {
				return d
			}
			return 0
		}
	}
	if v := strings.TrimSpace(h.Get("X-Ratelimit-Reset")); v != "" {
		// Klarna documents seconds; tolerate "1, 1;w=1" style lists by
		// reading the first item.
		if i := strings.IndexAny(v, ",;"); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
		if s, err := strconv.ParseFloat(v, 64); err == nil {
			return clampSeconds(s)
		}
	}
	return 0
}

func clampSeconds(s float64) time.Duration {
	const maxDelay = 24 * time.Hour
	switch {
	case s <= 0 || s != s: // negative or NaN
		return 0
	case s >= maxDelay.Seconds():
		return maxDelay
	default:
		return time.Duration(s * float64(time.Second))
	}
}

// IsUnusableAnswer reports a 2xx answer whose body could not be read or used
// (not JSON, cut off, or an order without order_id). Klarna acted on the
// request: for an order it means the order may exist, so the outcome is
// unknown, never a refusal.
func IsUnusableAnswer(err error) bool {
	e := asError(err)
	return e != nil && e.HTTPStatus >= 200 && e.HTTPStatus <= 299 && e.Err != nil
}

// IsAlreadyOrdered reports the answers Klarna gives to a place-order whose
// authorization or KP session already has an order (FACTS 2.3, 8.2): 403
// INVALID_OPERATION "Authorization token already consumed", 404
// SESSION_COMPLETED, and 409 BAD_VALUE "order has been already completed with
// different request body". The other 409 BAD_VALUE ("Not matching fields")
// is a refusal and does not count.
func IsAlreadyOrdered(err error) bool {
	e := asError(err)
	if e == nil {
		return false
	}
	switch {
	case e.HTTPStatus == http.StatusForbidden && e.Code == CodeInvalidOperation:
		return true
	case e.HTTPStatus == http.StatusNotFound && e.Code == CodeSessionCompleted:
		return true
	case e.HTTPStatus == http.StatusConflict && e.Code == CodeBadValue:
		for _, m := range e.Messages {
			if strings.Contains(strings.ToLower(m), "already completed") {
				return true
			}
		}
	}
	return false
}
