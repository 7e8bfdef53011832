package daemon_test

// Attacks of the security review that had no test of their own (README:
// Security model, "Each attack and its test").

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// The review's first finding, as it was done: a token signed with shop-a's
// key and iss=shop-b cancelled shop-b's session (and so made hppd send
// shop-b a correctly signed session.cancelled event). Now the cancel is 401
// with shop-a's key or the global key, and shop-b's session stays pending.
func TestForeignKeyCannotCancelAnotherStorefrontsSession(t *testing.T) {
	t.Parallel()
	s := newShopsEnv(t, "", "", "")
	st, sess := s.do("POST", "/v1/sessions", sessionBody(10000, ""), s.as(shopBOwn, "shop-b"))
	if st != http.StatusCreated {
		t.Fatalf("shop-b creates a session: %d %v", st, sess)
	}
	id := sess["id"].(string)
	for _, k := range []struct{ what, key string }{{"shop-a's key", shopAKey1}, {"the global key", testKey}} {
		hdr := s.as(k.key, "shop-b")
		hdr["Idempotency-Key"] = "cancel-" + k.key[:6]
		if st, out := s.do("POST", "/v1/sessions/"+id+"/cancel", nil, hdr); st != http.StatusUnauthorized {
			t.Fatalf("cancel of shop-b's session with %s and iss=shop-b: %d %v, want 401", k.what, st, out["_raw"])
		}
	}
	if st, got := s.do("GET", "/v1/sessions/"+id, nil, s.as(shopBOwn, "shop-b")); st != http.StatusOK || got["status"] != "pending" {
		t.Fatalf("shop-b's session after the refused cancels: %d %v, want pending", st, got["status"])
	}
	if n := len(s.opRequests("disable_hpp_session")); n != 0 {
		t.Fatalf("%d HPP sessions disabled at Klarna", n)
	}
}

// The review's idle keep-alive finding: 3,000 connections that made one
// request and then sat idle held 3,000 goroutines for 90 s. Now
// HPPD_IDLE_TIMEOUT (30 s by default; short here) closes every one of
// them, and hppd holds none open.
func TestIdleKeepAliveConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"HPPD_IDLE_TIMEOUT": "200ms"})
	const idle = 50
	var conns []net.Conn
	for i := 0; i < idle; i++ {
		c, err := net.Dial("tcp", e.m.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: hppd\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		conns = append(conns, c)
	}
	// Each connection is closed by hppd: a read ends (the deadline only
	// guards against a hang).
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
			t.Fatalf("idle connection %d: read %d bytes, %v; want it closed by hppd", i, n, err)
		}
	}
	e.eventually("no connection left open", func() bool { open, _ := e.m.Connections(); return open == 0 })
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
