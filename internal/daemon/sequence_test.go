package daemon_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/events"
)

var (
	webhooksOnce sync.Once
	webhooksDoc  *openapi3.T
	webhooksErr  error
)

// checkWebhooks validates every event seen against the document's webhook of
// its type, so the document's `webhooks` cannot drift from the payloads.
func checkWebhooks(t testing.TB, seen []events.Event) {
	t.Helper()
	webhooksOnce.Do(func() { webhooksDoc, webhooksErr = openapi3.NewLoader().LoadFromData(api.OpenAPIJSON) })
	if webhooksErr != nil {
		t.Errorf("openapi: %v", webhooksErr)
		return
	}
	doc := webhooksDoc
	for _, ev := range seen {
		item, ok := doc.Webhooks[ev.Type]
		if !ok || item.Post == nil {
			t.Errorf("event %s: no webhook in the document", ev.Type)
			continue
		}
		raw, _ := json.Marshal(ev)
		var v any
		_ = json.Unmarshal(raw, &v)
		s := item.Post.RequestBody.Value.Content.Get("application/json").Schema.Value
		if err := s.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("event %s does not match the document: %v", ev.Type, err)
		}
	}
}

// sequences are the data.sequence of the events about resource id, in the
// order they arrived.
func sequences(seen []events.Event, id string) (types []string, seqs []int64) {
	for _, ev := range seen {
		var d struct {
			ID       string `json:"id"`
			Sequence int64  `json:"sequence"`
		}
		if json.Unmarshal(ev.Data, &d) == nil && d.ID == id {
			types = append(types, ev.Type)
			seqs = append(seqs, d.Sequence)
		}
	}
	return types, seqs
}

// A charge and its fallback session each number their events 1, 2, …, and
// the numbers carry on after a restart.
func TestEventsCarryASequencePerResourceThatSurvivesRestarts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	seen := e.withEvents()
	tok := e.sim.CreateToken("unavailable", 0)
	c := e.charge(tok, true)
	cid := c["id"].(string)
	e.event(seen, "charge.fallback", cid)
	sid := c["session"].(map[string]any)["id"].(string)

	e.restart()
	e.follow(e.act(hppID(e.session(sid)), "pay"))
	e.event(seen, "session.authorized", sid)
	e.restart()
	e.event(seen, "session.order_placed", sid)
	e.event(seen, "charge.recovered", cid)

	all := seen()
	checkWebhooks(t, all)
	types, seqs := sequences(all, cid)
	if len(seqs) != 2 || seqs[0] != 1 || seqs[1] != 2 {
		t.Fatalf("charge events %v with sequences %v, want 1, 2", types, seqs)
	}
	types, seqs = sequences(all, sid)
	if len(seqs) != 2 || seqs[0] != 1 || seqs[1] != 2 {
		t.Fatalf("session events %v with sequences %v, want 1, 2", types, seqs)
	}
	if got := e.session(sid)["sequence"]; got != float64(2) {
		t.Fatalf("GET session sequence %v, want 2 (its last event)", got)
	}
	if _, got := e.do("GET", "/v1/charges/"+cid, nil, nil); got["sequence"] != float64(2) {
		t.Fatalf("GET charge sequence %v, want 2", got["sequence"])
	}
}

// A retrying charge says when it retries next; the field goes once it is not
// retrying any more.
func TestRetryingChargeSaysWhenItRetriesNext(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"HPPD_CHARGE_RETRY_SCHEDULE": "1h,6h"})
	tok := e.sim.CreateToken("failed", 1)
	start := e.clock.Now()
	c := e.charge(tok, false)
	if c["status"] != "retrying" || c["retries"] != float64(1) {
		t.Fatalf("charge: %v", c["_raw"])
	}
	at, err := time.Parse(time.RFC3339Nano, c["next_retry_at"].(string))
	if err != nil || at.Sub(start) < time.Hour || at.Sub(start) > time.Hour+time.Minute {
		t.Fatalf("next_retry_at %v (%v), want an hour after %v", c["next_retry_at"], err, start)
	}
	cid := c["id"].(string)
	e.clock.Advance(time.Hour + time.Second)
	e.m.Poller.RunOnce(context.Background())
	var got map[string]any
	e.eventually("charged", func() bool { _, got = e.do("GET", "/v1/charges/"+cid, nil, nil); return got["status"] == "charged" })
	if _, ok := got["next_retry_at"]; ok {
		t.Fatalf("a charged charge still says next_retry_at: %v", got["_raw"])
	}
}

// The fraud decision that follows an order is the next number of its
// session: the session's events are numbered 1..n with no gap or repeat, and
// the decision is n.
func TestFraudEventTakesTheNextSequenceNumber(t *testing.T) {
	t.Parallel()
	e, sink := newEventEnv(t)
	s, order := e.pendingOrder()
	id := s["id"].(string)
	if err := e.sim.DecideFraud(order.OrderID, "ACCEPTED"); err != nil {
		t.Fatal(err)
	}
	e.eventually("the fraud event", func() bool { return len(sink.of("session.fraud_status_changed", id)) == 1 })
	sink.mu.Lock()
	seqs := map[float64]string{}
	top := 0.0
	for _, ev := range sink.events {
		if ev.Data["id"] != id {
			continue
		}
		n, _ := ev.Data["sequence"].(float64)
		if prev, dup := seqs[n]; dup {
			t.Errorf("sequence %v twice: %s and %s", n, prev, ev.Type)
		}
		seqs[n] = ev.Type
		top = max(top, n)
	}
	sink.mu.Unlock()
	for n := 1.0; n <= top; n++ {
		if _, ok := seqs[n]; !ok {
			t.Errorf("no event with sequence %v (have %v)", n, seqs)
		}
	}
	if seqs[top] != "session.fraud_status_changed" || top < 2 {
		t.Fatalf("events by sequence %v: the fraud decision should be the last of at least two", seqs)
	}
	if got := e.session(id)["sequence"]; got != top {
		t.Fatalf("GET sequence %v, want %v", got, top)
	}
}
