package daemon_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// TestConnectionCapIsEnforced: with HPPD_MAX_CONNECTIONS=5, ten clients
// that open a connection and send half a request never have more than five
// connections open at once, and a real request is answered while they all
// still hold on: the connections that have waited longest for their
// request are closed to make room (under netutil.LimitListener it waited
// in the backlog until HPPD_READ_HEADER_TIMEOUT, here a minute, freed a
// slot).
func TestConnectionCapIsEnforced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"HPPD_MAX_CONNECTIONS": "5", "HPPD_READ_HEADER_TIMEOUT": "1m"})
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", e.m.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: hppd\r\nX-Slow: ")
	}
	e.eventually("ten connections taken, five of them closed to make room", func() bool {
		open, _ := e.m.Connections()
		return open == 5 && e.m.ConnectionsShed() == 5
	})
	if st, out := e.do("GET", "/healthz", nil, nil); st != http.StatusOK {
		t.Fatalf("healthz while five half-requests hold every slot: %d %v", st, out["_raw"])
	}
	if _, peak := e.m.Connections(); peak > 5 {
		t.Fatalf("%d connections were open at once, over the cap of 5", peak)
	}
}

// TestHeadersOverEightKiBAreRefused: MaxHeaderBytes is 8 KiB (net/http
// allows 4 KiB of slack): a 16 KiB header gets 431 and no handler runs.
func TestHeadersOverEightKiBAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c, err := net.Dial("tcp", e.m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: hppd\r\nX-Big: %s\r\n\r\n", strings.Repeat("x", 16<<10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("16 KiB of headers: %d, want 431", resp.StatusCode)
	}
}

// TestAuthorizationTokenDroppedOnceOrderPlaced: the data file kept the
// authorization token after the order was placed; now, once the session is
// order_placed, the token appears nowhere in the bbolt file.
func TestAuthorizationTokenDroppedOnceOrderPlaced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("NONE")
	id := s["id"].(string)
	e.act(hppID(s), "pay")
	e.waitStatus(id, "order_placed")
	var token string
	for _, r := range e.sim.Requests() {
		if r.Operation == "place_order" {
			token = strings.TrimSuffix(strings.TrimPrefix(r.Path, "/payments/v1/authorizations/"), "/order")
		}
	}
	if token == "" || strings.Contains(token, "/") {
		t.Fatalf("no authorization token found in the place_order request (%q)", token)
	}
	if err := e.m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Read the record back from the data file itself.
	db, err := boltstore.Open(e.dbPath, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rec *core.Session
	if err := db.View(func(tx store.Tx) error {
		var err error
		rec, err = tx.Session(id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if rec.Status != core.SessionOrderPlaced || rec.AuthorizationToken != "" {
		t.Fatalf("session %s: status %s, authorization token kept: %v", id, rec.Status, rec.AuthorizationToken != "")
	}
	if !rec.AuthorizedWith(token) || rec.AuthorizedWith(token+"x") {
		t.Fatal("the placed session no longer recognises its own authorization token (repeats would be conflicts)")
	}
}
