package daemon_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// hitShopperURL sends n concurrent GETs to a shopper URL and fails unless
// every one was answered 303 to the storefront.
func (e *env) hitShopperURL(u string, n int) {
	e.t.Helper()
	var wg sync.WaitGroup
	codes := make([]int, n)
	locs := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := e.http.Get(u)
			if err != nil {
				e.t.Errorf("hit %d: %v", i, err)
				return
			}
			resp.Body.Close()
			codes[i], locs[i] = resp.StatusCode, resp.Header.Get("Location")
		}(i)
	}
	wg.Wait()
	for i := range codes {
		if codes[i] != http.StatusSeeOther || !strings.HasPrefix(locs[i], "https://shop.example/ok?") {
			e.t.Fatalf("hit %d: %d %q, want 303 to the storefront", i, codes[i], locs[i])
		}
	}
}

func TestShopperURLStormOnPendingSessionCostsAFewReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("")
	id := s["id"].(string)
	u := e.base + "/shopper/" + id + "/success?hppId=" + hppID(s)
	before := e.countRequests("read_hpp_session")

	e.hitShopperURL(u, 200)
	if n := e.countRequests("read_hpp_session") - before; n < 1 || n > 3 {
		t.Fatalf("200 concurrent hits made %d Klarna reads, want 1 to 3", n)
	}

	// The hits left one re-read for the end of the interval: it is made
	// once the clock passes it, and only once.
	e.clock.Advance(4 * time.Second)
	e.eventually("the deferred re-read", func() bool { return e.countRequests("read_hpp_session")-before >= 2 })
	e.hitShopperURL(u, 200) // a second storm, inside the new interval
	time.Sleep(100 * time.Millisecond)
	if n := e.countRequests("read_hpp_session") - before; n > 5 {
		t.Fatalf("two storms made %d Klarna reads, want at most 5", n)
	}
	if got := e.session(id); got["status"] != "pending" {
		t.Fatalf("status %v, want pending", got["status"])
	}
}

func TestShopperURLStormOnCompletedSessionPlacesOneOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"callbacks": {"drop_rate": 1}}`) // only the shoppers tell hppd
	s := e.createSession("")
	id := s["id"].(string)
	to := e.act(hppID(s), "pay")
	before := e.countRequests("read_hpp_session")

	e.hitShopperURL(to, 200)
	got := e.waitStatus(id, "order_placed")
	if n := len(e.ordersFor(s)); n != 1 || got["order_id"] == "" {
		t.Fatalf("%d orders, order id %v; want exactly one", n, got["order_id"])
	}
	if n := e.countRequests("read_hpp_session") - before; n > 3 {
		t.Fatalf("200 concurrent hits made %d Klarna reads, want at most 3", n)
	}
	e.clock.Advance(4 * time.Second) // the deferred re-read finds it placed
	e.hitShopperURL(to, 50)
	time.Sleep(100 * time.Millisecond)
	if n := len(e.ordersFor(s)); n != 1 {
		t.Fatalf("%d orders after more hits, want 1", n)
	}
}

func TestCompletedCallbackInsideTheIntervalIsStillReRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("")
	id := s["id"].(string)
	// A shopper URL hit reads the session (pending): the interval starts.
	if st, _ := e.follow(e.base + "/shopper/" + id + "/success?hppId=" + hppID(s)); st != http.StatusSeeOther {
		t.Fatalf("shopper URL: %d", st)
	}
	reads := e.countRequests("read_hpp_session")
	// The shopper pays; Klarna's COMPLETED callback comes inside the
	// interval. Its re-read is moved to the interval's end, not dropped.
	accepted := e.m.Service.Stats.CallbacksAccepted.Load()
	e.act(hppID(s), "pay")
	e.eventually("the COMPLETED callback", func() bool { return e.m.Service.Stats.CallbacksAccepted.Load() > accepted })
	e.clock.Advance(4 * time.Second)
	got := e.waitStatus(id, "order_placed")
	if n := len(e.ordersFor(s)); n != 1 || got["order_id"] == "" {
		t.Fatalf("%d orders, order id %v; want exactly one", n, got["order_id"])
	}
	if n := e.countRequests("read_hpp_session"); n <= reads {
		t.Fatalf("no re-read after the COMPLETED callback (%d reads before, %d after)", reads, n)
	}
}

func TestShopperBackJustAfterAReadStillSeesThePayment(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.setFaults(`{"callbacks": {"drop_rate": 1}}`) // only the shopper tells hppd
	s := e.createSession("")
	id := s["id"].(string)
	if st, _ := e.follow(e.base + "/shopper/" + id + "/back?hppId=" + hppID(s)); st != http.StatusSeeOther {
		t.Fatalf("back URL: %d", st)
	}
	// Paid at once: the success redirect comes inside the interval of the
	// back redirect's read. It waits for the interval's end and reads, so
	// its answer already knows of the payment.
	st, loc := e.follow(e.act(hppID(s), "pay"))
	if st != http.StatusSeeOther || !strings.HasPrefix(loc, "https://shop.example/ok?") {
		t.Fatalf("success URL: %d %q", st, loc)
	}
	if got := e.session(id)["status"]; got == "pending" {
		t.Fatal("the success redirect answered without reading the payment")
	}
	e.waitStatus(id, "order_placed")
	if n := len(e.ordersFor(s)); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
}
