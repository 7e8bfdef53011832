package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Operations the tap tells apart (the simulator's names).
const (
	opPlaceOrder = "place_order"
	opTokenOrder = "create_token_order"
)

// tap is a reverse proxy between hppd and the simulator that counts the
// Klarna calls in flight per operation. It forwards requests and answers
// unchanged; when hppd goes away mid-call the outgoing call is cancelled,
// as the direct call would have been.
type tap struct {
	srv *http.Server
	ln  net.Listener

	mu       sync.Mutex
	inflight map[string]int
	done     chan struct{}
}

// opOf names the operations the killer cares about.
func opOf(method, path string) string {
	if method != http.MethodPost || !strings.HasSuffix(path, "/order") {
		return "other"
	}
	switch {
	case strings.HasPrefix(path, "/payments/v1/authorizations/"):
		return opPlaceOrder
	case strings.HasPrefix(path, "/customer-token/v1/tokens/"):
		return opTokenOrder
	}
	return "other"
}

func newTap(target string) (*tap, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("tap target: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tap listen: %w", err)
	}
	t := &tap{ln: ln, inflight: map[string]int{}, done: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	}
	rp.ErrorLog = log.New(io.Discard, "", 0) // hppd going away mid-call is the point of the run
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, context.Canceled) {
			return // the client is gone; nobody reads an answer
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	t.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			op := opOf(r.Method, r.URL.Path)
			t.add(op, 1)
			defer t.add(op, -1)
			rp.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		defer close(t.done)
		_ = t.srv.Serve(ln)
	}()
	return t, nil
}

// URL is the base URL hppd uses as Klarna's.
func (t *tap) URL() string { return "http://" + t.ln.Addr().String() }

func (t *tap) add(op string, d int) {
	t.mu.Lock()
	t.inflight[op] += d
	t.mu.Unlock()
}

// inFlight returns how many calls of op are between hppd and its answer.
func (t *tap) inFlight(op string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inflight[op]
}

// waitInFlight waits (at most timeout) until a call of op is in flight.
func (t *tap) waitInFlight(ctx context.Context, op string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if t.inFlight(op) > 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

func (t *tap) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.srv.Shutdown(ctx); err != nil {
		t.srv.Close()
	}
	<-t.done
}
