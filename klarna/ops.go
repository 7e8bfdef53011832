package klarna

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

func invalid(op, what string) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidRequest, op, what)
}

func marshal(op string, req any) ([]byte, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: encode body: %v", ErrInvalidRequest, op, err)
	}
	return b, nil
}

// CreateKPSession creates a Klarna Payments session (POST
// /payments/v1/sessions, 200). Klarna declares no idempotency key for it, yet
// it is resent (same bytes) on transient failures: a 429 processed nothing
// (FACTS 8.5), and after a 5xx or a timeout a second session is a harmless
// unpaid one, while giving up would lose the checkout.
func (c *Client) CreateKPSession(ctx context.Context, req *KPSessionRequest) (*KPSession, error) {
	if req == nil {
		return nil, invalid(OpCreateKPSession, "nil request")
	}
	body, err := marshal(OpCreateKPSession, req)
	if err != nil {
		return nil, err
	}
	var out KPSession
	if err := c.do(ctx, &call{op: OpCreateKPSession, method: http.MethodPost, path: "/payments/v1/sessions", body: body, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// ReadKPSession reads a Klarna Payments session (GET
// /payments/v1/sessions/{id}); its status is "complete" once an order was
// placed.
func (c *Client) ReadKPSession(ctx context.Context, id string) (*KPSessionRead, error) {
	if id == "" {
		return nil, invalid(OpReadKPSession, "empty session id")
	}
	var out KPSessionRead
	if err := c.do(ctx, &call{op: OpReadKPSession, method: http.MethodGet, path: "/payments/v1/sessions/" + url.PathEscape(id), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// PlaceOrder places the order of an authorization (POST
// /payments/v1/authorizations/{authToken}/order). With an idempotency key the
// call is resent on transient failures with the same bytes and key. Callers
// that must replay a persisted body byte for byte use PlaceOrderRaw.
func (c *Client) PlaceOrder(ctx context.Context, authToken string, req *OrderRequest, idempotencyKey string) (*Order, error) {
	if req == nil {
		return nil, invalid(OpPlaceOrder, "nil request")
	}
	body, err := marshal(OpPlaceOrder, req)
	if err != nil {
		return nil, err
	}
	return c.PlaceOrderRaw(ctx, authToken, body, idempotencyKey)
}

// PlaceOrderRaw is PlaceOrder with a body already encoded; the bytes are sent
// unchanged on every attempt (FACTS 7.2).
func (c *Client) PlaceOrderRaw(ctx context.Context, authToken string, body []byte, idempotencyKey string) (*Order, error) {
	if authToken == "" {
		return nil, invalid(OpPlaceOrder, "empty authorization token")
	}
	if len(body) == 0 {
		return nil, invalid(OpPlaceOrder, "empty body")
	}
	var out Order
	cl := &call{
		op:     OpPlaceOrder,
		method: http.MethodPost,
		path:   "/payments/v1/authorizations/" + url.PathEscape(authToken) + "/order",
		body:   body,
		key:    idempotencyKey,
		out:    &out,
		secret: authToken,
		usable: out.check,
	}
	if err := c.do(ctx, cl); err != nil {
		return nil, err
	}
	return &out, nil
}

// check reports an order answer hppd cannot use: order_id is required.
func (o *Order) check() error {
	if o.OrderID == "" {
		return errors.New("order answer without order_id")
	}
	return nil
}

// CancelAuthorization cancels an authorization that will not be turned into
// an order (DELETE /payments/v1/authorizations/{authToken}, 204). It is not
// resent.
func (c *Client) CancelAuthorization(ctx context.Context, authToken string) error {
	if authToken == "" {
		return invalid(OpCancelAuthorization, "empty authorization token")
	}
	err := c.do(ctx, &call{
		op:     OpCancelAuthorization,
		method: http.MethodDelete,
		path:   "/payments/v1/authorizations/" + url.PathEscape(authToken),
		secret: authToken,
	})
	return err
}

// CreateHPPSession creates a Hosted Payment Page session for a KP session
// (POST /hpp/v1/sessions, 201). It is resent on transient failures like
// CreateKPSession. When a failed attempt's answer named the session it
// created anyway, that stray session is disabled once a resend succeeded
// (nobody can be handed its page); a failure to disable it is logged.
func (c *Client) CreateHPPSession(ctx context.Context, req *HPPSessionRequest) (*HPPSession, error) {
	if req == nil {
		return nil, invalid(OpCreateHPPSession, "nil request")
	}
	if req.PaymentSessionURL == "" {
		return nil, invalid(OpCreateHPPSession, "empty payment_session_url")
	}
	body, err := marshal(OpCreateHPPSession, req)
	if err != nil {
		return nil, err
	}
	var out HPPSession
	cl := &call{op: OpCreateHPPSession, method: http.MethodPost, path: "/hpp/v1/sessions", body: body, out: &out}
	if err := c.do(ctx, cl); err != nil {
		return nil, err
	}
	for _, id := range cl.strays {
		if id == out.SessionID {
			continue
		}
		if err := c.DisableHPPSession(ctx, id); err != nil {
			c.log.LogAttrs(ctx, slog.LevelWarn, "could not disable a stray HPP session", slog.String("hpp_session_id", id), slog.String("error", err.Error()))
			continue
		}
		c.log.LogAttrs(ctx, slog.LevelInfo, "stray HPP session disabled", slog.String("hpp_session_id", id))
	}
	return &out, nil
}

// ReadHPPSession reads an HPP session's status (GET /hpp/v1/sessions/{id}).
// A 404 means the session expired or never existed (IsNotFound).
func (c *Client) ReadHPPSession(ctx context.Context, id string) (*HPPSessionStatus, error) {
	return c.ReadHPPSessionAt(ctx, id, "")
}

// ReadHPPSessionAt is ReadHPPSession at the session_url Klarna returned when
// the session was created (see returnedPath); "" builds the path.
func (c *Client) ReadHPPSessionAt(ctx context.Context, id, sessionURL string) (*HPPSessionStatus, error) {
	if id == "" {
		return nil, invalid(OpReadHPPSession, "empty session id")
	}
	var out hppStatusAnswer
	if err := c.do(ctx, &call{op: OpReadHPPSession, method: http.MethodGet, path: c.hppSessionPath(id, sessionURL), out: &out}); err != nil {
		return nil, err
	}
	return &out.HPPSessionStatus, nil
}

// hppStatusAnswer decodes a read-session answer leniently (FACTS 8.1): this
// read decides whether an order is placed, so a changed shape of a field hppd
// only records (timestamps, klarna_reference, customer) costs that field, not
// the read. The fields hppd acts on (session_id, status, authorization_token,
// order_id) must be strings. Callbacks keep their own, strict decoder.
type hppStatusAnswer struct{ HPPSessionStatus }

func (a *hppStatusAnswer) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if m == nil {
		return errors.New("read-session answer is null")
	}
	var out HPPSessionStatus
	for key, dst := range map[string]*string{
		"session_id": &out.SessionID, "status": &out.Status,
		"authorization_token": &out.AuthorizationToken, "order_id": &out.OrderID,
	} {
		if raw, ok := m[key]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, dst); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	_ = json.Unmarshal(m["klarna_reference"], &out.KlarnaReference)
	for key, dst := range map[string]**time.Time{"updated_at": &out.UpdatedAt, "expires_at": &out.ExpiresAt} {
		var t time.Time
		if raw, ok := m[key]; ok && json.Unmarshal(raw, &t) == nil {
			*dst = &t
		}
	}
	if raw, ok := m["customer"]; ok {
		var c HPPCustomer
		if json.Unmarshal(raw, &c) == nil && c != (HPPCustomer{}) {
			out.Customer = &c
		}
	}
	a.HPPSessionStatus = out
	return nil
}

// DisableHPPSession disables an HPP session (DELETE /hpp/v1/sessions/{id},
// 204). A 400 means the session completed meanwhile (FACTS 1.1, 7.6). It is
// not resent.
func (c *Client) DisableHPPSession(ctx context.Context, id string) error {
	return c.DisableHPPSessionAt(ctx, id, "")
}

// DisableHPPSessionAt is DisableHPPSession at the returned session_url (see
// ReadHPPSessionAt).
func (c *Client) DisableHPPSessionAt(ctx context.Context, id, sessionURL string) error {
	if id == "" {
		return invalid(OpDisableHPPSession, "empty session id")
	}
	err := c.do(ctx, &call{op: OpDisableHPPSession, method: http.MethodDelete, path: c.hppSessionPath(id, sessionURL)})
	return err
}

// DistributeHPPSession asks Klarna to send the HPP link by SMS or e-mail
// (POST /hpp/v1/sessions/{id}/distribution, 201 or 204). It is not resent: a
// resend could message the customer twice.
func (c *Client) DistributeHPPSession(ctx context.Context, id string, req *DistributionRequest) error {
	if id == "" {
		return invalid(OpDistributeHPPSession, "empty session id")
	}
	if req == nil {
		return invalid(OpDistributeHPPSession, "nil request")
	}
	body, err := marshal(OpDistributeHPPSession, req)
	if err != nil {
		return err
	}
	err = c.do(ctx, &call{op: OpDistributeHPPSession, method: http.MethodPost, path: "/hpp/v1/sessions/" + url.PathEscape(id) + "/distribution", body: body})
	return err
}

// ReadCustomerToken reads a customer token's status and payment method (GET
// /customer-token/v1/tokens/{token}).
func (c *Client) ReadCustomerToken(ctx context.Context, token string) (*CustomerToken, error) {
	if token == "" {
		return nil, invalid(OpReadCustomerToken, "empty customer token")
	}
	var out CustomerToken
	cl := &call{
		op:     OpReadCustomerToken,
		method: http.MethodGet,
		path:   "/customer-token/v1/tokens/" + url.PathEscape(token),
		out:    &out,
		secret: token,
	}
	if err := c.do(ctx, cl); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateTokenOrder charges a customer token (POST
// /customer-token/v1/tokens/{token}/order, 200). With an idempotency key the
// call is resent on transient failures with the same bytes and key, so Klarna
// can answer with the original result (FACTS 7.7).
func (c *Client) CreateTokenOrder(ctx context.Context, token string, req *TokenOrderRequest, idempotencyKey string) (*Order, error) {
	if req == nil {
		return nil, invalid(OpCreateTokenOrder, "nil request")
	}
	body, err := marshal(OpCreateTokenOrder, req)
	if err != nil {
		return nil, err
	}
	return c.CreateTokenOrderRaw(ctx, token, body, idempotencyKey)
}

// CreateTokenOrderRaw is CreateTokenOrder with a body already encoded; the
// bytes are sent unchanged on every attempt.
func (c *Client) CreateTokenOrderRaw(ctx context.Context, token string, body []byte, idempotencyKey string) (*Order, error) {
	if token == "" {
		return nil, invalid(OpCreateTokenOrder, "empty customer token")
	}
	if len(body) == 0 {
		return nil, invalid(OpCreateTokenOrder, "empty body")
	}
	var out Order
	cl := &call{
		op:     OpCreateTokenOrder,
		method: http.MethodPost,
		path:   "/customer-token/v1/tokens/" + url.PathEscape(token) + "/order",
		body:   body,
		key:    idempotencyKey,
		out:    &out,
		secret: token,
		usable: out.check,
	}
	if err := c.do(ctx, cl); err != nil {
		return nil, err
	}
	return &out, nil
}
