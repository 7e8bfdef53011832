package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// balancer is the load balancer in front of hppd's replicas: one port,
// round-robin over the replicas that are up. A replica is up once the
// driver saw its /readyz answer 200 (as a balancer's health check would);
// it is down from the first connection it refuses until it is ready again
// (a passive health check), and the request that met the refusal goes to
// the next replica: nothing reached the dead one, so any request may be
// sent on. A request that reached a replica which then died is answered
// 502, as a real balancer would, and its sender retries.
type balancer struct {
	srv      *http.Server
	ln       net.Listener
	backends []*backend
	next     atomic.Uint64
	rt       http.RoundTripper
	done     chan struct{}

	refused atomic.Int64 // connections refused by a replica and sent on
	failed  atomic.Int64 // answered 502: the replica died mid-request, or none was up
	// Requests by who sent them, from hppd's routes: the storefront
	// (/v1/), shoppers' browsers (/shopper/) and Klarna's callbacks
	// (/klarna/).
	storefront, shoppers, callbacks atomic.Int64
}

// backend is one replica's address and its state at the balancer.
type backend struct {
	addr   string
	up     atomic.Bool
	served atomic.Int64
}

// maxBalancedBody bounds a request body the balancer buffers to send it on.
const maxBalancedBody = 8 << 20

func newBalancer(addrs []string) (*balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("balancer listen: %w", err)
	}
	b := &balancer{ln: ln, done: make(chan struct{}), rt: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
	}}
	for _, a := range addrs {
		b.backends = append(b.backends, &backend{addr: a})
	}
	b.srv = &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		defer close(b.done)
		_ = b.srv.Serve(ln)
	}()
	return b, nil
}

// URL is the balancer's base URL: hppd's public URL.
func (b *balancer) URL() string { return "http://" + b.ln.Addr().String() }

// setUp marks replica i up or down.
func (b *balancer) setUp(i int, up bool) { b.backends[i].up.Store(up) }

// pick returns the next replica that is up, round-robin, skipping those
// in tried; nil when none is left.
func (b *balancer) pick(tried []bool) *backend {
	n := len(b.backends)
	start := int(b.next.Add(1) % uint64(n))
	for k := range n {
		i := (start + k) % n
		if !tried[i] && b.backends[i].up.Load() {
			tried[i] = true
			return b.backends[i]
		}
	}
	return nil
}

// refusedConn reports whether err is a connection the replica refused (or
// could not take at all): the request never reached hppd.
func refusedConn(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial")
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBalancedBody))
	if err != nil {
		return // the sender went away
	}
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/v1/"):
		b.storefront.Add(1)
	case strings.HasPrefix(p, "/shopper/"):
		b.shoppers.Add(1)
	case strings.HasPrefix(p, "/klarna/"):
		b.callbacks.Add(1)
	}
	tried := make([]bool, len(b.backends))
	for {
		be := b.pick(tried)
		if be == nil {
			b.failed.Add(1)
			http.Error(w, "no replica up", http.StatusBadGateway)
			return
		}
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "http", be.addr
		out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		if len(body) == 0 {
			out.Body = nil
		}
		resp, err := b.rt.RoundTrip(out)
		if err != nil {
			if refusedConn(err) && r.Context().Err() == nil {
				be.up.Store(false)
				b.refused.Add(1)
				continue
			}
			b.failed.Add(1)
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		be.served.Add(1)
		for k, vs := range resp.Header {
			if k != "Connection" && k != "Keep-Alive" {
				w.Header()[k] = vs
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
}

// spread is the report line of where requests went.
func (b *balancer) spread() string {
	var buf bytes.Buffer
	for i, be := range b.backends {
		if i > 0 {
			buf.WriteString(", ")
		}
		fmt.Fprintf(&buf, "replica %d %d", i+1, be.served.Load())
	}
	fmt.Fprintf(&buf, " (%d storefront, %d shopper, %d Klarna callback requests); %d refused connections sent on, %d answered 502",
		b.storefront.Load(), b.shoppers.Load(), b.callbacks.Load(), b.refused.Load(), b.failed.Load())
	return buf.String()
}

func (b *balancer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		b.srv.Close()
	}
	<-b.done
}
