package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// limitedServer serves h on a loopback port through a connLimiter of max
// connections.
func limitedServer(t *testing.T, max int, h http.Handler) (*connLimiter, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimiter(ln, max)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute, ConnState: l.track}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l, ln.Addr().String()
}

// get sends GET path on a new connection that closes after the answer (it
// never sits idle, so it is never shed) and returns the status (a deadline
// guards against a hang; it is not the assertion).
func get(t *testing.T, addr, path string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: hppd\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// At the cap, a new connection is not queued behind connections that
// trickle headers: the one that has waited longest is closed for it.
func TestConnLimiterShedsTheLongestWaiting(t *testing.T) {
	t.Parallel()
	l, addr := limitedServer(t, 3, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	var holders []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: hppd\r\nX-Slow: ")
		holders = append(holders, c)
		until(t, fmt.Sprintf("holder %d accepted", i+1), func() bool { open, _, _ := l.Connections(); return open == int64(i+1) })
	}
	if st := get(t, addr, "/ok"); st != http.StatusOK {
		t.Fatalf("a request at the cap: %d", st)
	}
	// The first holder was closed by hppd; the others still hold.
	_ = holders[0].SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := holders[0].Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the longest-waiting holder: read %v, want it closed", err)
	}
	open, peak, shed := l.Connections()
	if shed != 1 || peak != 3 {
		t.Fatalf("shed %d, peak %d; want 1 shed and never more than 3 open", shed, peak)
	}
	if open < 2 {
		t.Fatalf("%d open: the newer holders were closed too", open)
	}
}

// When every slot is in a request, nothing is shed: a new connection waits
// until a request ends.
func TestConnLimiterWaitsWhenEveryConnectionIsInARequest(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}, 2), make(chan struct{})
	l, addr := limitedServer(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			entered <- struct{}{}
			<-release
		}
	}))
	blocked := make(chan int, 2)
	for i := 0; i < 2; i++ {
		go func() { blocked <- get(t, addr, "/block") }()
	}
	<-entered
	<-entered
	third := make(chan int, 1)
	go func() { third <- get(t, addr, "/ok") }()
	close(release)
	for i := 0; i < 2; i++ {
		if st := <-blocked; st != http.StatusOK {
			t.Fatalf("a request in progress: %d", st)
		}
	}
	if st := <-third; st != http.StatusOK {
		t.Fatalf("the request that waited: %d", st)
	}
	if _, peak, shed := l.Connections(); shed != 0 || peak > 2 {
		t.Fatalf("shed %d, peak %d; want nothing shed (every connection was in a request) and at most 2 open", shed, peak)
	}
}

// Close ends an Accept that waits at the cap.
func TestConnLimiterCloseEndsAWaitingAccept(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimiter(ln, 1)
	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l.track(c, http.StateActive) // in a request: not to be shed
	second, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	_ = l.Close()
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}
