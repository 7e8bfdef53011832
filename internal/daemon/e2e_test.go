package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/internal/testutil"
	"github.com/hppd/hppd/store"
)

func TestPayModeNonePlacesOneOrderWithTheSessionLines(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("")
	if s["status"] != "pending" || s["place_order_mode"] != "NONE" || !strings.HasPrefix(s["redirect_url"].(string), e.simURL) {
		t.Fatalf("unexpected session: %v", s["_raw"])
	}
	id := s["id"].(string)
	to := e.act(hppID(s), "open")
	_ = to
	to = e.act(hppID(s), "pay")
	if !strings.HasPrefix(to, e.base+"/shopper/"+id+"/success") {
		t.Fatalf("pay redirects to %q", to)
	}
	st, loc := e.follow(to)
	if st != http.StatusSeeOther || !strings.HasPrefix(loc, "https://shop.example/ok?") || !strings.Contains(loc, "hppd_session="+id) {
		t.Fatalf("shopper redirect: %d %q", st, loc)
	}
	got := e.waitStatus(id, "order_placed")
	orders := e.ordersFor(s)
	if len(orders) != 1 {
		t.Fatalf("orders at klarna: %d, want 1", len(orders))
	}
	if got["order_id"] != orders[0].OrderID {
		t.Fatalf("hppd order id %v, klarna %v", got["order_id"], orders[0].OrderID)
	}
	var req struct {
		OrderAmount int64 `json:"order_amount"`
		OrderLines  []struct {
			Name     string `json:"name"`
			Quantity int64  `json:"quantity"`
		} `json:"order_lines"`
		MerchantReference1 string `json:"merchant_reference1"`
	}
	if err := json.Unmarshal(orders[0].Request, &req); err != nil {
		t.Fatal(err)
	}
	if req.OrderAmount != 10000 || len(req.OrderLines) != 1 || req.OrderLines[0].Name != "Espresso cups" || req.MerchantReference1 != "order-42" {
		t.Fatalf("order request %s", orders[0].Request)
	}
	// The history names where each change came from.
	hist, _ := json.Marshal(got["history"])
	for _, want := range []string{`"to":"authorized"`, `"to":"order_placed"`} {
		if !bytes.Contains(hist, []byte(want)) {
			t.Errorf("history lacks %s: %s", want, hist)
		}
	}
}

func TestPayModePlaceOrderRecordsKlarnasOrderWithoutPlacing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("PLACE_ORDER")
	id := s["id"].(string)
	e.act(hppID(s), "pay")
	got := e.waitStatus(id, "order_placed")
	orders := e.ordersFor(s)
	if len(orders) != 1 || got["order_id"] != orders[0].OrderID {
		t.Fatalf("orders %v, session order %v", orders, got["order_id"])
	}
	if n := e.countRequests("place_order"); n != 0 {
		t.Fatalf("hppd called place_order %d times in PLACE_ORDER mode", n)
	}
}

func TestDeclineThenPay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("")
	id := s["id"].(string)
	to := e.act(hppID(s), "decline")
	st, loc := e.follow(to)
	if st != http.StatusSeeOther || !strings.HasPrefix(loc, "https://shop.example/fail") {
		t.Fatalf("decline redirect: %d %q", st, loc)
	}
	e.eventually("klarna status FAILED", func() bool { return e.session(id)["klarna_status"] == "FAILED" })
	if got := e.session(id); got["status"] != "pending" {
		t.Fatalf("declined session is %v, want pending", got["status"])
	}
	e.follow(e.act(hppID(s), "pay"))
	e.waitStatus(id, "order_placed")
	if n := len(e.ordersFor(s)); n != 1 {
		t.Fatalf("%d orders", n)
	}
}

func TestBackKeepsTheSessionOpen(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("")
	id := s["id"].(string)
	st, loc := e.follow(e.act(hppID(s), "back"))
	if st != http.StatusSeeOther || !strings.HasPrefix(loc, "https://shop.example/back") {
		t.Fatalf("back redirect: %d %q", st, loc)
	}
	e.eventually("klarna status BACK", func() bool { return e.session(id)["klarna_status"] == "BACK" })
	if got := e.session(id); got["status"] != "pending" {
		t.Fatalf("status %v", got["status"])
	}
}

func TestStorefrontCancelDisablesAtKlarna(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("")
	id := s["id"].(string)
	st, out := e.do("POST", "/v1/sessions/"+id+"/cancel", nil, nil)
	if st != http.StatusOK || out["status"] != "cancelled" {
		t.Fatalf("cancel: %d %v", st, out["_raw"])
	}
	if n := e.countRequests("disable_hpp_session"); n != 1 {
		t.Fatalf("disable calls %d", n)
	}
	// A later pay attempt is refused by Klarna and changes nothing.
	if _, _, err := e.sim.Act(hppID(s), "pay"); err == nil {
		t.Fatal("paying a disabled session succeeded")
	}
	if got := e.session(id); got["status"] != "cancelled" {
		t.Fatalf("status %v", got["status"])
	}
}

func TestCancelAfterCompletionReportsTheOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"HPPD_POLL_SCHEDULE": "@every 1h"})
	e.setFaults(`{"callbacks": {"drop_rate": 1}}`)
	s := e.createSession("")
	id := s["id"].(string)
	e.act(hppID(s), "pay") // nobody hears about it yet
	st, out := e.do("POST", "/v1/sessions/"+id+"/cancel", nil, nil)
	if st != http.StatusOK {
		t.Fatalf("cancel: %d %v", st, out["_raw"])
	}
	got := e.waitStatus(id, "order_placed")
	if got["status"] == "cancelled" {
		t.Fatal("completed session reported cancelled")
	}
}

func TestExpiryDisablesAndExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("")
	id := s["id"].(string)
	e.clock.Advance(47*time.Hour - 5*time.Minute) // inside the expiry margin
	e.m.Poller.RunOnce(context.Background())
	got := e.waitStatus(id, "expired")
	if got["klarna_status"] != "DISABLED" {
		t.Fatalf("klarna status %v", got["klarna_status"])
	}
	if n := e.countRequests("disable_hpp_session"); n != 1 {
		t.Fatalf("disable calls %d", n)
	}
}

func TestLostCallbacksThePollerStillPlacesTheOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"callbacks": {"drop_rate": 1}}`)
	s := e.createSession("")
	id := s["id"].(string)
	e.act(hppID(s), "pay") // the shopper never comes back either
	time.Sleep(50 * time.Millisecond)
	if got := e.session(id); got["status"] != "pending" {
		t.Fatalf("status %v before the poller ran", got["status"])
	}
	e.clock.Advance(2*time.Minute + time.Second) // one HPPD_STALE_AFTER
	e.m.Poller.RunOnce(context.Background())
	got := e.waitStatus(id, "order_placed")
	if n := len(e.ordersFor(s)); n != 1 || got["order_id"] == "" {
		t.Fatalf("%d orders, order id %v", n, got["order_id"])
	}
}

func TestEverythingAtOnceStillOneOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"callbacks": {"duplicate_rate": 1, "max_duplicates": 3}}`)
	for round := 0; round < 5; round++ {
		s := e.createSession("")
		id := s["id"].(string)
		to := e.act(hppID(s), "pay") // callback delivered 4 times
		e.clock.Advance(3 * time.Minute)
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			wg.Add(2)
			go func() { defer wg.Done(); e.follow(to) }() // double-clicking shopper
			go func() { defer wg.Done(); e.m.Poller.RunOnce(context.Background()) }()
		}
		wg.Wait()
		e.waitStatus(id, "order_placed")
		if n := len(e.ordersFor(s)); n != 1 {
			t.Fatalf("round %d: %d orders", round, n)
		}
	}
	if err := e.sim.WaitCallbacks(context.Background()); err != nil {
		t.Fatal(err)
	}
	// One place_order call per session: the job is exactly-once.
	if n := e.countRequests("place_order"); n != 5 {
		t.Fatalf("place_order calls %d, want 5", n)
	}
}

func TestForgedCallbacksChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	a := e.createSession("")
	b := e.createSession("")
	id := a["id"].(string)
	body := func(hpp, status string) []byte {
		return []byte(`{"event_id":"ev-` + status + `","session":{"session_id":"` + hpp + `","status":"` + status + `"}}`)
	}
	before := e.session(id)["_raw"]
	cases := []struct {
		name, path string
		body       []byte
		want       int
	}{
		// A wrong secret gets the answer of an unknown session (404, the
		// same body), so the URL does not say which sessions exist.
		{"no secret", "/klarna/hpp/" + id + "/status?hppId=" + hppID(a), body(hppID(a), "COMPLETED"), 404},
		{"wrong secret", "/klarna/hpp/" + id + "/status?secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&hppId=" + hppID(a), body(hppID(a), "COMPLETED"), 404},
		{"unknown id", "/klarna/hpp/ses_unknown/status?secret=x&hppId=" + hppID(a), body(hppID(a), "COMPLETED"), 404},
		{"other session's hpp id in body", "", body(hppID(b), "COMPLETED"), 404},
		{"other session's hpp id in URL", "other-url", body(hppID(a), "COMPLETED"), 404},
		// Not a stray of a: b's page, which a's secret must not disable.
		{"other session's hpp id in URL and body", "other-url", body(hppID(b), "IN_PROGRESS"), 404},
	}
	// The genuine URL of session a, as Klarna got it, is only known to the
	// simulator: take it from the HPP create request.
	secretA := secretOf(t, e, 0)
	secretB := secretOf(t, e, 1)
	cases = append(cases, struct {
		name, path string
		body       []byte
		want       int
	}{"other session's secret", "/klarna/hpp/" + id + "/status?secret=" + url.QueryEscape(secretB) + "&hppId=" + hppID(a), body(hppID(a), "COMPLETED"), 404})
	answers := map[string]any{}
	for _, c := range cases {
		path := c.path
		switch path {
		case "":
			path = "/klarna/hpp/" + id + "/status?secret=" + url.QueryEscape(secretA) + "&hppId=" + hppID(a)
		case "other-url":
			path = "/klarna/hpp/" + id + "/status?secret=" + url.QueryEscape(secretA) + "&hppId=" + hppID(b)
		}
		st, out := e.do("POST", path, c.body, map[string]string{"Authorization": ""})
		if st != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, st, out["_raw"], c.want)
		}
		answers[c.name] = out["_raw"]
	}
	for _, name := range []string{"no secret", "wrong secret", "other session's secret"} {
		if answers[name] != answers["unknown id"] {
			t.Errorf("%s answered %v, an unknown session %v: not the same answer", name, answers[name], answers["unknown id"])
		}
	}
	if after := e.session(id)["_raw"]; after != before {
		t.Fatalf("forged callbacks changed the session:\n%v\n%v", before, after)
	}
	if n := e.countRequests("read_hpp_session"); n != 0 {
		t.Fatalf("forged callbacks caused %d Klarna reads", n)
	}
	if n := e.countRequests("disable_hpp_session"); n != 0 {
		t.Fatalf("forged callbacks disabled %d HPP sessions", n)
	}
}

// secretOf digs the callback secret out of the status_update URL hppd gave
// Klarna in its n-th HPP create request (as the simulator recorded it).
func secretOf(t *testing.T, e *env, n int) string {
	t.Helper()
	i := 0
	for _, r := range e.sim.Requests() {
		if r.Operation != "create_hpp_session" || r.Status != 201 {
			continue
		}
		if i++; i != n+1 {
			continue
		}
		var body struct {
			MerchantURLs struct {
				StatusUpdate string `json:"status_update"`
			} `json:"merchant_urls"`
		}
		if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(body.MerchantURLs.StatusUpdate)
		if err != nil {
			t.Fatal(err)
		}
		return u.Query().Get("secret")
	}
	t.Fatalf("no HPP create request number %d", n)
	return ""
}

func TestRestartInTheMiddleLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("")
	id := s["id"].(string)
	e.act(hppID(s), "open")
	e.eventually("IN_PROGRESS", func() bool { return e.session(id)["klarna_status"] == "IN_PROGRESS" })
	e.restart()
	if got := e.session(id); got["status"] != "pending" || got["klarna_status"] != "IN_PROGRESS" {
		t.Fatalf("after restart: %v", got["_raw"])
	}
	// Pay while hppd is down: the callback is lost; the poller after the
	// restart finds the payment.
	if err := e.m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.act(hppID(s), "pay")
	_ = e.sim.WaitCallbacks(context.Background())
	e.start() // same address (restart set it)
	e.clock.Advance(3 * time.Minute)
	e.m.Poller.RunOnce(context.Background())
	e.waitStatus(id, "order_placed")
	if n := len(e.ordersFor(s)); n != 1 {
		t.Fatalf("%d orders", n)
	}
}

func TestHPPStepFailingLeavesATrackedFailedSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"create_hpp_session": [{"error_rate": 1, "status": 500}]}`)
	st, out := e.do("POST", "/v1/sessions", sessionBody(10000, ""), nil)
	if st != http.StatusBadGateway && st != http.StatusServiceUnavailable {
		t.Fatalf("create with HPP failing: %d %v", st, out["_raw"])
	}
	msg := out["error"].(map[string]any)["message"].(string)
	i := strings.Index(msg, "ses_")
	if i < 0 || !strings.Contains(msg, "create HPP session") {
		t.Fatalf("error does not name the step and the session: %q", msg)
	}
	id := strings.Fields(msg[i:])[0]
	got := e.session(id)
	if got["status"] != "failed" || got["klarna"].(map[string]any)["kp_session_id"] == "" {
		t.Fatalf("recorded session: %v", got["_raw"])
	}
	if n := e.countRequests("create_kp_session"); n != 1 {
		t.Fatalf("%d KP sessions", n)
	}
}

func TestInterruptedCreationIsGivenUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("")
	id := s["id"].(string)
	// Make the store look like hppd died between the KP session and the HPP
	// session: the record has no HPP id.
	if err := e.m.DB.Update(func(tx store.Tx) error {
		cur, err := tx.Session(id)
		if err != nil {
			return err
		}
		cur.HPPSessionID, cur.RedirectURL = "", ""
		return tx.PutSession(cur)
	}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	e.clock.Advance(3 * time.Minute)
	e.m.Poller.RunOnce(context.Background())
	got := e.waitStatus(id, "failed")
	if !strings.Contains(got["_raw"].(string), "creation interrupted") {
		t.Fatalf("session %v", got["_raw"])
	}
}

func TestLogLinesOfARequestCarryItsRequestID(t *testing.T) {
	t.Parallel()
	var buf testutil.Buffer
	e := newEnvLogging(t, nil, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	st, out := e.do("POST", "/v1/sessions", sessionBody(10000, ""), map[string]string{"X-Request-Id": "req-abc-123"})
	if st != http.StatusCreated {
		t.Fatalf("%d %v", st, out["_raw"])
	}
	var created bool
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, `"msg":"session created"`) {
			created = true
			if !strings.Contains(line, `"request_id":"req-abc-123"`) || !strings.Contains(line, `"session_id":"`+out["id"].(string)+`"`) {
				t.Fatalf("log line lacks the request or session id: %s", line)
			}
		}
	}
	if !created {
		t.Fatalf("no 'session created' line in:\n%s", buf.String())
	}
}

// Klarna may add statuses (FACTS 8.8) and retry a callback without its body
// (8.9). Neither may be refused: with every callback carrying an unknown
// status, plus empty retries, hppd acknowledges each one and learns the real
// status from a re-read, so the order is placed without the poller or the
// shopper's redirect.
func TestUnusableCallbacksAreAnsweredWithARead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"callbacks": {"unknown_status_rate": 1, "empty_body_rate": 1}}`)
	s := e.createSession("")
	id := s["id"].(string)
	e.act(hppID(s), "pay")
	got := e.waitStatus(id, "order_placed")
	if n := len(e.ordersFor(s)); n != 1 || got["order_id"] == "" {
		t.Fatalf("%d orders, order id %v", n, got["order_id"])
	}
	if err := e.sim.WaitCallbacks(context.Background()); err != nil {
		t.Fatal(err)
	}
	var unknown, empty int
	for _, c := range e.sim.Callbacks() {
		if c.SessionID != hppID(s) || c.Dropped {
			continue
		}
		if c.HTTPStatus != http.StatusOK {
			t.Errorf("callback %s (%s, duplicate %v) answered %d %s", c.EventID, c.Status, c.Duplicate, c.HTTPStatus, c.Error)
		}
		if c.Status == "PENDING_CONFIRMATION" {
			if c.Duplicate {
				empty++
			} else {
				unknown++
			}
		}
	}
	if unknown == 0 || empty == 0 {
		t.Fatalf("the simulator sent %d unknown-status and %d empty callbacks", unknown, empty)
	}
	if n := e.countRequests("read_hpp_session"); n == 0 {
		t.Fatal("no re-read of the session")
	}
	var notes int
	for _, h := range got["history"].([]any) {
		if r, _ := h.(map[string]any)["reason"].(string); strings.Contains(r, "re-reading the session") {
			notes++
		}
	}
	if notes == 0 {
		t.Fatalf("the unusable callbacks left no history entry: %v", got["history"])
	}
}

// "The same request" under one Idempotency-Key means the same JSON value: a
// retry re-serialised by another process (indented, keys in another order,
// characters escaped) replays the first answer; another value is refused.
func TestIdempotencyComparesJSONValuesNotBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	body := sessionBody(10000, "")
	first, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{"Idempotency-Key": "cart-reserialised"}
	st, a := e.do("POST", "/v1/sessions", first, h)
	if st != http.StatusCreated {
		t.Fatalf("create: %d %v", st, a["_raw"])
	}
	// The same value, written differently: reversed key order, indentation,
	// a \u-escaped character.
	var generic map[string]any
	if err := json.Unmarshal(first, &generic); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(generic))
	slices.Reverse(keys)
	var b strings.Builder
	b.WriteString("{\n")
	for i, k := range keys {
		v, _ := json.MarshalIndent(generic[k], "  ", "    ")
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, "  %q : %s", k, v)
	}
	b.WriteString("\n}\n")
	second := strings.Replace(b.String(), `"SE"`, `"\u0053E"`, 1)
	if second == string(first) || !strings.Contains(second, `\u0053E`) {
		t.Fatal("the re-serialised body is not different bytes")
	}
	st, again := e.do("POST", "/v1/sessions", []byte(second), h)
	if st != http.StatusCreated || again["id"] != a["id"] {
		t.Fatalf("re-serialised retry: %d %v, want the first answer (%v)", st, again["_raw"], a["id"])
	}
	if n := e.countRequests("create_kp_session"); n != 1 {
		t.Fatalf("%d KP sessions created, want 1", n)
	}
	body["merchant_reference1"] = "another cart"
	if st, out := e.do("POST", "/v1/sessions", body, h); st != http.StatusConflict {
		t.Fatalf("another value under the same key: %d %v, want 409", st, out["_raw"])
	}
}
