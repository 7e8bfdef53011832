package daemon

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// closeAll closes the connections that have delivered no request, and
// those that arrive after it, and nothing else: a request in a handler
// still gets its answer, and a keep-alive connection between requests is
// the server's own to close.
func TestUnstartedConnsClosesOnlyConnectionsWithoutARequest(t *testing.T) {
	t.Parallel()
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

// drain reports a server clean when it ends within the grace, when it finds
// the grace over with nothing in flight, and when what held it was only
// connections without a request, closed by phase 2; and reports a request
// that still runs at the deadline.
func TestDrainReportsOnlyARequestRunningAtTheDeadline(t *testing.T) {
	t.Parallel()
	// serve counts in idle the server's connections that went idle between
	// requests.
	serve := func(t *testing.T, u *unstartedConns, h http.HandlerFunc, idle *atomic.Int64) (*http.Server, string) {
		t.Helper()
		srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute, ConnState: func(c net.Conn, st http.ConnState) {
			u.track(c, st)
			if st == http.StateIdle {
				idle.Add(1)
			}
		}}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
		return srv, ln.Addr().String()
	}
	dial := func(t *testing.T, addr string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	over := func() context.Context { // a grace an earlier step used up
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}
	result := func(t *testing.T, done <-chan error) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("the server's drain did not end")
			return nil
		}
	}
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

	t.Run("grace over, nothing in flight", func(t *testing.T) {
		var u unstartedConns
		var idle atomic.Int64
		srv, addr := serve(t, &u, ok, &idle)
		c := dial(t, addr)
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		waitFor(t, "the connection to be idle", func() bool { return idle.Load() == 1 })
		if done := drain(srv, over(), context.Background()); done != nil {
			t.Fatalf("drain left the server to phase 2: %v", result(t, done))
		}
	})

	t.Run("only a connection without a request", func(t *testing.T) {
		var u unstartedConns
		srv, addr := serve(t, &u, ok, new(atomic.Int64))
		dial(t, addr)
		waitFor(t, "the server to see the connection", func() bool { return u.n.Load() == 1 })
		done := drain(srv, over(), context.Background()) // no deadline: only closing ends it
		if done == nil {
			t.Fatal("drain ended the server with a connection open")
		}
		u.closeAll() // phase 2 begins
		if err := result(t, done); err != nil {
			t.Fatalf("drain after the connection was closed: %v", err)
		}
	})

	t.Run("a request past the deadline", func(t *testing.T) {
		var u unstartedConns
		inHandler, release := make(chan struct{}), make(chan struct{})
		t.Cleanup(func() { close(release) })
		srv, addr := serve(t, &u, func(w http.ResponseWriter, _ *http.Request) {
			close(inHandler)
			<-release // ignores its request's cancellation
		}, new(atomic.Int64))
		c := dial(t, addr)
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		<-inHandler
		ctx, deadline := context.WithCancel(context.Background())
		done := drain(srv, over(), ctx)
		if done == nil {
			t.Fatal("drain ended the server while a request ran")
		}
		u.closeAll()
		deadline()
		if err := result(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("drain at the deadline: %v, want the deadline's error", err)
		}
	})
}
