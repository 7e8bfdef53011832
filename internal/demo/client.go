package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
)

// maxAnswer bounds what the demo reads of an answer from hppd or the simulator.
const maxAnswer = 4 << 20

// APIError is an error answer of hppd's storefront API or of the simulator's
// test-driver API.
type APIError struct {
	Op      string // what was asked, e.g. "POST /v1/charges"
	Status  int    // HTTP status
	Code    string // hppd's error code (empty for the simulator)
	Message string // the message of the answer, meant for clients
}

func (e *APIError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s: %d %s: %s", e.Op, e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("%s: %d %s", e.Op, e.Status, e.Message)
}

// hppdClient calls hppd's storefront API as the demo shop.
type hppdClient struct {
	base  string
	token func() string
	http  *http.Client
}

// answer is a decoded answer and its raw body (the result page shows both).
type answer struct {
	status int
	raw    []byte
}

func (c *hppdClient) call(ctx context.Context, method, path, idemKey string, in, out any) ([]byte, error) {
	op := method + " " + path
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s: encode: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token())
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	a, err := do(c.http, req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if a.status/100 != 2 {
		e := &APIError{Op: op, Status: a.status}
		var eb api.ErrorBody
		if json.Unmarshal(a.raw, &eb) == nil && eb.Error.Code != "" {
			e.Code, e.Message = eb.Error.Code, eb.Error.Message
			if eb.Error.Field != "" {
				e.Message += " (" + eb.Error.Field + ")"
			}
		} else {
			e.Message = http.StatusText(a.status)
		}
		return nil, e
	}
	if out != nil {
		if err := json.Unmarshal(a.raw, out); err != nil {
			return nil, fmt.Errorf("%s: decode answer: %w", op, err)
		}
	}
	return a.raw, nil
}

// do sends req and reads the whole (bounded) answer.
func do(hc *http.Client, req *http.Request) (answer, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return answer{}, fmt.Errorf("read answer: %w", err)
	}
	return answer{status: resp.StatusCode, raw: raw}, nil
}

// sessionRequest is the body of POST /v1/sessions.
type sessionRequest struct {
	core.Purchase
	ReturnURLs core.ReturnURLs `json:"return_urls"`
}

// chargeRequest is the body of POST /v1/charges.
type chargeRequest struct {
	core.Purchase
	CustomerToken   string          `json:"customer_token"`
	CustomerPresent bool            `json:"customer_present"`
	ReturnURLs      core.ReturnURLs `json:"return_urls"`
}

func (c *hppdClient) createSession(ctx context.Context, in sessionRequest, key string) (*api.Session, error) {
	var s api.Session
	if _, err := c.call(ctx, http.MethodPost, "/v1/sessions", key, in, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (c *hppdClient) createCharge(ctx context.Context, in chargeRequest, key string) (*api.Charge, error) {
	var ch api.Charge
	if _, err := c.call(ctx, http.MethodPost, "/v1/charges", key, in, &ch); err != nil {
		return nil, err
	}
	return &ch, nil
}

func (c *hppdClient) session(ctx context.Context, id string) (*api.Session, []byte, error) {
	var s api.Session
	raw, err := c.call(ctx, http.MethodGet, "/v1/sessions/"+url.PathEscape(id), "", nil, &s)
	if err != nil {
		return nil, nil, err
	}
	return &s, raw, nil
}

func (c *hppdClient) charge(ctx context.Context, id string) (*api.Charge, []byte, error) {
	var ch api.Charge
	raw, err := c.call(ctx, http.MethodGet, "/v1/charges/"+url.PathEscape(id), "", nil, &ch)
	if err != nil {
		return nil, nil, err
	}
	return &ch, raw, nil
}

func (c *hppdClient) cancelSession(ctx context.Context, id, key string) (*api.Session, error) {
	var s api.Session
	if _, err := c.call(ctx, http.MethodPost, "/v1/sessions/"+url.PathEscape(id)+"/cancel", key, struct{}{}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// simClient calls the simulator's test-driver API (/_sim/, HTTP Basic).
type simClient struct {
	base, user, pass string
	http             *http.Client
}

// SimOrder is an order as the simulator recorded it (GET /_sim/orders).
type SimOrder struct {
	OrderID          string    `json:"order_id"`
	Source           string    `json:"source"`
	KPSessionID      string    `json:"kp_session_id"`
	HPPSessionID     string    `json:"hpp_session_id"`
	IdempotencyKey   string    `json:"idempotency_key"`
	OrderAmount      int64     `json:"order_amount"`
	PurchaseCurrency string    `json:"purchase_currency"`
	Captured         bool      `json:"captured"`
	FraudStatus      string    `json:"fraud_status"`
	CreatedAt        time.Time `json:"created_at"`
	// Account is the simulated Klarna account that holds the order.
	Account string `json:"account,omitempty"`
}

func (c *simClient) call(ctx context.Context, method, path string, in, out any) error {
	op := method + " " + path
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: encode: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.SetBasicAuth(c.user, c.pass)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	a, err := do(c.http, req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if a.status/100 != 2 {
		var eb struct {
			Error string `json:"error"`
		}
		msg := http.StatusText(a.status)
		if json.Unmarshal(a.raw, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		return &APIError{Op: op, Status: a.status, Message: msg}
	}
	if out != nil {
		if err := json.Unmarshal(a.raw, out); err != nil {
			return fmt.Errorf("%s: decode answer: %w", op, err)
		}
	}
	return nil
}

// createToken makes a customer token with a scripted behaviour.
func (c *simClient) createToken(ctx context.Context, behavior string, failures int) (string, error) {
	in := struct {
		Behavior string `json:"behavior"`
		Failures int    `json:"failures,omitempty"`
	}{behavior, failures}
	var out struct {
		CustomerToken string `json:"customer_token"`
	}
	if err := c.call(ctx, http.MethodPost, "/_sim/tokens", in, &out); err != nil {
		return "", err
	}
	if out.CustomerToken == "" {
		return "", errors.New("POST /_sim/tokens: no customer_token in the answer")
	}
	return out.CustomerToken, nil
}

// act presses a button of the payment page for the shopper; it returns the
// HPP status and the URL the browser is sent to.
func (c *simClient) act(ctx context.Context, hppID, action string) (status, redirectTo string, err error) {
	var out struct {
		Status     string `json:"status"`
		RedirectTo string `json:"redirect_to"`
	}
	err = c.call(ctx, http.MethodPost, "/_sim/hpp/"+url.PathEscape(hppID)+"/"+action, nil, &out)
	return out.Status, out.RedirectTo, err
}

func (c *simClient) orders(ctx context.Context) ([]SimOrder, error) {
	var out []SimOrder
	err := c.call(ctx, http.MethodGet, "/_sim/orders", nil, &out)
	return out, err
}

// newKey returns a fresh random Idempotency-Key.
func newKey(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return prefix + "-" + hex.EncodeToString(b[:])
}

// money formats minor units: 43900 SEK is "439.00 SEK".
func money(minor int64, currency string) string {
	sign, v := "", uint64(minor)
	if minor < 0 {
		sign, v = "-", uint64(-minor)
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, v/100, v%100, currency)
}

// trimBase removes trailing slashes of a base URL.
func trimBase(u string) string { return strings.TrimRight(u, "/") }
