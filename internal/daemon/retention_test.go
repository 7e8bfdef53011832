package daemon_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hppd/hppd/store/boltstore"
)

// Inside HPPD_IDEMPOTENCY_TTL a key replays its first answer (and refuses
// another body); after it the key is forgotten and names a new request,
// which creates a new session at Klarna, and the new answer is replayed in
// turn.
func TestIdempotencyKeyAfterItsTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"HPPD_IDEMPOTENCY_TTL": "24h"})
	h := map[string]string{"Idempotency-Key": "cart-1"}
	st, first := e.do("POST", "/v1/sessions", sessionBody(10000, ""), h)
	if st != http.StatusCreated {
		t.Fatalf("first: %d %v", st, first["_raw"])
	}

	e.clock.Advance(23 * time.Hour)
	st, replay := e.do("POST", "/v1/sessions", sessionBody(10000, ""), h)
	if st != http.StatusCreated || replay["id"] != first["id"] {
		t.Fatalf("inside the TTL: %d %v, want the first answer (%v)", st, replay["_raw"], first["id"])
	}
	if st, out := e.do("POST", "/v1/sessions", sessionBody(20000, ""), h); st != http.StatusConflict {
		t.Fatalf("another body inside the TTL: %d %v", st, out["_raw"])
	}
	if n := e.countRequests("create_kp_session"); n != 1 {
		t.Fatalf("%d KP sessions inside the TTL", n)
	}

	e.clock.Advance(2 * time.Hour) // 25 h after the first request
	st, second := e.do("POST", "/v1/sessions", sessionBody(20000, ""), h)
	if st != http.StatusCreated || second["id"] == first["id"] || second["order_amount"] == first["order_amount"] {
		t.Fatalf("after the TTL: %d %v (first %v)", st, second["_raw"], first["id"])
	}
	if n := e.countRequests("create_kp_session"); n != 2 {
		t.Fatalf("%d KP sessions, want a second one for the new request", n)
	}
	st, again := e.do("POST", "/v1/sessions", sessionBody(20000, ""), h)
	if st != http.StatusCreated || again["id"] != second["id"] {
		t.Fatalf("the new request's replay: %d %v (want %v)", st, again["_raw"], second["id"])
	}
	// The first session is still there, untouched.
	if got := e.session(first["id"].(string)); got["id"] != first["id"] {
		t.Fatalf("first session: %v", got["_raw"])
	}

	// The poller forgets the expired record for good (the new one is kept).
	r := e.m.Poller.RunOnce(context.Background())
	if r.Retention.Idempotency != 0 {
		t.Fatalf("pruned %d idempotency records, the only one is inside its TTL", r.Retention.Idempotency)
	}
	e.clock.Advance(25 * time.Hour)
	r = e.m.Poller.RunOnce(context.Background())
	if r.Retention.Idempotency != 1 {
		t.Fatalf("pruned %+v, want the record past its TTL", r.Retention)
	}
}

// A final session older than HPPD_RETENTION is deleted by a poller run and
// is gone from the API; a newer one stays.
func TestRetentionDeletesOldFinalSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"HPPD_RETENTION": "30d"})
	old := e.createSession("")["id"].(string)
	if st, out := e.do("POST", "/v1/sessions/"+old+"/cancel", nil, nil); st != http.StatusOK {
		t.Fatalf("cancel: %d %v", st, out["_raw"])
	}
	e.clock.Advance(20 * 24 * time.Hour)
	newer := e.createSession("")["id"].(string)
	if st, out := e.do("POST", "/v1/sessions/"+newer+"/cancel", nil, nil); st != http.StatusOK {
		t.Fatalf("cancel: %d %v", st, out["_raw"])
	}
	if r := e.m.Poller.RunOnce(context.Background()); r.Retention.Sessions != 0 {
		t.Fatalf("pruned %+v inside the retention", r.Retention)
	}
	e.clock.Advance(11 * 24 * time.Hour) // the first is 31 days old, the second 11
	r := e.m.Poller.RunOnce(context.Background())
	if r.Retention.Sessions != 1 {
		t.Fatalf("pruned %+v, want the old session", r.Retention)
	}
	if st, _ := e.do("GET", "/v1/sessions/"+old, nil, nil); st != http.StatusNotFound {
		t.Fatalf("the old session: %d, want 404", st)
	}
	if got := e.session(newer); got["status"] != "cancelled" {
		t.Fatalf("the newer session: %v", got["_raw"])
	}
	// Every index entry and counter still matches the records (checked on
	// the closed file: bbolt's page check races with live writers).
	if err := e.m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	db, err := boltstore.Open(e.dbPath, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// A key whose request failed with a 5xx is released: the same body retries
// it (and finds what it made), another body is a new request, not a 409.
func TestKeyAfterA5xxTakesAnotherBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"create_hpp_session": [{"error_rate": 1, "status": 503}]}`)
	h := map[string]string{"Idempotency-Key": "cart-5"}
	if st, out := e.do("POST", "/v1/sessions", sessionBody(10000, ""), h); st != http.StatusServiceUnavailable {
		t.Fatalf("first try: %d %v", st, out["_raw"])
	}
	e.setFaults(`{}`)
	st, s := e.do("POST", "/v1/sessions", sessionBody(30000, ""), h)
	if st != http.StatusCreated || s["order_amount"] != float64(30000) {
		t.Fatalf("another body after the 5xx: %d %v", st, s["_raw"])
	}
	if n := e.countRequests("create_kp_session"); n != 2 {
		t.Fatalf("%d KP sessions, want one per purchase", n)
	}
}
