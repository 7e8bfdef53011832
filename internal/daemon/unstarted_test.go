package daemon

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// closeAll closes the connections that have delivered no request, and
// those that arrive after it, and nothing else: a request in a handler
// still gets its answer, and a keep-alive connection between requests is
// the server's own to close.
func TestUnstartedConnsClosesOnlyConnectionsWithoutARequest(t *testing.T) {
	var u unstartedConns
	inHandler, finish := make(chan struct{}), make(chan struct{})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/wait" {
				close(inHandler)
				<-finish
			}
			_, _ = io.WriteString(w, "ok")
		}),
		ReadHeaderTimeout: time.Minute,
		ConnState:         u.track,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	get := func(c net.Conn, br *bufio.Reader, path string) {
		t.Helper()
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	closed := func(c net.Conn, br *bufio.Reader) bool {
		t.Helper()
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		_, err := br.ReadByte()
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}

	keepAlive, kbr := dial()
	get(keepAlive, kbr, "/") // idle between requests from here on
	busy, bbr := dial()
	if _, err := io.WriteString(busy, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-inHandler
	fresh, fbr := dial()
	waitFor(t, "the server to see the new connection", func() bool { return u.n.Load() == 1 })

	u.closeAll()
	if !closed(fresh, fbr) {
		t.Fatal("the connection without a request is still open")
	}
	close(finish)
	resp, err := http.ReadResponse(bbr, nil)
	if err != nil {
		t.Fatalf("the request in its handler got no answer: %v", err)
	}
	resp.Body.Close()
	get(keepAlive, kbr, "/")
	late, lbr := dial()
	if !closed(late, lbr) {
		t.Fatal("a connection that arrived after closeAll is still open")
	}
}

// waitFor waits, bounded, for cond: a wait for something to happen, not an
// assertion of how fast.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
