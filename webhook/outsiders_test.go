package webhook_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/internal/daemon"
)

// TestCallbackBodyNotReadWithoutSecret: a callback for an unknown session or
// with a wrong secret is answered from its request line and headers alone.
// The client announces a 64 KiB body and sends none of it: the answer comes
// all the same, so hppd never waited for, or read, the body.
func TestCallbackBodyNotReadWithoutSecret(t *testing.T) {
	e := newHostileEnv(t, daemon.Timeouts{Read: 30 * time.Second})
	f := e.fixtures()
	id := f.a["id"].(string)
	unknown := "ses_" + strings.Repeat("b", 26)
	for _, c := range []struct{ name, path string }{
		{"wrong secret", callbackPath(id, strings.Repeat("A", 43), hppOf(f.a))},
		{"unknown session", callbackPath(unknown, e.secrets[id], hppOf(f.a))},
		{"malformed id", callbackPath("ses_..x", e.secrets[id], hppOf(f.a))},
		{"kp authorization, wrong secret", "/klarna/kp/" + id + "/authorization?secret=AAAA"},
		{"kp notification, wrong secret", "/klarna/kp/" + id + "/notification?secret=AAAA"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", e.m.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: hppd\r\nContent-Type: application/json\r\nContent-Length: 65536\r\n\r\n", c.path)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer before the body was sent: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), `"no such callback"`) {
				t.Fatalf("answer %d %s, want 404 no such callback", resp.StatusCode, b)
			}
		})
	}
}

// TestOutsiderIDsAreNotLogged: a 60 KB id in a path (the log flood of issue
// 17) is refused before any lookup, and no log line holds more than a bounded
// part of it.
func TestOutsiderIDsAreNotLogged(t *testing.T) {
	e := newHostileEnv(t, daemon.Timeouts{})
	f := e.fixtures()
	long := strings.Repeat("x", 60_000)
	paths := []string{
		callbackPath("ses_"+long, "secret", hppOf(f.a)),
		"/klarna/kp/ses_" + long + "/authorization?secret=x",
		"/shopper/ses_" + long + "/success",
		"/v1/sessions/ses_" + long,
		"/v1/charges/chg_" + long,
		"/v1/tokens/" + long,
	}
	for _, p := range paths {
		method := "GET"
		if strings.HasPrefix(p, "/klarna/") {
			method = "POST"
		}
		if r := e.do(method, p, []byte("{}"), nil); r.status < 400 || r.status >= 500 {
			t.Errorf("%s %.40s…: %d %s, want a 4xx", method, p, r.status, trim(r.body))
		}
	}
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, strings.Repeat("x", 1000)) {
			t.Fatalf("a log line holds the outsider's id: %.300s…", line)
		}
	}
}

// TestDotSegmentTokenNeverReachesKlarna: GET /v1/tokens/%2E%2E made hppd
// call /customer-token/v1/tokens/.. (url.PathEscape leaves dots alone); it is
// refused before any Klarna call.
func TestDotSegmentTokenNeverReachesKlarna(t *testing.T) {
	e := newHostileEnv(t, daemon.Timeouts{})
	before := len(e.sim.Requests())
	for _, p := range []string{"/v1/tokens/%2E%2E", "/v1/tokens/%2e", "/v1/tokens/..%2F..", "/v1/tokens/%2E%2E%2Forders"} {
		r := e.do("GET", p, nil, nil)
		if r.status < 400 || r.status >= 500 {
			t.Errorf("GET %s: %d %s, want a 4xx", p, r.status, trim(r.body))
		}
	}
	for _, r := range e.sim.Requests()[before:] {
		t.Errorf("Klarna was called: %s %s", r.Operation, r.Path)
	}
}
