package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/pgtest"
)

// replica starts another hppd on e's PostgreSQL database and simulator.
func (e *env) replica() *daemon.Main {
	e.t.Helper()
	cfg, err := config.Load(func(k string) string {
		if k == "HPPD_LISTEN" {
			return "127.0.0.1:0"
		}
		return e.vars[k]
	})
	if err != nil {
		e.t.Fatal(err)
	}
	m := &daemon.Main{Config: cfg, Now: e.clock.Now, Logger: e.logger, ReplicaHeartbeat: 50 * time.Millisecond}
	if err := m.Run(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// Two replicas on one database: they count each other (each takes half of
// Klarna's rates), shoppers and pollers reach both at once, and every
// session gets one order from one place_order call: the replicas claim
// jobs through leases in the database. A replica that stops leaves, and the
// other takes the whole budget again.
func TestTwoReplicasPlaceEachOrderOnce(t *testing.T) {
	t.Parallel()
	withVars(t, map[string]string{"HPPD_DATABASE_URL": pgtest.DB(t)})
	e := newEnv(t, nil)
	b := e.replica()
	e.eventually("both replicas to count two", func() bool { return e.m.Replicas() == 2 && b.Replicas() == 2 })
	const rounds = 4
	for round := range rounds {
		s := e.createSession("")
		id := s["id"].(string)
		to := e.act(hppID(s), "pay") // the callback reaches the first replica
		onB := strings.Replace(to, e.base, "http://"+b.Addr(), 1)
		e.clock.Advance(3 * time.Minute)
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(4)
			go func() { defer wg.Done(); e.follow(to) }()
			go func() { defer wg.Done(); e.follow(onB) }() // the shopper's retry lands on the other replica
			go func() { defer wg.Done(); e.m.Poller.RunOnce(context.Background()) }()
			go func() { defer wg.Done(); b.Poller.RunOnce(context.Background()) }()
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
	// Leases in the database: one replica ran each placement.
	if n := e.countRequests("place_order"); n != rounds {
		t.Fatalf("place_order calls %d, want %d", n, rounds)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.eventually("the remaining replica to count one", func() bool { return e.m.Replicas() == 1 })
}

// A storefront retry that reaches the other replica while the first request
// is inside its Klarna calls gets a 409, never a second KP session; once
// the first is done, a retry on either replica replays its answer.
func TestIdempotencyKeyAcrossReplicas(t *testing.T) {
	t.Parallel()
	withVars(t, map[string]string{"HPPD_DATABASE_URL": pgtest.DB(t)})
	e := newEnv(t, nil)
	b := e.replica()
	onB := *e
	onB.base = "http://" + b.Addr()
	e.setFaults(`{"create_hpp_session": [{"latency": "1s"}]}`)
	key := map[string]string{"Idempotency-Key": "cart-77"}
	type answer struct {
		status int
		body   map[string]any
	}
	first := make(chan answer, 1)
	go func() {
		st, s := e.do("POST", "/v1/sessions", sessionBody(10000, ""), key)
		first <- answer{st, s}
	}()
	e.eventually("the first request to reach Klarna", func() bool {
		for _, r := range e.sim.Requests() {
			if r.Operation == "create_hpp_session" {
				return true
			}
		}
		return false
	})
	if st, out := onB.do("POST", "/v1/sessions", sessionBody(10000, ""), key); st != 409 {
		t.Fatalf("retry on the other replica mid-request: %d %v", st, out["_raw"])
	}
	a := <-first
	if a.status != 201 {
		t.Fatalf("first request: %d %v", a.status, a.body["_raw"])
	}
	st, again := onB.do("POST", "/v1/sessions", sessionBody(10000, ""), key)
	if st != 201 || again["id"] != a.body["id"] {
		t.Fatalf("replay on the other replica: %d %v, first %v", st, again["id"], a.body["id"])
	}
	if n := e.countRequests("create_kp_session"); n != 1 {
		t.Fatalf("%d KP sessions for one key", n)
	}
}

// A storefront's share of Klarna's rates is divided among the replicas as
// the Klarna clients' rates are: shop-b may start 0.1 session creations a
// second (2% of 5/s); alone a replica refuses its second creation with a
// wait of at most 10 s, and each of two replicas refuses it with a wait of
// about 20 s, its half of the share.
func TestStorefrontShareDividedAmongReplicas(t *testing.T) {
	t.Parallel()
	withVars(t, map[string]string{"HPPD_DATABASE_URL": pgtest.DB(t)})
	cfgPath := filepath.Join(t.TempDir(), "hppd.yaml")
	if err := os.WriteFile(cfgPath, []byte("storefronts:\n  - name: shop-b\n    klarna_share: 0.02\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, map[string]string{"HPPD_CONFIG_FILE": cfgPath})
	// waitAfterBurst creates two sessions on replica on, one after the other, and
	// returns the Retry-After of the refused second.
	waitAfterBurst := func(on *env) int {
		t.Helper()
		shopB := map[string]string{"Authorization": "Bearer " + e.tokenFor("shop-b")}
		if st, out := on.do("POST", "/v1/sessions", sessionBody(10000, ""), shopB); st != http.StatusCreated {
			t.Fatalf("first session: %d %v", st, out["_raw"])
		}
		body, _ := json.Marshal(sessionBody(10000, ""))
		req, _ := http.NewRequest("POST", on.base+"/v1/sessions", bytes.NewReader(body))
		req.Header.Set("Authorization", shopB["Authorization"])
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("second session: %d, want 429", resp.StatusCode)
		}
		n, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil {
			t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
		}
		return n
	}
	if n := waitAfterBurst(e); n < 1 || n > 10 {
		t.Fatalf("alone: Retry-After %d, want 1..10 (0.1 creations/s)", n)
	}
	b := e.replica()
	e.eventually("both replicas to count two", func() bool { return e.m.Replicas() == 2 && b.Replicas() == 2 })
	e.clock.Advance(time.Minute) // the buckets fill again
	onB := *e
	onB.base = "http://" + b.Addr()
	for name, on := range map[string]*env{"first": e, "second": &onB} {
		if n := waitAfterBurst(on); n <= 10 || n > 20 {
			t.Fatalf("%s of two replicas: Retry-After %d, want 11..20 (0.05 creations/s)", name, n)
		}
	}
}
