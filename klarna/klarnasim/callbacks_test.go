package klarnasim

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/klarna"
)

// cbURLs are merchant URLs whose status_update points at rc.
func cbURLs(rc *receiver) map[string]string {
	return map[string]string{
		"success":       "https://shop.example/ok?hppId={{session_id}}",
		"status_update": rc.srv.URL + "/cb?secret=s3cr3t&hppId={{session_id}}",
	}
}

func TestCallbacksDelivered(t *testing.T) {
	e := newEnv(t, nil)
	rc := newReceiver(t, nil)
	h := e.createHPP(e.createKP(kpBody()), cbURLs(rc), nil)
	if _, _, err := e.sim.Act(h.SessionID, ActionPay); err != nil {
		t.Fatal(err)
	}
	waitCallbacks(t, e.sim)

	got := rc.got()
	if len(got) != 2 || got[0].callback.Session.Status != klarna.HPPInProgress || got[1].callback.Session.Status != klarna.HPPCompleted {
		t.Fatalf("statuses %v", rc.statuses())
	}
	for _, ev := range got {
		if ev.contentType != "application/json" || ev.query != "secret=s3cr3t&hppId="+h.SessionID || ev.callback.EventID == "" {
			t.Fatalf("callback %+v", ev)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(ev.raw, &raw); err != nil || len(raw) != 2 {
			t.Fatalf("callback body has other keys than event_id and session: %s", ev.raw)
		}
	}
	if got[0].callback.EventID == got[1].callback.EventID {
		t.Fatal("two events share an event_id")
	}
	// The COMPLETED event carries the session exactly as read-session returns it.
	var read map[string]any
	e.do("GET", "/hpp/v1/sessions/"+h.SessionID, nil).json(t, &read)
	var sent map[string]any
	var whole map[string]json.RawMessage
	_ = json.Unmarshal(got[1].raw, &whole)
	_ = json.Unmarshal(whole["session"], &sent)
	if !reflect.DeepEqual(read, sent) || sent["authorization_token"] == nil {
		t.Fatalf("callback session %v, read %v", sent, read)
	}

	recs := e.sim.Callbacks()
	if len(recs) != 2 {
		t.Fatalf("records %+v", recs)
	}
	for _, r := range recs {
		if strings.Contains(r.URL, "s3cr3t") || r.URL != rc.srv.URL+"/cb" || r.HTTPStatus != http.StatusOK || r.Attempt != 0 {
			t.Fatalf("record %+v", r)
		}
	}

	t.Run("disable sends DISABLED", func(t *testing.T) {
		h := e.createHPP(e.createKP(kpBody()), cbURLs(rc), nil)
		before := len(rc.got())
		expectStatus(t, e.do("DELETE", "/hpp/v1/sessions/"+h.SessionID, nil), http.StatusNoContent)
		waitCallbacks(t, e.sim)
		got := rc.got()[before:]
		if len(got) != 1 || got[0].callback.Session.Status != klarna.HPPDisabled {
			t.Fatalf("events %+v", got)
		}
	})
	t.Run("no callback without a status change", func(t *testing.T) {
		h := e.createHPP(e.createKP(kpBody()), cbURLs(rc), nil)
		before := len(rc.got())
		for range 3 {
			if _, _, err := e.sim.Act(h.SessionID, ActionOpen); err != nil {
				t.Fatal(err)
			}
		}
		waitCallbacks(t, e.sim)
		if n := len(rc.got()) - before; n != 1 {
			t.Fatalf("%d callbacks for one status change", n)
		}
	})
}

func TestCallbackRetries(t *testing.T) {
	t.Run("5xx then success", func(t *testing.T) {
		e := newEnv(t, nil)
		rc := newReceiver(t, func(n int) (int, time.Duration) {
			if n < 2 {
				return http.StatusInternalServerError, 0
			}
			return http.StatusOK, 0
		})
		h := e.createHPP(e.createKP(kpBody()), cbURLs(rc), nil)
		if _, _, err := e.sim.Act(h.SessionID, ActionOpen); err != nil {
			t.Fatal(err)
		}
		waitCallbacks(t, e.sim)
		recs := e.sim.Callbacks()
		if len(recs) != 3 || recs[0].HTTPStatus != 500 || recs[1].HTTPStatus != 500 || recs[2].HTTPStatus != 200 ||
			recs[2].Attempt != 2 || recs[0].EventID != recs[2].EventID {
			t.Fatalf("attempts %+v", recs)
		}
	})
	t.Run("slow receiver", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.CallbackTimeout = 50 * time.Millisecond })
		rc := newReceiver(t, func(n int) (int, time.Duration) {
			if n == 0 {
				return http.StatusOK, 5 * time.Second // answers too late
			}
			return http.StatusOK, 0
		})
		h := e.createHPP(e.createKP(kpBody()), cbURLs(rc), nil)
		if _, _, err := e.sim.Act(h.SessionID, ActionOpen); err != nil {
			t.Fatal(err)
		}
		waitCallbacks(t, e.sim)
		recs := e.sim.Callbacks()
		if len(recs) != 2 || recs[0].Error != "timeout" || recs[1].HTTPStatus != 200 || recs[1].Attempt != 1 {
			t.Fatalf("attempts %+v", recs)
		}
	})
	t.Run("gives up after 3 retries", func(t *testing.T) {
		e := newEnv(t, nil)
		rc := newReceiver(t, func(int) (int, time.Duration) { return http.StatusServiceUnavailable, 0 })
		h := e.createHPP(e.createKP(kpBody()), cbURLs(rc), nil)
		if _, _, err := e.sim.Act(h.SessionID, ActionOpen); err != nil {
			t.Fatal(err)
		}
		waitCallbacks(t, e.sim)
		if n := len(rc.got()); n != 4 {
			t.Fatalf("%d calls, want 4", n)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.CallbackRetries = -1 })
		h := e.createHPP(e.createKP(kpBody()), map[string]string{"status_update": "http://127.0.0.1:1/cb?secret=x"}, nil)
		if _, _, err := e.sim.Act(h.SessionID, ActionOpen); err != nil {
			t.Fatal(err)
		}
		waitCallbacks(t, e.sim)
		recs := e.sim.Callbacks()
		if len(recs) != 1 || recs[0].Error == "" || strings.Contains(recs[0].Error, "secret") {
			t.Fatalf("records %+v", recs)
		}
	})
}

func TestCallbackFaults(t *testing.T) {
	run := func(t *testing.T, f CallbackFaults, actions ...string) (*env, *receiver, string) {
		e := newEnv(t, nil)
		rc := newReceiver(t, nil)
		e.sim.SetFaults(Faults{Callbacks: &f})
		h := e.createHPP(e.createKP(kpBody()), cbURLs(rc), nil)
		for _, a := range actions {
			if _, _, err := e.sim.Act(h.SessionID, a); err != nil {
				t.Fatal(err)
			}
		}
		waitCallbacks(t, e.sim)
		return e, rc, h.SessionID
	}
	t.Run("drop", func(t *testing.T) {
		e, rc, _ := run(t, CallbackFaults{DropRate: 1}, ActionPay)
		if n := len(rc.got()); n != 0 {
			t.Fatalf("%d callbacks despite drop", n)
		}
		recs := e.sim.Callbacks()
		if len(recs) != 2 || !recs[0].Dropped || !recs[1].Dropped {
			t.Fatalf("records %+v", recs)
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		_, rc, _ := run(t, CallbackFaults{DuplicateRate: 1, MaxDuplicates: 2}, ActionOpen)
		got := rc.got()
		if len(got) < 2 || len(got) > 3 {
			t.Fatalf("%d deliveries, want 2 or 3", len(got))
		}
		for _, ev := range got {
			if ev.callback.EventID != got[0].callback.EventID {
				t.Fatal("duplicates carry different event ids")
			}
		}
	})
	t.Run("reorder", func(t *testing.T) {
		_, rc, _ := run(t, CallbackFaults{ReorderRate: 1, ReorderWindow: Duration(10 * time.Second)}, ActionPay)
		if got := rc.statuses(); !reflect.DeepEqual(got, []string{klarna.HPPCompleted, klarna.HPPInProgress}) {
			t.Fatalf("order %v", got)
		}
	})
	t.Run("reorder without a later event", func(t *testing.T) {
		_, rc, _ := run(t, CallbackFaults{ReorderRate: 1, ReorderWindow: Duration(10 * time.Millisecond)}, ActionOpen)
		if got := rc.statuses(); !reflect.DeepEqual(got, []string{klarna.HPPInProgress}) {
			t.Fatalf("events %v", got)
		}
	})
	t.Run("delay", func(t *testing.T) {
		_, rc, _ := run(t, CallbackFaults{DelayRate: 1, Delay: Duration(20 * time.Millisecond)}, ActionPay)
		if n := len(rc.got()); n != 2 {
			t.Fatalf("%d delayed callbacks delivered, want 2", n)
		}
	})
}

func TestCloseStopsCallbacks(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CallbackRetryDelay = time.Hour })
	rc := newReceiver(t, func(int) (int, time.Duration) { return http.StatusInternalServerError, 0 })
	h := e.createHPP(e.createKP(kpBody()), cbURLs(rc), nil)
	if _, _, err := e.sim.Act(h.SessionID, ActionOpen); err != nil {
		t.Fatal(err)
	}
	// A retry waits an hour; Close must not.
	e.sim.Close()
	waitCallbacks(t, e.sim)
	if _, _, err := e.sim.Act(h.SessionID, ActionPay); err != nil {
		t.Fatal(err)
	}
	waitCallbacks(t, e.sim)
}
