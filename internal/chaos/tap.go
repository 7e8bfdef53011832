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
// Klarna calls in flight per operation and notes when each call arrived,
// by rate category. It forwards requests and answers unchanged; when hppd
// goes away mid-call the outgoing call is cancelled, as the direct call
// would have been. It listens on one port per hppd replica, so the calls
// in flight are known per replica.
type tap struct {
	srv *http.Server
	lns []net.Listener

	mu       sync.Mutex
	inflight []map[string]int // by replica, then operation
	arrivals map[string][]time.Time
	done     sync.WaitGroup
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

// newTap starts a tap in front of target with one listener per replica.
func newTap(target string, replicas int) (*tap, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("tap target: %w", err)
	}
	t := &tap{arrivals: map[string][]time.Time{}}
	for range replicas {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range t.lns {
				l.Close()
			}
			return nil, fmt.Errorf("tap listen: %w", err)
		}
		t.lns = append(t.lns, ln)
		t.inflight = append(t.inflight, map[string]int{})
	}
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
			replica, _ := r.Context().Value(replicaKey{}).(int)
			op := opOf(r.Method, r.URL.Path)
			t.arrived(r.Method, r.URL.Path)
			t.add(replica, op, 1)
			defer t.add(replica, op, -1)
			rp.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			for i, ln := range t.lns {
				if c.LocalAddr().String() == ln.Addr().String() {
					return context.WithValue(ctx, replicaKey{}, i)
				}
			}
			return ctx
		},
	}
	for _, ln := range t.lns {
		t.done.Add(1)
		go func() {
			defer t.done.Done()
			_ = t.srv.Serve(ln)
		}()
	}
	return t, nil
}

// replicaKey marks a connection with the replica whose listener took it.
type replicaKey struct{}

// URL is the base URL replica i uses as Klarna's.
func (t *tap) URL(i int) string { return "http://" + t.lns[i].Addr().String() }

func (t *tap) arrived(method, path string) {
	now := time.Now()
	t.mu.Lock()
	for _, c := range rateCategories(method, path) {
		t.arrivals[c] = append(t.arrivals[c], now)
	}
	t.mu.Unlock()
}

// arrivalsByCategory returns when each call arrived, by rate category.
func (t *tap) arrivalsByCategory() map[string][]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string][]time.Time, len(t.arrivals))
	for c, ts := range t.arrivals {
		out[c] = append([]time.Time(nil), ts...)
	}
	return out
}

func (t *tap) add(replica int, op string, d int) {
	t.mu.Lock()
	t.inflight[replica][op] += d
	t.mu.Unlock()
}

// inFlight returns how many calls of op replica i has between it and its
// answer.
func (t *tap) inFlight(i int, op string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inflight[i][op]
}

// busyReplica returns a replica with a call of op in flight, or -1.
func (t *tap) busyReplica(op string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, m := range t.inflight {
		if m[op] > 0 {
			return i
		}
	}
	return -1
}

// waitInFlight waits (at most timeout) until a replica has a call of op in
// flight and returns it, or -1.
func (t *tap) waitInFlight(ctx context.Context, op string, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		if i := t.busyReplica(op); i >= 0 {
			return i
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return -1
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
	t.done.Wait()
}
