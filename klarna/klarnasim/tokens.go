package klarnasim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/hppd/hppd/klarna"
)

// CreateToken makes a customer token with a scripted behaviour and returns
// its id: BehaviorOK, BehaviorUnavailable, BehaviorFailed (the first
// failures charges fail with PAYMENT_METHOD_FAILED) or a final code
// (TOKEN_CANCELLED, TOKEN_SUSPENDED, TOKEN_FORBIDDEN,
// PAYMENT_METHOD_CURRENCY_MISMATCH, or TOKEN_NOT_FOUND, which returns an id
// the simulator does not know). It panics on any other behaviour, which is
// a bug in the calling test; POST /_sim/tokens answers 400 instead.
func (s *Sim) CreateToken(behavior string, failures int) string {
	id, err := s.createToken(behavior, failures)
	if err != nil {
		panic(err)
	}
	return id
}

func (s *Sim) createToken(behavior string, failures int) (string, error) {
	switch {
	case behavior == BehaviorOK || behavior == BehaviorUnavailable || finalTokenCodes[behavior]:
	case behavior == BehaviorFailed:
		if failures < 0 {
			return "", fmt.Errorf("token failures %d: %w", failures, ErrInvalid)
		}
	default:
		return "", fmt.Errorf("token behavior %q: %w", behavior, ErrInvalid)
	}
	t := &custToken{id: s.newID(), behavior: behavior, failuresLeft: failures, status: "ACTIVE"}
	switch behavior {
	case "TOKEN_NOT_FOUND":
		return t.id, nil
	case "TOKEN_CANCELLED":
		t.status = "CANCELLED"
	case "TOKEN_SUSPENDED":
		t.status = "SUSPENDED"
	}
	s.mu.Lock()
	s.tokens[t.id] = t
	s.mu.Unlock()
	return t.id, nil
}

func tokenNotFound(code string) reply {
	return fail(http.StatusNotFound, code, "Invalid customer-token ID")
}

// readCustomerToken is GET /customer-token/v1/tokens/{token}.
func (s *Sim) readCustomerToken(c *call) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[c.r.PathValue("token")]
	if t == nil {
		return tokenNotFound("NOT_FOUND")
	}
	if t.behavior == "TOKEN_FORBIDDEN" {
		return fail(http.StatusForbidden, "TOKEN_FORBIDDEN", "Not allowed to use this customer token")
	}
	return ok(http.StatusOK, klarna.CustomerToken{
		Status:            t.status,
		PaymentMethodType: "CARD",
		Card:              &klarna.CardInformation{Brand: "VISA", ExpiryDate: "12/2030", MaskedNumber: "************1111"},
	})
}

// updateTokenStatus is PATCH /customer-token/v1/tokens/{token}/status.
func (s *Sim) updateTokenStatus(c *call) reply {
	chk := &checker{}
	o, good := chk.root(c.body)
	if good {
		o.enum("status", true, "CANCELLED")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[c.r.PathValue("token")]
	if t == nil {
		return tokenNotFound("NOT_FOUND")
	}
	if chk.failed() {
		return badValue(chk.messages())
	}
	if t.behavior == "TOKEN_FORBIDDEN" {
		return fail(http.StatusForbidden, "TOKEN_FORBIDDEN", "Not allowed to use this customer token")
	}
	t.status = "CANCELLED"
	return ok(http.StatusAccepted, nil)
}

// createTokenOrder is POST /customer-token/v1/tokens/{token}/order.
func (s *Sim) createTokenOrder(c *call) reply {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.idemKey != "" {
		if e := s.idem[c.idemKey]; e != nil && now.Sub(e.at) < idempotencyWindow {
			return e.rep
		}
	}
	rep := s.chargeToken(c, now)
	if c.idemKey != "" {
		s.idem[c.idemKey] = &idemEntry{rep: rep, at: now}
	}
	return rep
}

// chargeToken runs one charge attempt. Caller holds s.mu.
func (s *Sim) chargeToken(c *call, now time.Time) reply {
	token := c.r.PathValue("token")
	t := s.tokens[token]
	if t == nil {
		return tokenNotFound("TOKEN_NOT_FOUND")
	}
	chk := &checker{}
	o, good := chk.root(c.body)
	if !good {
		return badValue(chk.messages())
	}
	d := parseOrderBody(o, kindTokenOrder)
	if chk.failed() {
		return badValue(chk.messages())
	}
	switch {
	case t.status == "CANCELLED":
		return fail(http.StatusForbidden, "TOKEN_CANCELLED", "The customer token has been cancelled")
	case t.status == "SUSPENDED":
		return fail(http.StatusForbidden, "TOKEN_SUSPENDED", "The customer token has been suspended")
	case t.behavior == "TOKEN_FORBIDDEN":
		return fail(http.StatusForbidden, "TOKEN_FORBIDDEN", "Not allowed to use this customer token")
	case t.behavior == "PAYMENT_METHOD_CURRENCY_MISMATCH":
		return fail(http.StatusForbidden, "PAYMENT_METHOD_CURRENCY_MISMATCH", "The payment method cannot be used in this currency")
	case t.behavior == BehaviorUnavailable && !t.recovered:
		return fail(http.StatusForbidden, "UNAVAILABLE_PAYMENT_METHOD", "The payment method is unavailable")
	case t.behavior == BehaviorFailed && t.failuresLeft > 0:
		t.failuresLeft--
		return fail(http.StatusForbidden, "PAYMENT_METHOD_FAILED", "The purchase failed")
	}

	id := s.newID()
	fraud := s.fraudStatusFor(token)
	s.orders = append(s.orders, OrderRecord{
		OrderID:          id,
		Source:           SourceCustomerToken,
		CustomerToken:    token,
		IdempotencyKey:   c.idemKey,
		OrderAmount:      d.Amount,
		PurchaseCurrency: d.Currency,
		Captured:         d.AutoCapture,
		FraudStatus:      fraud,
		ConfirmationURL:  d.ConfirmationURL,
		Request:          json.RawMessage(bytes.Clone(c.body)),
		CreatedAt:        now,
	})
	return ok(http.StatusOK, s.orderAnswer(klarna.Order{
		OrderID:                 id,
		FraudStatus:             fraud,
		RedirectURL:             s.base(c.r) + "/redirect/orders/" + id,
		AuthorizedPaymentMethod: &klarna.AuthorizedPaymentMethod{Type: "card"},
	}))
}
