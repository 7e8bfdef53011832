package klarnasim

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Lifetimes from FACTS 1.8 and the idempotency window of FACTS 4.
const (
	kpSessionLifetime     = 48 * time.Hour
	hppBeforeKPExpiry     = time.Hour
	authorizationLifetime = 60 * time.Minute
	idempotencyWindow     = 24 * time.Hour
	maxBodyBytes          = 10 << 20
)

// Options configures a Sim. The zero value is usable.
type Options struct {
	// Username and Password are the HTTP Basic credentials every Klarna
	// path and /_sim/ require (default "sim"/"sim").
	Username, Password string
	// PublicURL is the base URL the simulator is reachable at; it prefixes
	// redirect_url, session_url and distribution_url. Empty means "derive it
	// from each request's Host". SetPublicURL changes it later.
	PublicURL string
	// Seed seeds the source of ids, tokens and fault dice (0 = time-based).
	Seed int64
	// Now is the base wall clock; the simulator clock is Now() plus the
	// offset moved by Advance (default time.Now).
	Now func() time.Time
	// CallbackTimeout is how long a status_update receiver has to answer
	// 2xx (default 3s, Klarna's).
	CallbackTimeout time.Duration
	// CallbackRetryDelay is the wait before a retry (default 5s).
	CallbackRetryDelay time.Duration
	// CallbackRetries is the number of retries after the first call
	// (default 3; negative means none).
	CallbackRetries int
	// HTTPClient sends callbacks (default a plain client; the per-attempt
	// timeout is CallbackTimeout).
	HTTPClient *http.Client
	// Logger receives one debug line per request (default: discard).
	Logger *slog.Logger
	// AllowInsecureCallbacks accepts http:// status_update URLs on any
	// host; otherwise only loopback hosts may use http (Klarna requires
	// https).
	AllowInsecureCallbacks bool
	// Environment picks Klarna's rate limits (LimitsFor): "production"
	// (default, 40 creations/s and 200 other requests/s) or "playground" (5
	// and 50). Over a limit the answer is 429 with Retry-After.
	Environment string
	// RateLimits overrides the limits of Environment when non-zero.
	RateLimits RateLimits
	// Unlimited never answers 429 for the rate (benchmarks that measure
	// hppd's own overhead); the X-Ratelimit headers still count. Klarna
	// always limits, so tests of hppd's behaviour leave it false.
	Unlimited bool
	// Account names this simulated Klarna account on its orders
	// (OrderRecord.Account); NewMulti sets it.
	Account string
	// Behaviour is the initial Behaviour (replay mode and answer shapes);
	// SetBehaviour changes it later. New panics on an unknown replay mode.
	Behaviour Behaviour
}

// Sim is a running simulator. All methods are safe for concurrent use.
type Sim struct {
	opts    Options
	log     *slog.Logger
	handler http.Handler
	closing chan struct{}
	closeMu sync.Once
	cb      *dispatcher

	clockMu   sync.Mutex // guards offset and publicURL (leaf lock)
	offset    time.Duration
	publicURL string

	rngMu sync.Mutex // guards rng (leaf lock)
	rng   *rand.Rand

	mu         sync.Mutex // guards everything below
	kp         map[string]*kpSession
	hpp        map[string]*hppSession
	auths      map[string]*authorization
	tokens     map[string]*custToken
	orders     []OrderRecord
	idem       map[string]*idemEntry
	requests   []RequestRecord
	faults     Faults
	burstCount map[string]int
	ruleSeen   map[string]int // requests each limited rule (FaultRule.Times) has taken
	rateWin    map[string]*rateWindow
	fraud      fraudState
	behaviour  Behaviour
}

// New returns a simulator configured by opts.
func New(opts Options) *Sim {
	if opts.Username == "" && opts.Password == "" {
		opts.Username, opts.Password = "sim", "sim"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CallbackTimeout <= 0 {
		opts.CallbackTimeout = 3 * time.Second
	}
	if opts.CallbackRetryDelay <= 0 {
		opts.CallbackRetryDelay = 5 * time.Second
	}
	switch {
	case opts.CallbackRetries == 0:
		opts.CallbackRetries = 3
	case opts.CallbackRetries < 0:
		opts.CallbackRetries = 0
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{}
	}
	if def := LimitsFor(opts.Environment); opts.RateLimits == (RateLimits{}) {
		opts.RateLimits = def
	} else {
		if opts.RateLimits.CreateSession <= 0 {
			opts.RateLimits.CreateSession = def.CreateSession
		}
		if opts.RateLimits.Other <= 0 {
			opts.RateLimits.Other = def.Other
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	s := &Sim{
		opts:       opts,
		log:        log.With("component", "klarnasim"),
		closing:    make(chan struct{}),
		publicURL:  strings.TrimRight(opts.PublicURL, "/"),
		rng:        rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)),
		kp:         make(map[string]*kpSession),
		hpp:        make(map[string]*hppSession),
		auths:      make(map[string]*authorization),
		tokens:     make(map[string]*custToken),
		idem:       make(map[string]*idemEntry),
		burstCount: make(map[string]int),
		ruleSeen:   make(map[string]int),
		rateWin:    make(map[string]*rateWindow),
	}
	if err := s.SetBehaviour(opts.Behaviour); err != nil {
		panic(err)
	}
	s.cb = newDispatcher(s)
	s.handler = s.routes()
	return s
}

// Handler serves the Klarna paths, /_sim/ and the payment page.
func (s *Sim) Handler() http.Handler { return s.handler }

// SetPublicURL sets the base URL the simulator is reachable at.
func (s *Sim) SetPublicURL(u string) {
	s.clockMu.Lock()
	s.publicURL = strings.TrimRight(u, "/")
	s.clockMu.Unlock()
}

// base returns the public base URL, derived from r when none is set.
func (s *Sim) base(r *http.Request) string {
	s.clockMu.Lock()
	u := s.publicURL
	s.clockMu.Unlock()
	if u != "" || r == nil {
		return u
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// Advance moves the simulator clock forward by d.
func (s *Sim) Advance(d time.Duration) {
	s.clockMu.Lock()
	s.offset += d
	s.clockMu.Unlock()
}

// Now is the simulator clock: Options.Now plus every Advance, in UTC, to
// the millisecond.
func (s *Sim) Now() time.Time {
	s.clockMu.Lock()
	off := s.offset
	s.clockMu.Unlock()
	return s.opts.Now().Add(off).UTC().Truncate(time.Millisecond) // Klarna's precision
}

// Close stops callback deliveries, waits for their goroutines and wakes
// handlers sleeping on an injected fault. It is safe to call twice.
func (s *Sim) Close() {
	s.closeMu.Do(func() {
		close(s.closing)
		s.cb.close()
	})
}

// newID returns a random UUID (version 4 layout) from the seeded source.
func (s *Sim) newID() string {
	var b [16]byte
	s.rngMu.Lock()
	for i := 0; i < 16; i += 8 {
		v := s.rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	s.rngMu.Unlock()
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// roll returns true with probability p.
func (s *Sim) roll(p float64) bool {
	if p <= 0 {
		return false
	}
	if p >= 1 {
		return true
	}
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.Float64() < p
}

// intn returns a number in [0, n).
func (s *Sim) intn(n int) int {
	if n <= 1 {
		return 0
	}
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.IntN(n)
}

// sleep waits d, returning false if ctx or the simulator ends first.
func (s *Sim) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closing:
		return false
	}
}

// ListenAndServe runs a simulator on addr until ctx is done, then shuts the
// server down gracefully. When opts.PublicURL is empty it becomes
// http://<the listening address>.
func ListenAndServe(ctx context.Context, addr string, opts Options) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	if opts.PublicURL == "" {
		opts.PublicURL = "http://" + ln.Addr().String()
	}
	s := New(opts)
	defer s.Close()
	s.log.Info("simulator listening", "addr", ln.Addr().String(), "public_url", opts.PublicURL)
	return serve(ctx, addr, ln, s.Handler(), s.Close)
}

// serve runs handler on ln until ctx is done, then shuts the server down
// gracefully; closeSim wakes handlers sleeping on injected latency first.
func serve(ctx context.Context, addr string, ln net.Listener, handler http.Handler, closeSim func()) error {
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closeSim() // wake handlers sleeping on injected latency before waiting for them
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", addr, err)
	}
	return nil
}
