package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

func chargeBody(token string, present bool) map[string]any {
	b := purchase(5000)
	b["customer_token"] = token
	b["customer_present"] = present
	b["return_urls"] = map[string]any{"success": "https://shop.example/ok", "failure": "https://shop.example/fail"}
	return b
}

var keyN atomic.Int64

func (e *env) charge(token string, present bool) map[string]any {
	e.t.Helper()
	n := keyN.Add(1)
	st, out := e.do("POST", "/v1/charges", chargeBody(token, present), map[string]string{"Idempotency-Key": "k-" + e.t.Name() + "-" + string(rune('a'+n%26)) + time.Now().Format("150405.000000000")})
	if st != http.StatusCreated {
		e.t.Fatalf("charge: %d %v", st, out["_raw"])
	}
	return out
}

// tokenOrders are the simulator's token-order requests for a token.
func (e *env) tokenOrders(token string) (keys []string, statuses []int) {
	for _, r := range e.sim.Requests() {
		if r.Operation == "create_token_order" && strings.Contains(r.Path, token) {
			keys = append(keys, r.IdempotencyKey)
			statuses = append(statuses, r.Status)
		}
	}
	return keys, statuses
}

// noJobDue reports whether no job is due at the test clock: every due job
// has run and committed its outcome (deleted, or rescheduled for later).
func (e *env) noJobDue() bool {
	e.t.Helper()
	due := 0
	now := e.clock.Now()
	if err := e.m.Store.View(func(tx store.Tx) error {
		// A running job is leased, and so not due until its lease expires:
		// it counts too, for its result may add the next job.
		return tx.AllJobs(func(j *core.Job) error {
			if j.Lease.Owner != "" || !j.Due().After(now) {
				due++
			}
			return nil
		})
	}); err != nil {
		e.t.Fatal(err)
	}
	return due == 0
}

func (e *env) chargesAtKlarna(token string) int {
	n := 0
	for _, o := range e.sim.Orders() {
		if o.CustomerToken == token {
			n++
		}
	}
	return n
}

func TestChargeOK(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("ok", 0)
	c := e.charge(tok, false)
	if c["status"] != "charged" || c["order_id"] == nil || c["fraud_status"] == nil {
		t.Fatalf("charge: %v", c["_raw"])
	}
	if strings.Contains(c["_raw"].(string), tok) {
		t.Fatal("the answer shows the customer token in clear")
	}
	if n := e.chargesAtKlarna(tok); n != 1 {
		t.Fatalf("%d token orders at klarna", n)
	}
	if atts := c["attempts"].([]any); len(atts) != 1 || atts[0].(map[string]any)["result"] != "charged" {
		t.Fatalf("attempts %v", atts)
	}
}

func TestChargeUnavailablePresentFallsBackAndRecovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("unavailable", 0)
	c := e.charge(tok, true)
	if c["status"] != "fallback" {
		t.Fatalf("charge: %v", c["_raw"])
	}
	sess := c["session"].(map[string]any)
	if !strings.HasPrefix(sess["redirect_url"].(string), e.simURL) || sess["expires_at"] == nil {
		t.Fatalf("fallback session %v", sess)
	}
	// The KP session carried intent buy and the token.
	var kpReq map[string]any
	for _, r := range e.sim.Requests() {
		if r.Operation == "create_kp_session" {
			_ = json.Unmarshal([]byte(r.Body), &kpReq)
		}
	}
	if kpReq["intent"] != "buy" || kpReq["customer"].(map[string]any)["customer_token"] != tok {
		t.Fatalf("KP session request %v", kpReq)
	}
	full := e.session(sess["id"].(string))
	e.follow(e.act(hppID(full), "pay"))
	cid := c["id"].(string)
	var got map[string]any
	e.eventually("charge recovered", func() bool {
		_, got = e.do("GET", "/v1/charges/"+cid, nil, nil)
		return got["status"] == "recovered"
	})
	if got["order_id"] == nil || got["order_id"] != e.session(sess["id"].(string))["order_id"] {
		t.Fatalf("recovered charge %v", got["_raw"])
	}
	st, tv := e.do("GET", "/v1/tokens/"+tok, nil, nil)
	if st != 200 || tv["recovered"] != true || tv["klarna"].(map[string]any)["status"] != "ACTIVE" {
		t.Fatalf("token view %d %v", st, tv["_raw"])
	}
	if c2 := e.charge(tok, false); c2["status"] != "charged" {
		t.Fatalf("second charge: %v", c2["_raw"])
	}
}

func TestChargeUnavailableAbsentNeedsCustomerThenFallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("unavailable", 0)
	c := e.charge(tok, false)
	if c["status"] != "needs_customer" || c["session"] != nil {
		t.Fatalf("charge: %v", c["_raw"])
	}
	if n := e.countRequests("create_kp_session"); n != 0 {
		t.Fatalf("%d KP sessions for an absent customer", n)
	}
	cid := c["id"].(string)
	st, f := e.do("POST", "/v1/charges/"+cid+"/fallback", map[string]any{}, nil)
	if st != 200 || f["status"] != "fallback" {
		t.Fatalf("fallback: %d %v", st, f["_raw"])
	}
	sid := f["session"].(map[string]any)["id"].(string)
	e.follow(e.act(hppID(e.session(sid)), "pay"))
	e.eventually("recovered", func() bool { _, g := e.do("GET", "/v1/charges/"+cid, nil, nil); return g["status"] == "recovered" })
	if st, _ := e.do("POST", "/v1/charges/"+cid+"/fallback", map[string]any{}, nil); st != http.StatusConflict {
		t.Fatalf("fallback of a recovered charge: %d", st)
	}
}

func TestChargeFailedOncePresentRetriesWithNewKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("failed", 1)
	c := e.charge(tok, true)
	if c["status"] != "charged" {
		t.Fatalf("charge: %v", c["_raw"])
	}
	keys, statuses := e.tokenOrders(tok)
	if len(keys) != 2 || keys[0] == keys[1] || statuses[0] != 403 || statuses[1] != 200 {
		t.Fatalf("token orders: keys %v statuses %v", keys, statuses)
	}
}

func TestChargeFailingAbsentRetriesOnScheduleThenFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"HPPD_CHARGE_RETRY_SCHEDULE": "1h,6h"})
	tok := e.sim.CreateToken("failed", 10)
	c := e.charge(tok, false)
	if c["status"] != "retrying" {
		t.Fatalf("charge: %v", c["_raw"])
	}
	cid := c["id"].(string)
	for i, step := range []time.Duration{time.Hour, 6 * time.Hour} {
		e.clock.Advance(step + time.Second)
		e.m.Poller.RunOnce(context.Background())
		// The poller hands due jobs to the job runner; the next retry is
		// scheduled from when this one ran.
		e.eventually("retry attempt", func() bool {
			keys, _ := e.tokenOrders(tok)
			return len(keys) >= i+2 && e.noJobDue()
		})
	}
	var got map[string]any
	e.eventually("failed", func() bool { _, got = e.do("GET", "/v1/charges/"+cid, nil, nil); return got["status"] == "failed" })
	if got["error_code"] != "PAYMENT_METHOD_FAILED" {
		t.Fatalf("charge %v", got["_raw"])
	}
	keys, _ := e.tokenOrders(tok)
	seen := map[string]bool{}
	for _, k := range keys {
		seen[k] = true
	}
	if len(keys) != 3 || len(seen) != 3 {
		t.Fatalf("token orders keys %v (want 3 distinct)", keys)
	}
}

func TestChargeTransientFailuresResendSameKeyNeverTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"create_token_order": [{"error_rate": 0.6, "status": 503, "after_effect": true}]}`)
	for i := 0; i < 5; i++ {
		tok := e.sim.CreateToken("ok", 0)
		c := e.charge(tok, false)
		if c["status"] == "pending" {
			// No definitive answer within the request: the safety job finishes it.
			e.clock.Advance(2 * time.Minute)
			e.m.Poller.RunOnce(context.Background())
		}
		cid := c["id"].(string)
		e.eventually("charged", func() bool { _, g := e.do("GET", "/v1/charges/"+cid, nil, nil); return g["status"] == "charged" })
		keys, _ := e.tokenOrders(tok)
		for _, k := range keys {
			if k != keys[0] {
				t.Fatalf("resends used different keys: %v", keys)
			}
		}
		if n := e.chargesAtKlarna(tok); n != 1 {
			t.Fatalf("token charged %d times", n)
		}
	}
}

func TestChargeFinalErrorsFailWithoutRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, code := range []string{"TOKEN_CANCELLED", "TOKEN_SUSPENDED", "TOKEN_FORBIDDEN", "PAYMENT_METHOD_CURRENCY_MISMATCH"} {
		tok := e.sim.CreateToken(code, 0)
		c := e.charge(tok, true)
		if c["status"] != "failed" || c["error_code"] != code {
			t.Fatalf("%s: %v", code, c["_raw"])
		}
		if keys, _ := e.tokenOrders(tok); len(keys) != 1 {
			t.Fatalf("%s: %d token orders", code, len(keys))
		}
	}
	c := e.charge("unknown-token-xyz", true)
	if c["status"] != "failed" || c["error_code"] != "TOKEN_NOT_FOUND" && c["error_code"] != "NOT_FOUND" {
		t.Fatalf("unknown token: %v", c["_raw"])
	}
	if n := e.countRequests("create_kp_session"); n != 0 {
		t.Fatalf("%d fallback sessions for final errors", n)
	}
}

func TestChargeIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("ok", 0)
	h := map[string]string{"Idempotency-Key": "order-77"}
	st1, c1 := e.do("POST", "/v1/charges", chargeBody(tok, false), h)
	st2, c2 := e.do("POST", "/v1/charges", chargeBody(tok, false), h)
	if st1 != 201 || st2 != 201 || c1["id"] != c2["id"] {
		t.Fatalf("replay: %d %v / %d %v", st1, c1["id"], st2, c2["id"])
	}
	if keys, _ := e.tokenOrders(tok); len(keys) != 1 {
		t.Fatalf("%d token orders for one key", len(keys))
	}
	other := chargeBody(tok, true)
	if st, out := e.do("POST", "/v1/charges", other, h); st != http.StatusConflict {
		t.Fatalf("same key, other body: %d %v", st, out["_raw"])
	}
	if st, out := e.do("POST", "/v1/charges", chargeBody(tok, false), map[string]string{"Idempotency-Key": ""}); st != 400 || !strings.Contains(out["_raw"].(string), "Idempotency-Key") {
		t.Fatalf("no key: %d %v", st, out["_raw"])
	}
}

func TestSDKIntegrationPlacesOrderOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	b := purchase(10000)
	b["integration"] = "sdk"
	st, s := e.do("POST", "/v1/sessions", b, nil)
	if st != 201 || s["client_token"] == nil || s["redirect_url"] != nil {
		t.Fatalf("sdk session: %d %v", st, s["_raw"])
	}
	id := s["id"].(string)
	kp := s["klarna"].(map[string]any)["kp_session_id"].(string)
	auth, err := e.sim.Authorize(kp, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		st, out := e.do("POST", "/v1/sessions/"+id+"/authorization", map[string]any{"authorization_token": auth}, nil)
		if st != 200 {
			t.Fatalf("authorization: %d %v", st, out["_raw"])
		}
	}
	e.waitStatus(id, "order_placed")
	if n := len(e.ordersFor(s)); n != 1 {
		t.Fatalf("%d orders", n)
	}
	if n := e.countRequests("place_order"); n != 1 {
		t.Fatalf("%d place_order calls", n)
	}
}

// A retry whose first attempt died with hppd (its answer never stored) finds
// what the first attempt made: the ids derive from the Idempotency-Key.
func TestRetryAfterCrashFindsTheFirstAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("ok", 0)
	h := map[string]string{"Idempotency-Key": "renewal-9"}
	_, c1 := e.do("POST", "/v1/charges", chargeBody(tok, false), h)
	sh := map[string]string{"Idempotency-Key": "cart-9"}
	_, s1 := e.do("POST", "/v1/sessions", sessionBody(10000, ""), sh)
	// hppd died before storing the answers; the session's HPP step never ran.
	if err := e.m.Store.Update(func(tx store.Tx) error {
		cur, err := tx.Session(s1["id"].(string))
		if err != nil {
			return err
		}
		cur.HPPSessionID, cur.RedirectURL, cur.KlarnaStatus = "", "", ""
		if err := tx.PutSession(cur); err != nil {
			return err
		}
		// The records the dead run left: in progress, owned by it.
		for k, req := range map[string]string{"renewal-9": "POST /v1/charges", "cart-9": "POST /v1/sessions"} {
			body := chargeBody(tok, false)
			if k == "cart-9" {
				body = sessionBody(10000, "")
			}
			b, _ := json.Marshal(body)
			h := sha256.Sum256(append([]byte(req+"\n"), b...))
			// The scope the first attempt chose is what its ids derive from.
			first, err := tx.Idempotency("shop-a", k)
			if err != nil {
				return err
			}
			if err := tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop-a", Key: k, RequestHash: h[:], Owner: "a-dead-run", CreatedAt: e.clock.Now(), Scope: first.Scope}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	st, c2 := e.do("POST", "/v1/charges", chargeBody(tok, false), h)
	if st != 201 || c2["id"] != c1["id"] || c2["status"] != "charged" {
		t.Fatalf("retried charge: %d %v (first %v)", st, c2["_raw"], c1["id"])
	}
	if n := e.chargesAtKlarna(tok); n != 1 {
		t.Fatalf("token charged %d times", n)
	}
	st, s2 := e.do("POST", "/v1/sessions", sessionBody(10000, ""), sh)
	if st != 201 || s2["id"] != s1["id"] || s2["redirect_url"] == nil {
		t.Fatalf("retried session: %d %v", st, s2["_raw"])
	}
	if n := e.countRequests("create_kp_session"); n != 1 {
		t.Fatalf("%d KP sessions", n)
	}
}

func TestFallbackInterruptedBeforeItsSessionIsResumed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("unavailable", 0)
	h := map[string]string{"Idempotency-Key": "buy-now-1"}
	_, c := e.do("POST", "/v1/charges", chargeBody(tok, false), h)
	id := c["id"].(string)
	// As if hppd died right after recording "unavailable, customer present":
	// the charge is in fallback, no session exists, the resume job waits.
	if err := e.m.DB.Update(func(tx store.Tx) error {
		cur, err := tx.Charge(id)
		if err != nil {
			return err
		}
		cur.CustomerPresent, cur.Status = true, core.ChargeFallback
		cur.ReturnURLs = core.ReturnURLs{Success: "https://shop.example/ok", Failure: "https://shop.example/fail"}
		if err := tx.PutCharge(cur); err != nil {
			return err
		}
		_, err = tx.AddJob(&core.Job{ID: core.RetryChargeJobID(id, 0), Kind: core.JobRetryCharge, ChargeID: id, IdempotencyKey: cur.AttemptKey, DueAt: e.clock.Now(), CreatedAt: e.clock.Now()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	var got map[string]any
	e.eventually("fallback session started by the job", func() bool {
		_, got = e.do("GET", "/v1/charges/"+id, nil, nil)
		s, _ := got["session"].(map[string]any)
		return got["status"] == "fallback" && s != nil && s["redirect_url"] != nil
	})
	if n := e.countRequests("create_hpp_session"); n != 1 {
		t.Fatalf("%d HPP sessions", n)
	}
}

// A present customer's fallback records the HPP session's ids, the charge's
// link to the session and the request's answer under its Idempotency-Key in
// one commit. The answer sent is the one the key replays. When Klarna made
// the KP session but not the HPP session at once, the KP session is recorded
// with the answer first; when hppd then dies before the HPP step's commit
// (a session without HPP ids, a charge in fallback without its session, the
// key claimed by the dead run), the storefront's retry finishes the same KP
// session, without charging the token again, and its answer is the one
// replayed after.
func TestFallbackInterruptedBeforeItsLastCommitIsFinishedByTheRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("unavailable", 0)
	h := map[string]string{"Idempotency-Key": "buy-now-2"}
	st, c1 := e.do("POST", "/v1/charges", chargeBody(tok, true), h)
	s1, _ := c1["session"].(map[string]any)
	if st != http.StatusCreated || c1["status"] != "fallback" || s1 == nil || s1["redirect_url"] == nil {
		t.Fatalf("charge: %d %v", st, c1["_raw"])
	}
	resp, again := e.raw("POST", "/v1/charges", chargeBody(tok, true), h)
	if resp.Header.Get("Idempotent-Replayed") != "true" || again["_raw"] != c1["_raw"] {
		t.Fatalf("replay: %q %v, first answer %v", resp.Header.Get("Idempotent-Replayed"), again["_raw"], c1["_raw"])
	}
	cid, sid := c1["id"].(string), s1["id"].(string)
	if err := e.m.Store.Update(func(tx store.Tx) error {
		sess, err := tx.Session(sid)
		if err != nil {
			return err
		}
		sess.HPPSessionID, sess.HPPSessionURL, sess.RedirectURL, sess.KlarnaStatus = "", "", "", ""
		if err := tx.PutSession(sess); err != nil {
			return err
		}
		c, err := tx.Charge(cid)
		if err != nil {
			return err
		}
		c.SessionID = ""
		if err := tx.PutCharge(c); err != nil {
			return err
		}
		first, err := tx.Idempotency("shop-a", "buy-now-2")
		if err != nil {
			return err
		}
		return tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop-a", Key: "buy-now-2", RequestHash: first.RequestHash,
			Owner: "a-dead-run", CreatedAt: first.CreatedAt, Scope: first.Scope})
	}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	st, c2 := e.do("POST", "/v1/charges", chargeBody(tok, true), h)
	s2, _ := c2["session"].(map[string]any)
	if st != http.StatusCreated || c2["id"] != cid || c2["status"] != "fallback" || s2 == nil || s2["id"] != sid || s2["redirect_url"] == nil {
		t.Fatalf("retry: %d %v", st, c2["_raw"])
	}
	if keys, _ := e.tokenOrders(tok); len(keys) != 1 {
		t.Fatalf("token orders: %v", keys)
	}
	if kp, hp := e.countRequests("create_kp_session"), e.countRequests("create_hpp_session"); kp != 1 || hp != 2 {
		t.Fatalf("%d KP sessions, %d HPP sessions (want 1 and the dead run's and the retry's)", kp, hp)
	}
	resp, again = e.raw("POST", "/v1/charges", chargeBody(tok, true), h)
	if resp.Header.Get("Idempotent-Replayed") != "true" || again["_raw"] != c2["_raw"] {
		t.Fatalf("replay after the retry: %v, the retry's answer %v", again["_raw"], c2["_raw"])
	}
}

// A present customer's "unavailable" is recorded in the transaction that
// records the fallback's session. When hppd dies before that commit, the
// charge is as the transaction before left it: pending under its safety job,
// the key claimed by the dead run. The storefront's retry resends the same
// attempt (same key, same body), and the fallback starts from Klarna's
// replayed answer: the token is not charged, and the answer is replayed
// after.
func TestFallbackInterruptedBeforeTheAnswerWasRecordedIsResumed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.sim.CreateToken("unavailable", 0)
	h := map[string]string{"Idempotency-Key": "buy-now-3"}
	e.setFaults(`{"create_token_order": [{"error_rate": 1, "status": 503}]}`)
	st, c1 := e.do("POST", "/v1/charges", chargeBody(tok, true), h)
	if st != http.StatusCreated || c1["status"] != "pending" {
		t.Fatalf("charge while Klarna fails: %d %v", st, c1["_raw"])
	}
	e.setFaults(`{}`)
	cid := c1["id"].(string)
	if err := e.m.Store.Update(func(tx store.Tx) error {
		first, err := tx.Idempotency("shop-a", "buy-now-3")
		if err != nil {
			return err
		}
		return tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop-a", Key: "buy-now-3", RequestHash: first.RequestHash,
			Owner: "a-dead-run", CreatedAt: first.CreatedAt, Scope: first.Scope})
	}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	st, c2 := e.do("POST", "/v1/charges", chargeBody(tok, true), h)
	s2, _ := c2["session"].(map[string]any)
	if st != http.StatusCreated || c2["id"] != cid || c2["status"] != "fallback" || s2 == nil || s2["redirect_url"] == nil {
		t.Fatalf("retry: %d %v", st, c2["_raw"])
	}
	keys, statuses := e.tokenOrders(tok)
	if len(keys) < 2 || statuses[len(statuses)-1] != http.StatusForbidden {
		t.Fatalf("token orders: keys %v statuses %v", keys, statuses)
	}
	for _, k := range keys {
		if k != keys[0] {
			t.Fatalf("token orders with other keys: %v", keys)
		}
	}
	if n := e.chargesAtKlarna(tok); n != 0 {
		t.Fatalf("token charged %d times", n)
	}
	if kp := e.countRequests("create_kp_session"); kp != 1 {
		t.Fatalf("%d KP sessions", kp)
	}
	resp, again := e.raw("POST", "/v1/charges", chargeBody(tok, true), h)
	if resp.Header.Get("Idempotent-Replayed") != "true" || again["_raw"] != c2["_raw"] {
		t.Fatalf("replay after the retry: %v, the retry's answer %v", again["_raw"], c2["_raw"])
	}
}

func TestKeyedSessionSurvivesATransientHPPFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"create_hpp_session": [{"error_rate": 1, "status": 503}]}`)
	h := map[string]string{"Idempotency-Key": "cart-77"}
	st, out := e.do("POST", "/v1/sessions", sessionBody(10000, ""), h)
	if st != http.StatusServiceUnavailable || !strings.Contains(out["_raw"].(string), "retry with the same Idempotency-Key") {
		t.Fatalf("first try: %d %v", st, out["_raw"])
	}
	e.setFaults(`{}`)
	st, s := e.do("POST", "/v1/sessions", sessionBody(10000, ""), h)
	if st != http.StatusCreated || s["status"] != "pending" || s["redirect_url"] == nil {
		t.Fatalf("retry: %d %v", st, s["_raw"])
	}
	if n := e.countRequests("create_kp_session"); n != 1 {
		t.Fatalf("%d KP sessions for one keyed purchase", n)
	}
	e.follow(e.act(hppID(s), "pay"))
	e.waitStatus(s["id"].(string), "order_placed")
}
