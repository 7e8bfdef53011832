package klarnasim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/hppd/hppd/klarna"
)

// readOnlyKPFields are session_read fields a request may not set.
var readOnlyKPFields = []string{"authorization_token", "client_token", "expires_at", "status", "payment_method_categories"}

// categories are the payment method categories every KP session offers.
var categories = []klarna.PaymentMethodCategory{{Identifier: "klarna", Name: "Pay with Klarna"}}

func stripReadOnly(m map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = v
	}
	for _, k := range readOnlyKPFields {
		delete(out, k)
	}
	return out
}

// clientToken returns a JWT-shaped client token (unsigned: nothing verifies it).
func (s *Sim) clientToken(sessionID string) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	body := enc.EncodeToString([]byte(`{"session_id":"` + sessionID + `","iss":"klarnasim"}`))
	return head + "." + body + "." + strings.ReplaceAll(s.newID(), "-", "")
}

func kpNotFound() reply {
	return fail(http.StatusNotFound, "NOT_FOUND", "Invalid session id")
}

func invalidAuthToken() reply {
	return fail(http.StatusNotFound, "NOT_FOUND", "Invalid authorization token")
}

// createKPSession is POST /payments/v1/sessions.
func (s *Sim) createKPSession(c *call) reply {
	chk := &checker{}
	o, good := chk.root(c.body)
	if !good {
		return badValue(chk.messages())
	}
	d := parseOrderBody(o, kindSession)
	authURL := s.kpCallbackURL(o, "authorization")
	if chk.failed() {
		return badValue(chk.messages())
	}
	now := s.Now()
	k := &kpSession{
		authURL: authURL,
		id:      s.newID(),
		created: now,
		expires: now.Add(kpSessionLifetime),
		fields:  stripReadOnly(o.m),
		data:    d,
	}
	k.clientToken = s.clientToken(k.id)
	s.mu.Lock()
	s.kp[k.id] = k
	s.mu.Unlock()
	return ok(http.StatusOK, klarna.KPSession{SessionID: k.id, ClientToken: k.clientToken, PaymentMethodCategories: categories})
}

// liveKP returns an unexpired KP session. Caller holds s.mu.
func (s *Sim) liveKP(id string, now time.Time) *kpSession {
	k := s.kp[id]
	if k == nil || k.expired(now) {
		return nil
	}
	return k
}

// readKPSession is GET /payments/v1/sessions/{id}.
func (s *Sim) readKPSession(c *call) reply {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.liveKP(c.r.PathValue("id"), now)
	if k == nil {
		return kpNotFound()
	}
	out := make(map[string]any, len(k.fields)+5)
	for key, v := range k.fields {
		out[key] = v
	}
	status := "incomplete"
	if k.orderID != "" {
		status = "complete"
	}
	out["status"] = status
	out["expires_at"] = k.expires.Format(timeLayout)
	out["client_token"] = k.clientToken
	out["payment_method_categories"] = categories
	if a := s.auths[k.latestAuth]; a != nil && a.usable(now) {
		out["authorization_token"] = a.token
	}
	return ok(http.StatusOK, out)
}

// timeLayout is Klarna's timestamp format ("2019-05-15T13:51:43.507Z").
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func (a *authorization) usable(now time.Time) bool {
	return !a.superseded && !a.cancelled && now.Before(a.expires)
}

// updateKPSession is POST /payments/v1/sessions/{id}: the given top-level
// fields replace the stored ones, and the merged session must be valid.
func (s *Sim) updateKPSession(c *call) reply {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.liveKP(c.r.PathValue("id"), now)
	if k == nil {
		return kpNotFound()
	}
	chk := &checker{}
	o, good := chk.root(c.body)
	if !good {
		return badValue(chk.messages())
	}
	if k.orderID != "" {
		return fail(http.StatusForbidden, "INVALID_OPERATION", "Session is already completed")
	}
	merged := stripReadOnly(k.fields)
	for key, v := range stripReadOnly(o.m) {
		merged[key] = v
	}
	d := parseOrderBody(jobj{c: chk, m: merged}, kindSession)
	if chk.failed() {
		return badValue(chk.messages())
	}
	k.fields, k.data = merged, d
	return ok(http.StatusNoContent, nil)
}

// placeOrder is POST /payments/v1/authorizations/{token}/order.
func (s *Sim) placeOrder(c *call) reply {
	token := c.r.PathValue("token")
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.auths[token]
	if a == nil || a.cancelled || a.superseded || !now.Before(a.expires) {
		return invalidAuthToken()
	}
	k := s.liveKP(a.kpID, now)
	if k == nil {
		return invalidAuthToken()
	}
	chk := &checker{}
	o, good := chk.root(c.body)
	if !good {
		return badValue(chk.messages())
	}
	d := parseOrderBody(o, kindOrder)
	notifyURL := s.kpCallbackURL(o, "notification")
	if chk.failed() {
		return badValue(chk.messages())
	}
	body := decodeGeneric(c.body)
	if a.orderID != "" {
		if rep, harsh := s.replayReply(); harsh {
			return rep
		}
		if reflect.DeepEqual(body, a.orderBody) {
			return a.orderRep
		}
		return fail(http.StatusConflict, "BAD_VALUE", "order has been already completed with different request body")
	}
	if k.orderID != "" {
		return fail(http.StatusNotFound, "SESSION_COMPLETED", "Session is already completed")
	}
	if diff := mismatches(a.data, d); len(diff) > 0 {
		return fail(http.StatusConflict, "BAD_VALUE", "Not matching fields: ["+strings.Join(diff, ", ")+"]")
	}

	id := s.newID()
	fraud := s.fraudStatusFor(k.id)
	s.noteNotification(id, notifyURL, k.id)
	rec := OrderRecord{
		OrderID:            id,
		Source:             SourceKP,
		AuthorizationToken: token,
		KPSessionID:        k.id,
		IdempotencyKey:     c.idemKey,
		OrderAmount:        d.Amount,
		PurchaseCurrency:   d.Currency,
		Captured:           d.AutoCapture,
		FraudStatus:        fraud,
		ConfirmationURL:    d.ConfirmationURL,
		Request:            json.RawMessage(bytes.Clone(c.body)),
		CreatedAt:          now,
	}
	s.orders = append(s.orders, rec)
	k.orderID = id
	a.orderID = id
	a.orderBody = body
	order := klarna.Order{
		OrderID:                 id,
		FraudStatus:             fraud,
		AuthorizedPaymentMethod: &klarna.AuthorizedPaymentMethod{Type: "invoice", NumberOfDays: 30},
	}
	if d.ConfirmationURL != "" {
		order.RedirectURL = s.base(c.r) + "/redirect/orders/" + id
	}
	a.orderRep = ok(http.StatusOK, s.orderAnswer(order))
	if !s.behaviour.HPPOrderIDHidden {
		// HPP learns the order of its KP session (FACTS 1.5: the read has
		// order_id).
		for _, hid := range k.hppIDs {
			if h := s.hpp[hid]; h != nil && h.orderID == "" {
				h.orderID = id
			}
		}
	}
	s.recoverToken(k)
	return a.orderRep
}

// orderAnswer is the body of an order answer: o itself, or with
// PaymentMethodString the guides' form with authorized_payment_method as a
// bare string. Caller holds s.mu.
func (s *Sim) orderAnswer(o klarna.Order) any {
	if !s.behaviour.PaymentMethodString || o.AuthorizedPaymentMethod == nil {
		return o
	}
	m := map[string]any{"order_id": o.OrderID, "fraud_status": o.FraudStatus, "authorized_payment_method": o.AuthorizedPaymentMethod.Type}
	if o.RedirectURL != "" {
		m["redirect_url"] = o.RedirectURL
	}
	return m
}

// decodeGeneric decodes JSON keeping numbers exact, for body comparison.
func decodeGeneric(b []byte) any {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	return v
}

// mismatches lists the fields of an order that differ from what was
// authorized (FACTS 2.3: 409 "Not matching fields: [...]"). Addresses are
// compared only when the order carries them.
func mismatches(auth, order orderData) []string {
	var diff []string
	if auth.Country != order.Country {
		diff = append(diff, "purchase_country")
	}
	if auth.Currency != order.Currency {
		diff = append(diff, "purchase_currency")
	}
	if auth.Amount != order.Amount {
		diff = append(diff, "order_amount")
	}
	if auth.TaxAmount != order.TaxAmount {
		diff = append(diff, "order_tax_amount")
	}
	if !reflect.DeepEqual(auth.Lines, order.Lines) {
		diff = append(diff, "order_lines")
	}
	if order.Billing != nil && !reflect.DeepEqual(auth.Billing, order.Billing) {
		diff = append(diff, "billing_address")
	}
	if order.Shipping != nil && !reflect.DeepEqual(auth.Shipping, order.Shipping) {
		diff = append(diff, "shipping_address")
	}
	return diff
}

// cancelAuthorization is DELETE /payments/v1/authorizations/{token}.
func (s *Sim) cancelAuthorization(c *call) reply {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.auths[c.r.PathValue("token")]
	if a == nil || !a.usable(now) || s.liveKP(a.kpID, now) == nil {
		return invalidAuthToken()
	}
	if a.orderID != "" {
		return fail(http.StatusForbidden, "INVALID_OPERATION", "Authorization token already consumed")
	}
	a.cancelled = true
	return ok(http.StatusNoContent, nil)
}

// Authorize stands in for Klarna.Payments.authorize() in the shopper's
// browser: with approve it returns a new authorization token for the KP
// session (superseding older ones), without it ErrDeclined.
func (s *Sim) Authorize(kpSessionID string, approve bool) (string, error) {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.liveKP(kpSessionID, now)
	if k == nil {
		return "", ErrNotFound
	}
	if k.orderID != "" {
		return "", ErrConflict
	}
	if !approve {
		return "", ErrDeclined
	}
	a := s.authorize(k, now)
	s.sendAuthorizationCallback(k, a)
	return a.token, nil
}
