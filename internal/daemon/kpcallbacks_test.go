package daemon_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/events"
	"github.com/hppd/hppd/internal/klarnaspec"
	"github.com/hppd/hppd/internal/testutil"
	"github.com/hppd/hppd/klarna/klarnasim"
)

// sdkSession creates an integration sdk session; it returns the session,
// its id and its KP session id.
func (e *env) sdkSession() (map[string]any, string, string) {
	e.t.Helper()
	b := purchase(10000)
	b["integration"] = "sdk"
	st, s := e.do("POST", "/v1/sessions", b, nil)
	if st != http.StatusCreated {
		e.t.Fatalf("sdk session: %d %v", st, s["_raw"])
	}
	return s, s["id"].(string), s["klarna"].(map[string]any)["kp_session_id"].(string)
}

// sentBody returns the body hppd sent in its n-th request of op to Klarna,
// after checking it against Klarna's OpenAPI documents.
func (e *env) sentBody(op string, n int) map[string]any {
	e.t.Helper()
	spec := klarnaspec.MustLoad(e.t)
	i := 0
	for _, r := range e.sim.Requests() {
		if r.Operation != op {
			continue
		}
		if i++; i < n {
			continue
		}
		hdr := http.Header{"Content-Type": {r.ContentType}}
		if r.IdempotencyKey != "" {
			hdr.Set("Klarna-Idempotency-Key", r.IdempotencyKey)
		}
		if err := spec.ValidateRequest(r.Method, r.Path, hdr, []byte(r.Body)); err != nil {
			e.t.Fatalf("%s does not match Klarna's OpenAPI documents: %v", op, err)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(r.Body), &out); err != nil {
			e.t.Fatalf("%s body %q: %v", op, r.Body, err)
		}
		return out
	}
	e.t.Fatalf("no request %d of %s", n, op)
	return nil
}

// merchantURL is merchant_urls.<name> of a body hppd sent Klarna.
func merchantURL(t *testing.T, body map[string]any, name string) string {
	t.Helper()
	mu, _ := body["merchant_urls"].(map[string]any)
	u, _ := mu[name].(string)
	if u == "" {
		t.Fatalf("no merchant_urls.%s in %v", name, body)
	}
	return u
}

// post sends a Klarna-style unsigned callback (no storefront credentials).
func (e *env) post(u string, body string) (int, string) {
	e.t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func withSecret(t *testing.T, u, secret string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	q.Set("secret", secret)
	p.RawQuery = q.Encode()
	return p.String()
}

// hasChange reports whether a session's history moved it to status from source.
func hasChange(s map[string]any, to, source string) bool {
	for _, h := range s["history"].([]any) {
		c := h.(map[string]any)
		if c["to"] == to && c["source"] == source && c["from"] != to {
			return true
		}
	}
	return false
}

func (e *env) callbacksOf(kind string) []klarnasim.CallbackRecord {
	var out []klarnasim.CallbackRecord
	for _, c := range e.sim.Callbacks() {
		if c.Kind == kind {
			out = append(out, c)
		}
	}
	return out
}

func TestSDKPurchaseWithoutTheBrowserPlacesOneOrderFromTheAuthorizationCallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s, id, kp := e.sdkSession()
	authURL := merchantURL(t, e.sentBody("create_kp_session", 1), "authorization")
	if !strings.HasPrefix(authURL, e.base+"/klarna/kp/"+id+"/authorization?secret=") {
		t.Fatalf("merchant_urls.authorization %q", authURL)
	}
	// The shopper authorizes in Klarna's widget and closes the tab: the
	// storefront never posts the token. Klarna's callback brings it.
	tok, err := e.sim.Authorize(kp, true)
	if err != nil {
		t.Fatal(err)
	}
	got := e.waitStatus(id, "order_placed")
	orders := e.ordersFor(s)
	if len(orders) != 1 || got["order_id"] != orders[0].OrderID || orders[0].AuthorizationToken != tok {
		t.Fatalf("orders %+v, session order %v", orders, got["order_id"])
	}
	cbs := e.callbacksOf(klarnasim.CallbackAuthorization)
	if len(cbs) == 0 || cbs[0].HTTPStatus != http.StatusOK {
		t.Fatalf("authorization callbacks %+v", cbs)
	}
	if !hasChange(got, "authorized", "callback") {
		t.Fatalf("history does not show the callback authorizing: %v", got["history"])
	}
	// Every order carries a notification URL with its own secret.
	notify := merchantURL(t, e.sentBody("place_order", 1), "notification")
	if !strings.HasPrefix(notify, e.base+"/klarna/kp/"+id+"/notification?secret=") || strings.Contains(notify, strings.TrimPrefix(authURL, e.base+"/klarna/kp/"+id+"/authorization?secret=")) {
		t.Fatalf("merchant_urls.notification %q", notify)
	}
	// The storefront reporting late, and Klarna repeating itself, change nothing.
	if st, out := e.do("POST", "/v1/sessions/"+id+"/authorization", map[string]any{"authorization_token": tok}, nil); st != http.StatusOK {
		t.Fatalf("late storefront authorization: %d %v", st, out["_raw"])
	}
	if st, body := e.post(authURL, fmt.Sprintf(`{"authorization_token":%q,"session_id":%q}`, tok, kp)); st != http.StatusOK || !strings.Contains(body, `"duplicate":true`) {
		t.Fatalf("repeated callback: %d %s", st, body)
	}
	if n := e.countRequests("place_order"); n != 1 || len(e.ordersFor(s)) != 1 {
		t.Fatalf("%d place_order calls, %d orders", n, len(e.ordersFor(s)))
	}
}

func TestSDKAuthorizationCallbackLostThePollerPlacesFromTheKPRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"callbacks": {"drop_rate": 1, "kinds": ["authorization"]}}`)
	s, id, kp := e.sdkSession()
	tok, err := e.sim.Authorize(kp, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.sim.WaitCallbacks(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cbs := e.callbacksOf(klarnasim.CallbackAuthorization); len(cbs) != 1 || !cbs[0].Dropped {
		t.Fatalf("authorization callbacks %+v, want one dropped", cbs)
	}
	if got := e.session(id); got["status"] != "pending" {
		t.Fatalf("status %v before the poller ran", got["status"])
	}
	e.clock.Advance(2*time.Minute + time.Second) // one HPPD_STALE_AFTER
	e.m.Poller.RunOnce(context.Background())
	got := e.waitStatus(id, "order_placed")
	orders := e.ordersFor(s)
	if len(orders) != 1 || got["order_id"] != orders[0].OrderID || orders[0].AuthorizationToken != tok {
		t.Fatalf("orders %+v, session order %v", orders, got["order_id"])
	}
	if !hasChange(got, "authorized", "poller") {
		t.Fatalf("history does not show the poller authorizing: %v", got["history"])
	}
	// Later polls and a late callback find nothing more to do.
	e.clock.Advance(3 * time.Minute)
	e.m.Poller.RunOnce(context.Background())
	if n := e.countRequests("place_order"); n != 1 {
		t.Fatalf("%d place_order calls", n)
	}
}

func TestAuthorizationCallbackWithAWrongSecretChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"callbacks": {"drop_rate": 1, "kinds": ["authorization"]}}`)
	s, id, kp := e.sdkSession()
	authURL := merchantURL(t, e.sentBody("create_kp_session", 1), "authorization")
	secret, _ := url.Parse(authURL)
	realSecret := secret.Query().Get("secret")
	tok, err := e.sim.Authorize(kp, true)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"authorization_token":%q,"session_id":%q}`, tok, kp)
	before := e.session(id)
	cases := []struct {
		name, url, body string
		status          int
		field           string
	}{
		{"wrong secret", withSecret(t, authURL, "not-the-secret"), body, http.StatusNotFound, ""},
		{"no secret", e.base + "/klarna/kp/" + id + "/authorization", body, http.StatusNotFound, ""},
		{"another session's id", withSecret(t, strings.Replace(authURL, id, "ses_other", 1), realSecret), body, http.StatusNotFound, ""},
		{"wrong KP session id", authURL, fmt.Sprintf(`{"authorization_token":%q,"session_id":"kp-other"}`, tok), http.StatusNotFound, "session_id"},
		{"no token", authURL, fmt.Sprintf(`{"session_id":%q}`, kp), http.StatusBadRequest, "authorization_token"},
		{"token not a string", authURL, fmt.Sprintf(`{"authorization_token":7,"session_id":%q}`, kp), http.StatusBadRequest, "authorization_token"},
		{"no session id", authURL, fmt.Sprintf(`{"authorization_token":%q}`, tok), http.StatusBadRequest, "session_id"},
		{"not JSON", authURL, `authorization_token=x`, http.StatusBadRequest, "body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, out := e.post(tc.url, tc.body)
			if st != tc.status || (tc.field != "" && !strings.Contains(out, `"field":"`+tc.field+`"`)) {
				t.Fatalf("%d %s, want %d naming %q", st, out, tc.status, tc.field)
			}
			if strings.Contains(out, realSecret) {
				t.Fatalf("answer discloses the secret: %s", out)
			}
		})
	}
	after := e.session(id)
	if after["status"] != "pending" || len(after["history"].([]any)) != len(before["history"].([]any)) {
		t.Fatalf("session changed: %v", after["_raw"])
	}
	if n := e.countRequests("place_order"); n != 0 || len(e.ordersFor(s)) != 0 {
		t.Fatalf("%d place_order calls after refused callbacks", n)
	}
	// The URL hppd gave Klarna does work.
	if st, out := e.post(authURL, body); st != http.StatusOK {
		t.Fatalf("genuine callback: %d %s", st, out)
	}
	e.waitStatus(id, "order_placed")
	if n := len(e.ordersFor(s)); n != 1 {
		t.Fatalf("%d orders", n)
	}
}

// eventSink is a storefront's event endpoint.
type eventSink struct {
	t      testing.TB // every event is checked against the document's webhooks
	mu     sync.Mutex
	events []struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
}

func (k *eventSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	raw, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(raw, &ev); err == nil {
		var full events.Event
		if k.t != nil && json.Unmarshal(raw, &full) == nil {
			checkWebhooks(k.t, []events.Event{full})
		}
		k.mu.Lock()
		k.events = append(k.events, ev)
		k.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

// of returns the data of the events of one type about resource id.
func (k *eventSink) of(typ, id string) []map[string]any {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []map[string]any
	for _, ev := range k.events {
		if ev.Type == typ && ev.Data["id"] == id {
			out = append(out, ev.Data)
		}
	}
	return out
}

// newEventEnv is newEnv with shop-a's events going to a sink.
func newEventEnv(t *testing.T) (*env, *eventSink) {
	t.Helper()
	sink := &eventSink{t: t}
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), "events.json")
	secret := "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	cfg := fmt.Sprintf(`{"storefronts":{"shop-a":{"url":%q,"secret":%q}}}`, srv.URL+"/hooks", secret)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ec, err := events.LoadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	em := events.New(ec, events.Options{})
	return newEnvWith(t, envOptions{emitter: em}), sink
}

// pendingOrder pays a hosted-page session whose KP session Klarna holds for
// fraud review; it returns the session (order_placed, PENDING) and its order.
func (e *env) pendingOrder() (map[string]any, klarnasim.OrderRecord) {
	e.t.Helper()
	s := e.createSession("")
	kp := s["klarna"].(map[string]any)["kp_session_id"].(string)
	if err := e.sim.HoldForFraudReview(kp); err != nil {
		e.t.Fatal(err)
	}
	e.act(hppID(s), "pay")
	got := e.waitStatus(s["id"].(string), "order_placed")
	if got["fraud_status"] != "PENDING" {
		e.t.Fatalf("fraud_status %v, want PENDING", got["fraud_status"])
	}
	orders := e.ordersFor(s)
	if len(orders) != 1 || orders[0].FraudStatus != "PENDING" || got["order_id"] != orders[0].OrderID {
		e.t.Fatalf("orders %+v", orders)
	}
	return got, orders[0]
}

func TestFraudReviewOutcomeReachesTheSessionAndTheStorefront(t *testing.T) {
	t.Parallel()
	for _, decision := range []string{"ACCEPTED", "REJECTED"} {
		t.Run(decision, func(t *testing.T) {
			e, sink := newEventEnv(t)
			s, order := e.pendingOrder()
			id := s["id"].(string)
			e.eventually("the order_placed event", func() bool { return len(sink.of("session.order_placed", id)) == 1 })
			if ev := sink.of("session.order_placed", id)[0]; ev["fraud_status"] != "PENDING" {
				t.Fatalf("order_placed event fraud_status %v", ev["fraud_status"])
			}
			if err := e.sim.DecideFraud(order.OrderID, decision); err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			e.eventually("fraud status "+decision, func() bool {
				got = e.session(id)
				return got["fraud_status"] == decision
			})
			if got["status"] != "order_placed" || got["order_id"] != order.OrderID {
				t.Fatalf("session %v", got["_raw"])
			}
			hist := got["history"].([]any)
			last := hist[len(hist)-1].(map[string]any)
			if last["fraud_status"] != decision || last["source"] != "callback" {
				t.Fatalf("last history entry %v", last)
			}
			e.eventually("the fraud event", func() bool { return len(sink.of("session.fraud_status_changed", id)) == 1 })
			if ev := sink.of("session.fraud_status_changed", id)[0]; ev["fraud_status"] != decision {
				t.Fatalf("fraud event %v", ev)
			}
			cbs := e.callbacksOf(klarnasim.CallbackNotification)
			if len(cbs) != 1 || cbs[0].HTTPStatus != http.StatusOK {
				t.Fatalf("notifications %+v", cbs)
			}
			if n := e.countRequests("read_order"); n != 1 {
				t.Fatalf("%d order management reads, want 1 (the verification)", n)
			}
			// A repeat of the notification changes nothing more.
			notify := merchantURL(t, e.sentBody("place_order", 1), "notification")
			if st, body := e.post(notify, fmt.Sprintf(`{"order_id":%q,"event_type":"FRAUD_RISK_%s"}`, order.OrderID, decision)); st != http.StatusOK || !strings.Contains(body, `"changed":false`) {
				t.Fatalf("repeat: %d %s", st, body)
			}
			if n := len(e.session(id)["history"].([]any)); n != len(hist) {
				t.Fatalf("history grew to %d on a repeat", n)
			}
		})
	}
}

func TestForgedFraudNotificationChangesNothing(t *testing.T) {
	t.Parallel()
	e, sink := newEventEnv(t)
	s, order := e.pendingOrder()
	id := s["id"].(string)
	notify := merchantURL(t, e.sentBody("place_order", 1), "notification")
	secret, _ := url.Parse(notify)
	realSecret := secret.Query().Get("secret")
	cases := []struct {
		name, url, body string
		status          int
		field           string
		reads           int // order management reads it makes
	}{
		{"wrong secret", withSecret(t, notify, "guess"), fmt.Sprintf(`{"order_id":%q,"event_type":"FRAUD_RISK_ACCEPTED"}`, order.OrderID), http.StatusNotFound, "", 0},
		{"unknown order", notify, `{"order_id":"ord-forged","event_type":"FRAUD_RISK_ACCEPTED"}`, http.StatusNotFound, "order_id", 0},
		{"no event type", notify, fmt.Sprintf(`{"order_id":%q}`, order.OrderID), http.StatusBadRequest, "event_type", 0},
		{"order management says still pending", notify, fmt.Sprintf(`{"order_id":%q,"event_type":"FRAUD_RISK_ACCEPTED"}`, order.OrderID), http.StatusConflict, "event_type", 1},
		{"rejected, but still pending", notify, fmt.Sprintf(`{"order_id":%q,"event_type":"FRAUD_RISK_REJECTED"}`, order.OrderID), http.StatusConflict, "event_type", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.countRequests("read_order")
			st, out := e.post(tc.url, tc.body)
			if st != tc.status || (tc.field != "" && !strings.Contains(out, `"field":"`+tc.field+`"`)) {
				t.Fatalf("%d %s, want %d naming %q", st, out, tc.status, tc.field)
			}
			if strings.Contains(out, realSecret) {
				t.Fatalf("answer discloses the secret: %s", out)
			}
			if n := e.countRequests("read_order") - before; n != tc.reads {
				t.Fatalf("%d order management reads, want %d", n, tc.reads)
			}
		})
	}
	got := e.session(id)
	if got["fraud_status"] != "PENDING" || len(got["history"].([]any)) != len(s["history"].([]any)) {
		t.Fatalf("session changed: %v", got["_raw"])
	}
	e.eventually("the order_placed event", func() bool { return len(sink.of("session.order_placed", id)) == 1 })
	if n := len(sink.of("session.fraud_status_changed", id)); n != 0 {
		t.Fatalf("%d fraud events after forged notifications", n)
	}
}

func TestLostFraudNotificationThePollerReadsOrderManagement(t *testing.T) {
	t.Parallel()
	e, sink := newEventEnv(t)
	e.setFaults(`{"callbacks": {"drop_rate": 1, "kinds": ["notification"]}}`)
	s, order := e.pendingOrder()
	id := s["id"].(string)
	// While Klarna has not decided, the poller's reads change nothing.
	e.clock.Advance(16 * time.Minute)
	e.m.Poller.RunOnce(context.Background())
	e.eventually("an order management read", func() bool { return e.countRequests("read_order") == 1 })
	// The read's job completes (and sets the next check) before the clock
	// moves again, or the next check would count from the moved clock.
	e.eventually("the read's job to be done", e.noJobDue)
	if err := e.sim.DecideFraud(order.OrderID, "ACCEPTED"); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.WaitCallbacks(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.session(id); got["fraud_status"] != "PENDING" {
		t.Fatalf("fraud_status %v before the poller ran again", got["fraud_status"])
	}
	e.clock.Advance(16 * time.Minute)
	e.m.Poller.RunOnce(context.Background())
	e.eventually("fraud status ACCEPTED", func() bool { return e.session(id)["fraud_status"] == "ACCEPTED" })
	hist := e.session(id)["history"].([]any)
	if last := hist[len(hist)-1].(map[string]any); last["fraud_status"] != "ACCEPTED" || last["source"] != "poller" {
		t.Fatalf("last history entry %v", last)
	}
	e.eventually("the fraud event", func() bool { return len(sink.of("session.fraud_status_changed", id)) == 1 })
	// Decided: the poller stops reading it.
	n := e.countRequests("read_order")
	e.clock.Advance(time.Hour)
	e.m.Poller.RunOnce(context.Background())
	// A read the poller scheduled has happened once no job is due or running.
	e.eventually("no job due an hour later", e.noJobDue)
	if m := e.countRequests("read_order"); m != n {
		t.Fatalf("%d more order management reads after the decision", m-n)
	}
}

func TestTokenOrderUnderFraudReviewGetsKlarnasDecision(t *testing.T) {
	t.Parallel()
	e, sink := newEventEnv(t)
	tok := e.sim.CreateToken("ok", 0)
	if err := e.sim.HoldForFraudReview(tok); err != nil {
		t.Fatal(err)
	}
	c := e.charge(tok, false)
	id := c["id"].(string)
	if c["status"] != "charged" || c["fraud_status"] != "PENDING" {
		t.Fatalf("charge %v", c["_raw"])
	}
	// The token order's merchant_urls has no notification URL
	// (customer-token-v1.yml): hppd sends none and reads Order Management.
	if body := e.sentBody("create_token_order", 1); body["merchant_urls"] != nil {
		t.Fatalf("token order sent merchant_urls %v", body["merchant_urls"])
	}
	orderID := c["order_id"].(string)
	e.clock.Advance(16 * time.Minute)
	e.eventually("an order management read", func() bool { return e.countRequests("read_order") == 1 })
	// The simulator counts the read when it arrives, before it answers and
	// before hppd records the answer. The next read is due 15 minutes after
	// hppd records a PENDING answer, on its clock then (FraudRecheck): Klarna
	// decides, and the clock moves, only once the read's job is done, or
	// this read could already bring the decision, or the next one be due
	// 15 minutes after the moved clock.
	e.eventually("the read's job to be done", e.noJobDue)
	if st, got := e.do("GET", "/v1/charges/"+id, nil, nil); st != http.StatusOK || got["fraud_status"] != "PENDING" {
		t.Fatalf("charge while undecided: %d %v", st, got["_raw"])
	}
	if err := e.sim.DecideFraud(orderID, "REJECTED"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(16 * time.Minute)
	var got map[string]any
	e.eventually("fraud status REJECTED", func() bool {
		_, got = e.do("GET", "/v1/charges/"+id, nil, nil)
		return got["fraud_status"] == "REJECTED"
	})
	hist := got["history"].([]any)
	if last := hist[len(hist)-1].(map[string]any); last["fraud_status"] != "REJECTED" || got["status"] != "charged" {
		t.Fatalf("charge %v", got["_raw"])
	}
	e.eventually("the fraud event", func() bool { return len(sink.of("charge.fraud_status_changed", id)) == 1 })
	n := e.countRequests("read_order")
	e.clock.Advance(time.Hour)
	// A read the hour made due has happened once no job is due or running.
	e.eventually("no job due an hour later", e.noJobDue)
	if m := e.countRequests("read_order"); m != n {
		t.Fatalf("%d more order management reads after the decision", m-n)
	}
}

// A present customer's SDK fallback: the authorization callback places the
// order, Klarna reviews it, and the outcome reaches the session and the
// charge.
func TestSDKFallbackUnderFraudReviewReachesTheCharge(t *testing.T) {
	t.Parallel()
	e, sink := newEventEnv(t)
	tok := e.sim.CreateToken("unavailable", 0)
	b := chargeBody(tok, true)
	b["integration"] = "sdk"
	st, c := e.do("POST", "/v1/charges", b, map[string]string{"Idempotency-Key": "sdk-fraud-1"})
	if st != http.StatusCreated || c["status"] != "fallback" {
		t.Fatalf("charge: %d %v", st, c["_raw"])
	}
	cid := c["id"].(string)
	sid := c["session"].(map[string]any)["id"].(string)
	kp := e.session(sid)["klarna"].(map[string]any)["kp_session_id"].(string)
	if err := e.sim.HoldForFraudReview(kp); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.Authorize(kp, true); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	e.eventually("charge recovered", func() bool {
		_, got = e.do("GET", "/v1/charges/"+cid, nil, nil)
		return got["status"] == "recovered"
	})
	if got["fraud_status"] != "PENDING" {
		t.Fatalf("recovered charge %v", got["_raw"])
	}
	orderID := got["order_id"].(string)
	if err := e.sim.DecideFraud(orderID, "ACCEPTED"); err != nil {
		t.Fatal(err)
	}
	e.eventually("charge fraud status ACCEPTED", func() bool {
		_, got = e.do("GET", "/v1/charges/"+cid, nil, nil)
		return got["fraud_status"] == "ACCEPTED"
	})
	if s := e.session(sid); s["fraud_status"] != "ACCEPTED" || got["status"] != "recovered" {
		t.Fatalf("session %v, charge %v", s["_raw"], got["_raw"])
	}
	e.eventually("the fraud events", func() bool {
		return len(sink.of("charge.fraud_status_changed", cid)) == 1 && len(sink.of("session.fraud_status_changed", sid)) == 1
	})
	if n := len(e.ordersFor(e.session(sid))); n != 1 {
		t.Fatalf("%d orders", n)
	}
}

// The secrets of the authorization callback and the notification, and the
// authorization token, appear in no log line and no answer; the authorization
// secret is stored only as its hash.
func TestKPCallbackSecretsStayOutOfLogs(t *testing.T) {
	t.Parallel()
	logs := &testutil.Buffer{}
	e := newEnvWith(t, envOptions{
		logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	_, id, kp := e.sdkSession()
	if err := e.sim.HoldForFraudReview(kp); err != nil {
		t.Fatal(err)
	}
	authURL := merchantURL(t, e.sentBody("create_kp_session", 1), "authorization")
	tok, err := e.sim.Authorize(kp, true)
	if err != nil {
		t.Fatal(err)
	}
	got := e.waitStatus(id, "order_placed")
	notify := merchantURL(t, e.sentBody("place_order", 1), "notification")
	var answers []string
	for _, u := range []string{withSecret(t, authURL, "wrong"), authURL} {
		_, body := e.post(u, fmt.Sprintf(`{"authorization_token":%q,"session_id":%q}`, tok, kp))
		answers = append(answers, body)
	}
	for _, u := range []string{withSecret(t, notify, "wrong"), notify} {
		_, body := e.post(u, fmt.Sprintf(`{"order_id":%q,"event_type":"FRAUD_RISK_ACCEPTED"}`, got["order_id"]))
		answers = append(answers, body)
	}
	if err := e.sim.DecideFraud(got["order_id"].(string), "ACCEPTED"); err != nil {
		t.Fatal(err)
	}
	e.eventually("fraud status ACCEPTED", func() bool { return e.session(id)["fraud_status"] == "ACCEPTED" })
	// The line is written just after the commit the API shows.
	e.eventually("the fraud log line", func() bool { return strings.Contains(logs.String(), "fraud status recorded") })
	secretOf := func(u string) string {
		p, _ := url.Parse(u)
		return p.Query().Get("secret")
	}
	secrets := map[string]string{
		"authorization callback secret": secretOf(authURL),
		"notification secret":           secretOf(notify),
		"authorization token":           tok,
	}
	all := logs.String() + strings.Join(answers, "\n") + e.session(id)["_raw"].(string)
	for what, v := range secrets {
		if v == "" {
			t.Fatalf("no %s", what)
		}
		if strings.Contains(all, v) || strings.Contains(all, url.QueryEscape(v)) {
			t.Errorf("the %s appears in a log line or an answer", what)
		}
	}
	if err := e.m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secretOf(authURL))) {
		t.Fatal("the data file holds the authorization callback secret")
	}
}

// Orders Klarna places itself (PLACE_ORDER) carry no fraud status in the HPP
// read: hppd reads it from Order Management, and follows a PENDING review
// there (HPP merchant_urls have no notification URL).
func TestKlarnaPlacedOrderGetsItsFraudStatusFromOrderManagement(t *testing.T) {
	t.Parallel()
	e, sink := newEventEnv(t)
	plain := e.createSession("PLACE_ORDER")
	held := e.createSession("PLACE_ORDER")
	if err := e.sim.HoldForFraudReview(held["klarna"].(map[string]any)["kp_session_id"].(string)); err != nil {
		t.Fatal(err)
	}
	for _, s := range []map[string]any{plain, held} {
		e.act(hppID(s), "pay")
	}
	e.eventually("fraud statuses", func() bool {
		return e.session(plain["id"].(string))["fraud_status"] == "ACCEPTED" && e.session(held["id"].(string))["fraud_status"] == "PENDING"
	})
	id := held["id"].(string)
	got := e.session(id)
	if got["status"] != "order_placed" || e.countRequests("place_order") != 0 {
		t.Fatalf("session %v", got["_raw"])
	}
	if err := e.sim.DecideFraud(got["order_id"].(string), "REJECTED"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(16 * time.Minute)
	e.m.Poller.RunOnce(context.Background())
	e.eventually("fraud status REJECTED", func() bool { return e.session(id)["fraud_status"] == "REJECTED" })
	e.eventually("the fraud events", func() bool {
		evs := sink.of("session.fraud_status_changed", id)
		return len(evs) == 2 && evs[0]["fraud_status"] == "PENDING" && evs[1]["fraud_status"] == "REJECTED"
	})
	if n := len(e.callbacksOf(klarnasim.CallbackNotification)); n != 0 {
		t.Fatalf("%d notifications for orders without a notification URL", n)
	}
}
