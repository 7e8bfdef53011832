package klarnasim

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hppd/hppd/internal/klarnaspec"
	"github.com/hppd/hppd/klarna"
)

func TestDriverAPI(t *testing.T) {
	e := newEnv(t, nil)

	t.Run("tokens", func(t *testing.T) {
		r := e.do("POST", "/_sim/tokens", map[string]any{"behavior": "failed", "failures": 1})
		expectStatus(t, r, http.StatusCreated)
		var out struct {
			CustomerToken string `json:"customer_token"`
		}
		r.json(t, &out)
		expectCode(t, e.charge(out.CustomerToken, ""), http.StatusForbidden, "PAYMENT_METHOD_FAILED")
		expectStatus(t, e.charge(out.CustomerToken, ""), http.StatusOK)

		r = e.do("POST", "/_sim/tokens", map[string]any{"behavior": "TOKEN_SUSPENDED"})
		expectStatus(t, r, http.StatusCreated)
		r.json(t, &out)
		expectCode(t, e.charge(out.CustomerToken, ""), http.StatusForbidden, "TOKEN_SUSPENDED")

		expectStatus(t, e.do("POST", "/_sim/tokens", map[string]any{"behavior": "flaky"}), http.StatusBadRequest)
		expectStatus(t, e.do("POST", "/_sim/tokens", map[string]any{"behaviour": "ok"}), http.StatusBadRequest)
	})

	t.Run("hpp actions", func(t *testing.T) {
		h := e.createHPP(e.createKP(kpBody()), shopURLs, map[string]any{"place_order_mode": "PLACE_ORDER"})
		var out map[string]string
		r := e.do("POST", "/_sim/hpp/"+h.SessionID+"/open", nil)
		expectStatus(t, r, http.StatusOK)
		r.json(t, &out)
		if out["status"] != "IN_PROGRESS" || out["redirect_to"] != "" {
			t.Fatalf("open %v", out)
		}
		r = e.do("POST", "/_sim/hpp/"+h.SessionID+"/pay", nil)
		expectStatus(t, r, http.StatusOK)
		r.json(t, &out)
		st := e.readHPP(h.SessionID)
		if out["status"] != "COMPLETED" || out["redirect_to"] != "https://shop.example/ok?sid=s1&hppId="+h.SessionID+"&token={{authorization_token}}&order="+st.OrderID {
			t.Fatalf("pay %v", out)
		}
		expectStatus(t, e.do("POST", "/_sim/hpp/"+h.SessionID+"/back", nil), http.StatusConflict)
		expectStatus(t, e.do("POST", "/_sim/hpp/nope/pay", nil), http.StatusNotFound)
		h2 := e.createHPP(e.createKP(kpBody()), nil, nil)
		expectStatus(t, e.do("POST", "/_sim/hpp/"+h2.SessionID+"/dance", nil), http.StatusBadRequest)
	})

	t.Run("kp authorize", func(t *testing.T) {
		kp := e.createKP(kpBody())
		var out map[string]any
		r := e.do("POST", "/_sim/kp/"+kp+"/authorize", map[string]any{"approve": false})
		expectStatus(t, r, http.StatusOK)
		r.json(t, &out)
		if out["approved"] != false || out["authorization_token"] != nil {
			t.Fatalf("decline %v", out)
		}
		r = e.do("POST", "/_sim/kp/"+kp+"/authorize", map[string]any{"approve": true})
		r.json(t, &out)
		tok, _ := out["authorization_token"].(string)
		if out["approved"] != true || tok == "" {
			t.Fatalf("approve %v", out)
		}
		expectStatus(t, e.do("POST", "/payments/v1/authorizations/"+tok+"/order", orderBody()), http.StatusOK)
		expectStatus(t, e.do("POST", "/_sim/kp/"+kp+"/authorize", map[string]any{"approve": true}), http.StatusConflict)
		expectStatus(t, e.do("POST", "/_sim/kp/nope/authorize", map[string]any{"approve": true}), http.StatusNotFound)
	})

	t.Run("orders and requests", func(t *testing.T) {
		var orders []OrderRecord
		e.do("GET", "/_sim/orders", nil).json(t, &orders)
		if !reflect.DeepEqual(orders, e.sim.Orders()) || len(orders) < 3 {
			t.Fatalf("orders %+v", orders)
		}
		var tokens, auths int
		for _, o := range orders {
			if o.CustomerToken != "" {
				tokens++
			}
			if o.AuthorizationToken != "" {
				auths++
			}
			if len(o.Request) == 0 {
				t.Fatalf("order without request %+v", o)
			}
		}
		if tokens < 1 || auths < 1 {
			t.Fatalf("orders %+v", orders)
		}
		var reqs []RequestRecord
		e.do("GET", "/_sim/requests", nil).json(t, &reqs)
		if len(reqs) != len(e.sim.Requests()) || len(reqs) == 0 {
			t.Fatalf("%d requests", len(reqs))
		}
		first := reqs[0]
		if first.Method != "POST" || first.Operation != OpCreateTokenOrder || first.Status != http.StatusForbidden || first.Body == "" {
			t.Fatalf("first request %+v", first)
		}
		for _, rq := range reqs {
			if rq.Operation == OpUnknown || strings.HasPrefix(rq.Path, "/_sim") {
				t.Fatalf("driver request recorded: %+v", rq)
			}
		}
	})

	t.Run("faults", func(t *testing.T) {
		r := e.do("POST", "/_sim/faults", `{"read_kp_session":[{"error_rate":1,"status":502}],"callbacks":{"drop_rate":1}}`)
		expectStatus(t, r, http.StatusOK)
		var got Faults
		e.do("GET", "/_sim/faults", nil).json(t, &got)
		if got.Operations[OpReadKPSession][0].Status != 502 || got.Callbacks.DropRate != 1 {
			t.Fatalf("faults %+v", got)
		}
		expectStatus(t, e.do("GET", "/payments/v1/sessions/any", nil), http.StatusBadGateway)
		expectStatus(t, e.do("POST", "/_sim/faults", `{"read_everything":[]}`), http.StatusBadRequest)
		expectStatus(t, e.do("DELETE", "/_sim/faults", nil), http.StatusNoContent)
		expectStatus(t, e.do("GET", "/payments/v1/sessions/any", nil), http.StatusNotFound)
	})

	t.Run("clock", func(t *testing.T) {
		var c struct {
			Now time.Time `json:"now"`
		}
		before := e.sim.Now()
		r := e.do("POST", "/_sim/clock", map[string]any{"advance": "61m"})
		expectStatus(t, r, http.StatusOK)
		r.json(t, &c)
		if !c.Now.Equal(before.Add(61*time.Minute)) || !e.sim.Now().Equal(c.Now) {
			t.Fatalf("clock %v, before %v", c.Now, before)
		}
		expectStatus(t, e.do("POST", "/_sim/clock", map[string]any{"advance": "soon"}), http.StatusBadRequest)
		expectStatus(t, e.do("POST", "/_sim/clock", map[string]any{"advance": "-1h"}), http.StatusBadRequest)
	})

	t.Run("callbacks and unknown", func(t *testing.T) {
		var recs []CallbackRecord
		expectStatus(t, e.do("GET", "/_sim/callbacks", nil), http.StatusOK)
		e.do("GET", "/_sim/callbacks", nil).json(t, &recs)
		expectStatus(t, e.do("GET", "/_sim/nothing", nil), http.StatusNotFound)
	})
}

// script runs the same request sequence against a fresh simulator and
// returns every identifier it saw.
func script(t *testing.T, seed int64) []string {
	e := newEnv(t, func(o *Options) { o.Seed = seed })
	var ids []string
	kp := e.createKP(kpBody())
	h := e.createHPP(kp, shopURLs, nil)
	ids = append(ids, kp, h.SessionID)
	if _, _, err := e.sim.Act(h.SessionID, ActionPay); err != nil {
		t.Fatal(err)
	}
	st := e.readHPP(h.SessionID)
	r := e.do("POST", "/payments/v1/authorizations/"+st.AuthorizationToken+"/order", orderBody())
	var o klarna.Order
	r.json(t, &o)
	tok := e.sim.CreateToken(BehaviorOK, 0)
	var o2 klarna.Order
	e.charge(tok, "k").json(t, &o2)
	ids = append(ids, st.AuthorizationToken, o.OrderID, tok, o2.OrderID, r.header.Get("Klarna-Correlation-Id"))
	return ids
}

func TestDeterminism(t *testing.T) {
	a, b, c := script(t, 42), script(t, 42), script(t, 43)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different ids:\n%v\n%v", a, b)
	}
	for i := range a {
		if a[i] == c[i] {
			t.Fatalf("seeds 42 and 43 share id %s", a[i])
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, nil)
	rc := newReceiver(t, nil)
	tok := e.sim.CreateToken(BehaviorOK, 0)
	var wg sync.WaitGroup
	var failures atomic.Int64
	check := func(r resp, err error, want int) bool {
		if err != nil || r.status != want {
			failures.Add(1)
			return false
		}
		return true
	}
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				r, err := e.send("POST", "/payments/v1/sessions", kpBody(), "sim", "sim")
				var kp klarna.KPSession
				if !check(r, err, http.StatusOK) || json.Unmarshal(r.body, &kp) != nil {
					continue
				}
				r, err = e.send("POST", "/hpp/v1/sessions", map[string]any{
					"payment_session_url": "https://api.klarna.com/payments/v1/sessions/" + kp.SessionID,
					"merchant_urls":       cbURLs(rc),
				}, "sim", "sim")
				var h klarna.HPPSession
				if !check(r, err, http.StatusCreated) || json.Unmarshal(r.body, &h) != nil {
					continue
				}
				if _, _, err := e.sim.Act(h.SessionID, ActionPay); err != nil {
					failures.Add(1)
					continue
				}
				r, err = e.send("GET", "/hpp/v1/sessions/"+h.SessionID, nil, "sim", "sim")
				var st klarna.HPPSessionStatus
				if !check(r, err, http.StatusOK) || json.Unmarshal(r.body, &st) != nil {
					continue
				}
				r, err = e.send("POST", "/payments/v1/authorizations/"+st.AuthorizationToken+"/order", orderBody(), "sim", "sim")
				check(r, err, http.StatusOK)
				r, err = e.send("POST", "/customer-token/v1/tokens/"+tok+"/order", tokenOrderBody(), "sim", "sim",
					"Klarna-Idempotency-Key", fmt.Sprintf("c-%d-%d", i, j))
				check(r, err, http.StatusOK)
				e.sim.Requests()
				e.sim.Callbacks()
			}
		}()
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d failures", n)
	}
	waitCallbacks(t, e.sim)
	if n := len(e.sim.Orders()); n != 16*5*2 {
		t.Fatalf("%d orders", n)
	}
	if n := len(rc.got()); n != 16*5*2 {
		t.Fatalf("%d callbacks", n)
	}
}

func TestListenAndServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ListenAndServe(ctx, addr, Options{Username: "u", Password: "p"}) }()

	var res *http.Response
	for range 200 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/_sim/clock", nil)
		req.SetBasicAuth("u", "p")
		if res, err = http.DefaultClient.Do(req); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("simulator never answered: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := ListenAndServe(context.Background(), "256.0.0.1:1", Options{}); err == nil {
		t.Fatal("bad address accepted")
	}
}

// TestSpecWrapperCatchesDrift proves the OpenAPI wrapper of these tests
// would notice a response that is not Klarna's.
func TestSpecWrapperCatchesDrift(t *testing.T) {
	drifted := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"session_id":"x","status":"EXPIRED"}`))
	})
	var reports atomic.Int64
	n := new(atomic.Int64)
	h := specChecked(klarnaspec.MustLoad(t), drifted, n, func(error, []byte) { reports.Add(1) })
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/hpp/v1/sessions/x")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if reports.Load() != 1 || n.Load() != 1 {
		t.Fatalf("reports %d, validated %d", reports.Load(), n.Load())
	}
}
