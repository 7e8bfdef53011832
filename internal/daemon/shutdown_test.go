package daemon_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/internal/testenv"
)

// hangingTransport never answers Klarna's place-order calls: each waits
// until release (when ignoreCancel) or until its context ends. Every other
// call goes through.
type hangingTransport struct {
	ignoreCancel bool
	entered      chan struct{} // a place-order call is hanging
	release      chan struct{}
	once         sync.Once
}

func newHangingTransport(ignoreCancel bool) *hangingTransport {
	return &hangingTransport{ignoreCancel: ignoreCancel, entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (h *hangingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !(req.Method == http.MethodPost && strings.HasPrefix(req.URL.Path, "/payments/v1/authorizations/") && strings.HasSuffix(req.URL.Path, "/order")) {
		return http.DefaultTransport.RoundTrip(req)
	}
	h.entered <- struct{}{}
	if h.ignoreCancel {
		<-h.release
		return nil, errors.New("released by the test")
	}
	<-req.Context().Done()
	return nil, req.Context().Err()
}

func (h *hangingTransport) Release() { h.once.Do(func() { close(h.release) }) }

// payAndHang pays a session on the simulator and waits until hppd's
// place-order call for it hangs in h.
func payAndHang(e *env, h *hangingTransport) string {
	e.t.Helper()
	s := e.createSession("")
	e.act(hppID(s), "open")
	e.follow(e.act(hppID(s), "pay"))
	select {
	case <-h.entered:
	case <-time.After(15 * time.Second):
		e.t.Fatal("no place-order call was made")
	}
	return s["id"].(string)
}

// closeWithin closes hppd with a shutdown budget of d and returns Close's
// error. Close not returning at all (it waits for the hanging call) fails the
// test after a wait far beyond d: that is a hang, not a slow stop.
func closeWithin(e *env, h *hangingTransport, d time.Duration) error {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.m.Close(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d + 30*time.Second):
		h.Release() // lets Close and the cleanups end
		e.t.Fatal("Close did not return while a Klarna call hung")
		return nil
	}
}

// restartAndPlace starts hppd again on the same data file with a working
// Klarna connection and checks the order is placed once.
func restartAndPlace(e *env, id string) {
	e.t.Helper()
	e.klarnaHTTP = nil
	e.vars["HPPD_LISTEN"] = e.m.Addr()
	e.start()
	e.clock.Advance(time.Minute) // past the failed attempt's backoff
	s := e.waitStatus(id, "order_placed")
	if n := len(e.ordersFor(s)); n != 1 {
		e.t.Fatalf("orders at Klarna after the restart: %d, want 1", n)
	}
}

// A place-order call that never answers, not even to its context being
// cancelled, cannot hold the stop past its deadline: Close returns, saying
// something was still running, while the call still hangs; the job is still
// in the store and places the order once after the restart.
func TestShutdownIsBoundedByAKlarnaCallThatNeverAnswers(t *testing.T) {
	t.Parallel()
	h := newHangingTransport(true)
	t.Cleanup(h.Release)
	e := newEnvWith(t, envOptions{klarnaHTTP: &http.Client{Transport: h}})
	id := payAndHang(e, h)

	err := closeWithin(e, h, time.Second)
	if err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("Close: %v, want an error saying a job was still running", err)
	}
	select {
	case <-h.release:
		t.Fatal("the call was released before Close returned")
	default:
	}
	restartAndPlace(e, id)
}

// A place-order call that hangs but honours cancellation gets the shutdown's
// time, is then cancelled, and is recorded as a failed attempt: Close ends
// cleanly, and the job places the order once after the restart.
func TestShutdownCancelsAHangingKlarnaCall(t *testing.T) {
	t.Parallel()
	h := newHangingTransport(false)
	e := newEnvWith(t, envOptions{klarnaHTTP: &http.Client{Transport: h}})
	id := payAndHang(e, h)

	// The budget is generous so that phase 2 (a tenth of it) leaves a
	// commit slowed by a busy machine time to record the cancelled attempt:
	// what is tested is that the hanging call is cancelled and recorded,
	// not how fast.
	if err := closeWithin(e, h, 5*time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
	restartAndPlace(e, id)
}

// A connection on which no request has arrived (a client's transport may
// dial one and then not use it) has nothing of hppd's in flight. net/http's
// Shutdown counts it as active until it is 5 s old, so it held the HTTP
// drain to the end of the grace; the poller's stop then found the grace over
// and was reported though no poll ran, and phase 2 waited for the connection
// until the deadline and reported a request still running. Now the hanging
// call is cancelled at the end of the grace as without the connection, the
// connection is closed, Close returns nil, and the job places the order once
// after the restart.
func TestShutdownIsNotHeldByAConnectionWithoutARequest(t *testing.T) {
	t.Parallel()
	h := newHangingTransport(false)
	e := newEnvWith(t, envOptions{klarnaHTTP: &http.Client{Transport: h}})
	id := payAndHang(e, h)
	c, err := net.Dial("tcp", e.m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Under 5 s, so that net/http never counts the connection idle by its
	// age: only hppd closing it ends it.
	if err := closeWithin(e, h, 3*time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from the connection after Close: %d bytes, %v; want it closed by hppd", n, err)
	}
	restartAndPlace(e, id)
}

// The metrics listener and the admin socket are shut down like the public
// listener: a scraper's or an admin client's connection that has delivered
// no request has nothing in flight. It held their drain to the end of the
// grace and was then reported ("metrics shutdown: context deadline
// exceeded"); and when the public listener's drain had used up the grace,
// their own shutdown found it over and was reported too. Now such
// connections are closed when phase 2 begins and Close returns nil.
func TestShutdownIsNotHeldByMetricsOrAdminConnectionsWithoutARequest(t *testing.T) {
	t.Parallel()
	te := testenv.New(t, testenv.Options{Metrics: true, Admin: true})
	m := te.Main
	var conns []net.Conn
	for _, a := range []struct{ network, addr string }{
		{"tcp", m.Addr()}, // holds the public drain to the end of the grace
		{"tcp", m.MetricsAddr()},
		{"unix", m.Config.AdminSocket},
	} {
		c, err := net.Dial(a.network, a.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}

	// Under 5 s, so that net/http never counts a connection idle by its
	// age: only hppd closing them ends them.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, c := range conns {
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read from connection %d after Close: %d bytes, %v; want it closed by hppd", i, n, err)
		}
	}
}
