package daemon_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/events"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/store"
)

// Tests of Klarna as its guides and error pages show it (FACTS 8.1, 8.2),
// against the simulator in its harsher behaviour.

func (e *env) behave(b klarnasim.Behaviour) {
	e.t.Helper()
	if err := e.sim.SetBehaviour(b); err != nil {
		e.t.Fatal(err)
	}
}

// payAndAuthorize has the shopper pay a mode NONE session and waits until
// hppd has seen the authorization (the place_order job exists or ran).
func (e *env) pay(s map[string]any) {
	e.t.Helper()
	e.follow(e.act(hppID(s), "pay"))
	id := s["id"].(string)
	e.eventually("authorized", func() bool { return e.session(id)["status"] != "pending" })
}

// placeOrderJob returns the session's place_order job, nil once it is gone.
func (e *env) placeOrderJob(id string) *core.Job {
	e.t.Helper()
	var j *core.Job
	_ = e.m.DB.View(func(tx store.Tx) error {
		var err error
		j, err = tx.Job(core.PlaceOrderJobID(id))
		return err
	})
	return j
}

// waitJobFailed waits until the session's place_order job has failed n
// times (its answer was lost n times) and is waiting for its next attempt.
func (e *env) waitJobFailed(id string, n int) {
	e.t.Helper()
	e.eventually("place_order job failed", func() bool {
		j := e.placeOrderJob(id)
		return j != nil && j.Attempts >= n
	})
}

// waitJobFailedOrOver is waitJobFailed for a job that may also end by
// itself: the test clock is the wall clock plus what the test adds, so the
// job's backoff (about 1 s, then 2 s) passes on its own too, and its next
// attempts may have run, and ended it, before the test looks.
func (e *env) waitJobFailedOrOver(id string, n int) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("place_order attempt %d failed, or the job over", n), func() bool {
		j := e.placeOrderJob(id)
		return j == nil || j.Attempts >= n
	})
}

// runJobsLater moves the clock past the job backoff and runs due jobs.
func (e *env) runJobsLater() {
	e.t.Helper()
	e.clock.Advance(10 * time.Minute)
	e.m.Service.RunDue(context.Background())
}

// withEvents restarts hppd with a storefront event emitter for shop-a
// delivering to a recorder (cmd/hppd wires the emitter from
// HPPD_EVENTS_FILE; the daemon tests wire it here the same way). It returns
// the events seen so far.
func (e *env) withEvents() func() []events.Event {
	e.t.Helper()
	path, seen := eventFile(e.t)
	ec, err := events.LoadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.emitter = events.New(ec, events.Options{Now: e.clock.Now})
	e.restart()
	return seen
}

// shopAEventsFile writes an events file (HPPD_EVENTS_FILE) sending shop-a's
// events to url and returns its path.
func shopAEventsFile(t *testing.T, url string) string {
	t.Helper()
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	raw, _ := json.Marshal(map[string]any{"storefronts": map[string]any{"shop-a": map[string]string{"url": url, "secret": secret}}})
	path := filepath.Join(t.TempDir(), "events.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// eventFile receives storefront events; it returns the path of an events
// file for shop-a pointing at it and a function returning the events seen.
func eventFile(t *testing.T) (string, func() []events.Event) {
	t.Helper()
	var mu sync.Mutex
	var got []events.Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev events.Event
		if err := json.NewDecoder(r.Body).Decode(&ev); err == nil {
			checkWebhooks(t, []events.Event{ev}) // the document describes every event
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return shopAEventsFile(t, srv.URL+"/events"), func() []events.Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]events.Event(nil), got...)
	}
}

// event waits for the storefront event of type typ about resource id and
// returns its data.
func (e *env) event(seen func() []events.Event, typ, id string) map[string]any {
	e.t.Helper()
	var data map[string]any
	e.eventually(typ+" event for "+id, func() bool {
		e.m.Service.RunDue(context.Background())
		for _, ev := range seen() {
			var d map[string]any
			if ev.Type == typ && json.Unmarshal(ev.Data, &d) == nil && d["id"] == id {
				data = d
				return true
			}
		}
		return false
	})
	return data
}

func (e *env) clearFaults() {
	e.t.Helper()
	e.sim.SetFaults(klarnasim.Faults{})
}

// (a) Klarna's guides show authorized_payment_method as a string.
func TestOrderAnswerWithPaymentMethodAsString(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.behave(klarnasim.Behaviour{PaymentMethodString: true})
	s := e.createSession("")
	e.pay(s)
	got := e.waitStatus(s["id"].(string), "order_placed")
	orders := e.ordersFor(s)
	if len(orders) != 1 || got["order_id"] != orders[0].OrderID || got["order_id_unknown"] != nil {
		t.Fatalf("session %v, orders %+v", got["_raw"], orders)
	}
	tok := e.sim.CreateToken("ok", 0)
	if c := e.charge(tok, false); c["status"] != "charged" || c["order_id"] == nil {
		t.Fatalf("charge: %v", c["_raw"])
	}
}

// (b) A 2xx place-order answer that cannot be decoded: the order exists, so
// the session must not fail; the replay resolves it.
func TestUndecodableOrderAnswerIsResolvedLater(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{klarnasim.ReplayIdentical, klarnasim.ReplayConsumed} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, nil)
			e.behave(klarnasim.Behaviour{Replay: mode})
			// Only the first answer is garbled: the job's backoff (about
			// 1 s) passes in real time too, so the replay may come before
			// the test looks, and must then find Klarna answering again.
			e.setFaults(`{"place_order": [{"garble_rate": 1, "times": 1}]}`)
			s := e.createSession("")
			id := s["id"].(string)
			e.pay(s)
			e.waitJobFailedOrOver(id, 1)
			if got := e.session(id); got["status"] != "authorized" && got["status"] != "order_placed" {
				t.Fatalf("after an undecodable 2xx: %v", got["_raw"])
			}
			if n := e.m.Service.Stats.UnusablePlaceOrder.Load(); n != 1 {
				t.Fatalf("unusable answers counted: %d", n)
			}
			e.runJobsLater()
			got := e.waitStatus(id, "order_placed")
			orders := e.ordersFor(s)
			if len(orders) != 1 || got["order_id"] != orders[0].OrderID {
				t.Fatalf("session %v, orders %+v", got["_raw"], orders)
			}
		})
	}
}

// The same for a token order: the charge stays pending, the same attempt is
// resent with the same key and Klarna's replay gives the order.
func TestUndecodableTokenOrderAnswerIsResolvedLater(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"create_token_order": [{"garble_rate": 1}]}`)
	tok := e.sim.CreateToken("ok", 0)
	c := e.charge(tok, false)
	if c["status"] != "pending" {
		t.Fatalf("charge after an undecodable 2xx: %v", c["_raw"])
	}
	if n := e.m.Service.Stats.UnusableTokenOrder.Load(); n != 1 {
		t.Fatalf("unusable answers counted: %d", n)
	}
	e.clearFaults()
	e.clock.Advance(2 * time.Minute)
	e.m.Service.RunDue(context.Background())
	cid := c["id"].(string)
	var got map[string]any
	e.eventually("charged", func() bool { _, got = e.do("GET", "/v1/charges/"+cid, nil, nil); return got["status"] == "charged" })
	if n := e.chargesAtKlarna(tok); n != 1 || got["order_id"] == nil {
		t.Fatalf("%d token orders; charge %v", n, got["_raw"])
	}
	keys, _ := e.tokenOrders(tok)
	if len(keys) != 2 || keys[0] != keys[1] {
		t.Fatalf("token order keys %v: want the same attempt resent", keys)
	}
}

// Unusable 2xx answers that never stop: after three the order is taken to
// exist; the session never fails.
func TestUnusableOrderAnswersNeverFail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.behave(klarnasim.Behaviour{HPPOrderIDHidden: true})
	e.setFaults(`{"place_order": [{"garble_rate": 1}]}`)
	s := e.createSession("")
	id := s["id"].(string)
	e.pay(s)
	// On a busy machine the third answer may come, and the job end, before
	// the test looks.
	for i := 1; i < 3; i++ {
		e.waitJobFailedOrOver(id, i)
		e.runJobsLater()
	}
	got := e.waitStatus(id, "order_placed")
	if got["order_id"] != nil || got["order_id_unknown"] != true {
		t.Fatalf("session %v", got["_raw"])
	}
	if n := len(e.ordersFor(s)); n != 1 {
		t.Fatalf("%d orders", n)
	}
}

// (c) The first place-order answer is lost (the order is made, the answer is
// a 503), and Klarna refuses the replay as already done. The session ends
// order_placed: with the HPP read's order id, or with order_id_unknown.
func TestLostOrderAnswerReplayRefusedAsDone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		b      klarnasim.Behaviour
		known  bool
		faults string
	}{
		{"consumed, id from the HPP read", klarnasim.Behaviour{Replay: klarnasim.ReplayConsumed}, true,
			`{"place_order": [{"error_rate": 1, "status": 503, "after_effect": true}]}`},
		{"consumed, id unknown", klarnasim.Behaviour{Replay: klarnasim.ReplayConsumed, HPPOrderIDHidden: true}, false,
			`{"place_order": [{"error_rate": 1, "status": 503, "after_effect": true}]}`},
		{"session completed, id unknown", klarnasim.Behaviour{Replay: klarnasim.ReplaySessionCompleted, HPPOrderIDHidden: true}, false,
			`{"place_order": [{"error_rate": 1, "status": 500, "after_effect": true}]}`},
		{"timeout, id from the HPP read", klarnasim.Behaviour{Replay: klarnasim.ReplayConsumed}, true,
			`{"place_order": [{"timeout_rate": 1, "timeout": "2s", "after_effect": true}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, map[string]string{"HPPD_KLARNA_TIMEOUT": "300ms"})
			seen := e.withEvents()
			e.behave(tc.b)
			e.setFaults(tc.faults)
			s := e.createSession("")
			id := s["id"].(string)
			e.pay(s)
			e.waitJobFailed(id, 1)
			if j := e.placeOrderJob(id); j == nil || j.Sent < 1 {
				t.Fatalf("place_order job %+v: the sent attempt is not recorded", j)
			}
			if got := e.session(id); got["status"] != "authorized" {
				t.Fatalf("after a lost answer: %v", got["_raw"])
			}
			e.clearFaults()
			before := e.countRequests("place_order")
			e.runJobsLater()
			got := e.waitStatus(id, "order_placed")
			orders := e.ordersFor(s)
			if len(orders) != 1 {
				t.Fatalf("%d orders at klarna", len(orders))
			}
			if e.countRequests("place_order") <= before {
				t.Fatal("no replay was sent")
			}
			if tc.known {
				if got["order_id"] != orders[0].OrderID || got["order_id_unknown"] != nil {
					t.Fatalf("session %v, order %s", got["_raw"], orders[0].OrderID)
				}
			} else {
				if got["order_id"] != nil || got["order_id_unknown"] != true {
					t.Fatalf("session %v", got["_raw"])
				}
				if n := e.m.Service.Stats.OrdersIDUnknown.Load(); n != 1 {
					t.Fatalf("orders with unknown id counted: %d", n)
				}
			}
			// The storefront event says the same as the API.
			ev := e.event(seen, "session.order_placed", id)
			if ev["order_id"] != got["order_id"] || ev["order_id_unknown"] != got["order_id_unknown"] {
				t.Fatalf("event %v, session %v", ev, got["_raw"])
			}
			// The merchant can find the order by hppd's session id.
			var req struct {
				Ref1 string `json:"merchant_reference1"`
				Ref2 string `json:"merchant_reference2"`
			}
			if err := json.Unmarshal(orders[0].Request, &req); err != nil || req.Ref1 != "order-42" || req.Ref2 != id {
				t.Fatalf("order references %+v (%v), want order-42 and %s", req, err, id)
			}
		})
	}
}

// A refusal as already done on a first attempt (no earlier attempt sent):
// someone placed the order with this authorization, and a paid order is not
// reported failed.
func TestAlreadyOrderedOnFirstAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.behave(klarnasim.Behaviour{Replay: klarnasim.ReplayConsumed})
	s := e.createSession("")
	id := s["id"].(string)
	// Stop hppd, the shopper pays, and someone else places the order with the
	// authorization before hppd does.
	if err := e.m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.act(hppID(s), "pay")
	_ = e.sim.WaitCallbacks(context.Background())
	var st struct {
		AuthorizationToken string `json:"authorization_token"`
	}
	req, _ := http.NewRequest("GET", e.simURL+"/hpp/v1/sessions/"+hppID(s), nil)
	req.SetBasicAuth("sim", "sim")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	body, _ := json.Marshal(purchase(10000))
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	delete(m, "merchant_reference1")
	body, _ = json.Marshal(m)
	preq, _ := http.NewRequest("POST", e.simURL+"/payments/v1/authorizations/"+st.AuthorizationToken+"/order", bytesReader(body))
	preq.SetBasicAuth("sim", "sim")
	preq.Header.Set("Content-Type", "application/json")
	presp, err := http.DefaultClient.Do(preq)
	if err != nil || presp.StatusCode != 200 {
		t.Fatalf("the other placement: %v %v", presp, err)
	}
	presp.Body.Close()

	e.vars["HPPD_LISTEN"] = e.m.Addr()
	e.start()
	e.clock.Advance(3 * time.Minute)
	e.m.Poller.RunOnce(context.Background())
	got := e.waitStatus(id, "order_placed")
	orders := e.ordersFor(s)
	if len(orders) != 1 || got["order_id"] != orders[0].OrderID {
		t.Fatalf("session %v, orders %+v", got["_raw"], orders)
	}
}

// The same lost answer for a fallback charge: the charge ends recovered.
func TestLostFallbackOrderAnswerRecovers(t *testing.T) {
	t.Parallel()
	for _, hidden := range []bool{false, true} {
		t.Run(map[bool]string{false: "id from the HPP read", true: "id unknown"}[hidden], func(t *testing.T) {
			e := newEnv(t, nil)
			seen := e.withEvents()
			e.behave(klarnasim.Behaviour{Replay: klarnasim.ReplayConsumed, HPPOrderIDHidden: hidden})
			tok := e.sim.CreateToken("unavailable", 0)
			c := e.charge(tok, true)
			if c["status"] != "fallback" {
				t.Fatalf("charge: %v", c["_raw"])
			}
			sid := c["session"].(map[string]any)["id"].(string)
			e.setFaults(`{"place_order": [{"error_rate": 1, "status": 503, "after_effect": true}]}`)
			e.pay(e.session(sid))
			e.waitJobFailed(sid, 1)
			e.clearFaults()
			e.runJobsLater()
			cid := c["id"].(string)
			var got map[string]any
			e.eventually("recovered", func() bool { _, got = e.do("GET", "/v1/charges/"+cid, nil, nil); return got["status"] == "recovered" })
			sess := e.session(sid)
			if sess["status"] != "order_placed" || len(e.ordersFor(sess)) != 1 {
				t.Fatalf("session %v", sess["_raw"])
			}
			if hidden {
				if got["order_id"] != nil || got["order_id_unknown"] != true || sess["order_id_unknown"] != true {
					t.Fatalf("charge %v", got["_raw"])
				}
			} else if got["order_id"] == nil || got["order_id"] != sess["order_id"] || got["order_id_unknown"] != nil {
				t.Fatalf("charge %v, session %v", got["_raw"], sess["_raw"])
			}
			if ev := e.event(seen, "charge.recovered", cid); ev["order_id"] != got["order_id"] || ev["order_id_unknown"] != got["order_id_unknown"] {
				t.Fatalf("event %v, charge %v", ev, got["_raw"])
			}
		})
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
