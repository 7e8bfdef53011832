package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/klarna/klarnasim"
)

// opRequests are the simulator's records of one operation, in arrival order.
func (e *env) opRequests(op string) []klarnasim.RequestRecord {
	var out []klarnasim.RequestRecord
	for _, r := range e.sim.Requests() {
		if r.Operation == op {
			out = append(out, r)
		}
	}
	return out
}

// statuses lists the answer statuses of records.
func statuses(recs []klarnasim.RequestRecord) []int {
	out := make([]int, len(recs))
	for i, r := range recs {
		out[i] = r.Status
	}
	return out
}

// raw sends a storefront request and returns the answer with its headers.
func (e *env) raw(method, path string, body any, hdr map[string]string) (*http.Response, map[string]any) {
	e.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.tokenFor("shop-a"))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if err := json.Unmarshal(rb, &out); err != nil {
		e.t.Fatalf("%s %s: %d, not JSON: %q", method, path, resp.StatusCode, rb)
	}
	out["_raw"] = string(rb)
	return resp, out
}

func (e *env) payAndPlace(s map[string]any) {
	e.t.Helper()
	e.follow(e.act(hppID(s), "pay"))
	e.waitStatus(s["id"].(string), "order_placed")
	if n := len(e.ordersFor(e.session(s["id"].(string)))); n != 1 {
		e.t.Fatalf("%d orders for one checkout", n)
	}
}

// A 429 on HPP session creation processed nothing (FACTS 8.5): hppd resends
// it after Retry-After and the checkout goes on.
func TestHPPCreationRateLimitedIsResentAfterRetryAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"create_hpp_session": [{"burst_429": {"every": 1000000, "length": 1, "reset": 1}}]}`)
	s := e.createSession("")
	if s["redirect_url"] == nil || s["status"] != "pending" {
		t.Fatalf("session %v", s["_raw"])
	}
	recs := e.opRequests("create_hpp_session")
	if got := statuses(recs); len(got) != 2 || got[0] != http.StatusTooManyRequests || got[1] != http.StatusCreated {
		t.Fatalf("HPP creations answered %v, want [429 201]", got)
	}
	// Retry-After: 1 was honoured (a lower bound, not a speed figure).
	if gap := recs[1].Time.Sub(recs[0].Time); gap < 900*time.Millisecond {
		t.Fatalf("resent %v after a 429 with Retry-After: 1", gap)
	}
	if n := len(e.opRequests("create_kp_session")); n != 1 {
		t.Fatalf("%d KP sessions for one checkout", n)
	}
	e.payAndPlace(s)
}

// A 5xx on KP session creation is resent: a stray unpaid KP session is
// harmless, a lost checkout is not.
func TestKPCreation5xxIsResentOneCheckout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"create_kp_session": [{"burst_429": {"every": 1000000, "length": 1, "status": 503}}]}`)
	s := e.createSession("")
	if got := statuses(e.opRequests("create_kp_session")); len(got) != 2 || got[0] != http.StatusServiceUnavailable || got[1] != http.StatusOK {
		t.Fatalf("KP creations answered %v, want [503 200]", got)
	}
	if n := len(e.opRequests("create_hpp_session")); n != 1 {
		t.Fatalf("%d HPP sessions for one checkout", n)
	}
	st, list := e.do("GET", "/v1/sessions", nil, nil)
	if st != http.StatusOK {
		t.Fatalf("list: %d %v", st, list["_raw"])
	}
	if items, _ := list["data"].([]any); len(items) != 1 {
		t.Fatalf("hppd has %d sessions for one checkout: %v", len(items), list["_raw"])
	}
	e.payAndPlace(s)
}

// An HPP creation that took effect but answered 500 leaves a stray session
// at Klarna with hppd's merchant_urls. Its first callback reveals it, and
// hppd disables it; the checkout hppd handed out is unaffected.
func TestStrayHPPSessionAfterA5xxWithEffectIsDisabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"create_hpp_session": [{"burst_429": {"every": 1000000, "length": 1, "status": 500, "after_effect": true}}]}`)
	s := e.createSession("")
	if got := statuses(e.opRequests("create_hpp_session")); len(got) != 2 || got[0] != http.StatusInternalServerError || got[1] != http.StatusCreated {
		t.Fatalf("HPP creations answered %v, want [500 201]", got)
	}
	kp := s["klarna"].(map[string]any)["kp_session_id"].(string)
	ids := e.sim.HPPSessionIDs(kp)
	if len(ids) != 2 {
		t.Fatalf("%d HPP sessions at Klarna, want the stray and the real one", len(ids))
	}
	stray := ids[0]
	if stray == hppID(s) {
		stray = ids[1]
	}
	// Klarna reports a status change of the stray (here: somebody opened
	// it) to the merchant_urls it shares with the real one.
	if _, _, err := e.sim.Act(stray, klarnasim.ActionOpen); err != nil {
		t.Fatal(err)
	}
	e.eventually("the stray HPP session disabled", func() bool { return e.hppStatus(stray) == "DISABLED" })
	if st := e.hppStatus(hppID(s)); st != "WAITING" {
		t.Fatalf("the real HPP session is %s", st)
	}
	if got := e.session(s["id"].(string)); got["status"] != "pending" || hppID(got) != hppID(s) {
		t.Fatalf("session after the stray's callback: %v", got["_raw"])
	}
	e.payAndPlace(s)
}

func (e *env) hppStatus(id string) string {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.simURL+"/hpp/v1/sessions/"+id, nil)
	req.SetBasicAuth("sim", "sim")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out.Status
}

// A present customer's fallback whose session Klarna cannot create now is
// answered "try again" (503, Retry-After), never needs_customer; the same
// Idempotency-Key then resumes it without charging the token again.
func TestPresentFallbackUnavailableAnswers503ThenResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("unavailable", 0)
	e.setFaults(`{"create_kp_session": [{"error_rate": 1, "status": 503}]}`)
	key := map[string]string{"Idempotency-Key": "present-fallback-1"}
	resp, out := e.raw("POST", "/v1/charges", chargeBody(tok, true), key)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("with Klarna failing: %d %v", resp.StatusCode, out["_raw"])
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	ed, _ := out["error"].(map[string]any)
	if ed["code"] != "unavailable" || !strings.Contains(fmt.Sprint(ed["message"]), "same Idempotency-Key") {
		t.Fatalf("error body %v", out["_raw"])
	}
	if n := len(e.opRequests("create_kp_session")); n < 2 {
		t.Fatalf("fallback KP session tried %d times within the request", n)
	}
	st, list := e.do("GET", "/v1/charges", nil, nil)
	items, _ := list["data"].([]any)
	if st != http.StatusOK || len(items) != 1 {
		t.Fatalf("charges: %d %v", st, list["_raw"])
	}
	if c := items[0].(map[string]any); c["status"] != "fallback" {
		t.Fatalf("charge while Klarna fails: %v", c)
	}

	e.setFaults(`{}`)
	resp, c := e.raw("POST", "/v1/charges", chargeBody(tok, true), key)
	if resp.StatusCode != http.StatusCreated || c["status"] != "fallback" {
		t.Fatalf("resumed: %d %v", resp.StatusCode, c["_raw"])
	}
	sess, _ := c["session"].(map[string]any)
	if sess == nil || sess["redirect_url"] == nil {
		t.Fatalf("resumed charge without a fallback page: %v", c["_raw"])
	}
	if keys, _ := e.tokenOrders(tok); len(keys) != 1 {
		t.Fatalf("token charged %d times, want once", len(keys))
	}
	if strings.Contains(c["_raw"].(string), "needs_customer") {
		t.Fatalf("a present customer's charge went through needs_customer: %v", c["_raw"])
	}
	full := e.session(sess["id"].(string))
	e.follow(e.act(hppID(full), "pay"))
	id := c["id"].(string)
	e.eventually("charge recovered", func() bool {
		_, got := e.do("GET", "/v1/charges/"+id, nil, nil)
		return got["status"] == "recovered"
	})
	if keys, _ := e.tokenOrders(tok); len(keys) != 1 {
		t.Fatalf("token charged %d times, want once", len(keys))
	}
	if n := len(e.ordersFor(full)); n != 1 {
		t.Fatalf("%d fallback orders", n)
	}
}

// A present customer's "unavailable" answer that only the safety job got
// (the request saw no definitive answer) still starts the fallback
// purchase: a present customer's charge never rests in needs_customer.
func TestPresentUnavailableFoundBySafetyJobFallsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("unavailable", 0)
	e.setFaults(`{"create_token_order": [{"error_rate": 1, "status": 503}]}`)
	c := e.charge(tok, true)
	if c["status"] != "pending" {
		t.Fatalf("charge with no answer from Klarna: %v", c["_raw"])
	}
	e.setFaults(`{}`)
	e.clock.Advance(2 * time.Minute)
	e.m.Poller.RunOnce(context.Background())
	id := c["id"].(string)
	var got map[string]any
	e.eventually("the fallback session", func() bool {
		e.clock.Advance(15 * time.Second) // the resume job's delay
		e.m.Poller.RunOnce(context.Background())
		_, got = e.do("GET", "/v1/charges/"+id, nil, nil)
		s, _ := got["session"].(map[string]any)
		return got["status"] == "fallback" && s != nil && s["redirect_url"] != nil
	})
	if strings.Contains(got["_raw"].(string), "needs_customer") {
		t.Fatalf("a present customer's charge went through needs_customer: %v", got["_raw"])
	}
	if n := e.chargesAtKlarna(tok); n != 0 {
		t.Fatalf("%d token orders placed for an unavailable token", n)
	}
}
