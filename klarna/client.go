package klarna

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// BaseURL overrides Region and Environment when set (Klarna's hosts do
	// move, and tests point it at a simulator).
	BaseURL string
	// Region is "eu" (default), "na" or "oc".
	Region string
	// Environment is "playground" (default) or "production".
	Environment string
	// Username and Password are the Klarna API credentials (HTTP Basic);
	// both are required.
	Username, Password string
	// HTTPClient is optional; the default has sane transport settings and
	// does not follow redirects.
	HTTPClient *http.Client
	// Timeout bounds each attempt when the ctx has no earlier deadline;
	// default 30s.
	Timeout time.Duration
	// MaxAttempts is the total number of attempts of a resendable call;
	// default 4, 1 disables resends.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the delay between attempts (full
	// jitter); defaults 200ms and 5s.
	BackoffBase, BackoffMax time.Duration
	// CreateSessionRate, OtherRate and TokenOrderRate are the client-side
	// limits in requests/s of the rate categories (see the package doc):
	// CreateSessionRate applies to KP session creation and, separately, to
	// HPP session creation; TokenOrderRate to customer token orders;
	// OtherRate to everything else. 0 takes the default of Environment
	// (DefaultRates); <0 disables a limiter.
	CreateSessionRate, OtherRate, TokenOrderRate float64
	// MaxRetryAfter is the longest Retry-After a resend waits for; a longer
	// one ends the call with the 429 or 503 (default 30s).
	MaxRetryAfter time.Duration
	// Version is hppd's version for the User-Agent
	// ("Library/hppd_<ver> Language/Go_<go ver> OS/<GOOS>_<GOARCH>").
	Version string
	// Logger is optional; it gets a debug line per attempt (op, status,
	// duration, correlation id), never tokens, secrets or bodies.
	Logger *slog.Logger
	// Observer is an optional hook for metrics, called once per attempt
	// that was sent; status is 0 for transport errors.
	Observer func(op string, status int, d time.Duration, err error)
}

// Defaults of Config.
const (
	DefaultTimeout           = 30 * time.Second
	DefaultMaxAttempts       = 4
	DefaultBackoffBase       = 200 * time.Millisecond
	DefaultBackoffMax        = 5 * time.Second
	DefaultCreateSessionRate = 40  // Klarna production limit for session creation (FACTS 4)
	DefaultOtherRate         = 200 // Klarna production limit for every other call (FACTS 4)
	DefaultMaxRetryAfter     = 30 * time.Second

	// Klarna's playground limits (FACTS 4, 8.5).
	PlaygroundCreateSessionRate = 5
	PlaygroundOtherRate         = 50

	maxResponseBody = 1 << 20
)

// Operation names, used in errors, logs, metrics labels and by the
// simulator's fault injection.
const (
	OpCreateKPSession      = "create_kp_session"
	OpReadKPSession        = "read_kp_session"
	OpPlaceOrder           = "place_order"
	OpCancelAuthorization  = "cancel_authorization"
	OpCreateHPPSession     = "create_hpp_session"
	OpReadHPPSession       = "read_hpp_session"
	OpDisableHPPSession    = "disable_hpp_session"
	OpDistributeHPPSession = "distribute_hpp_session"
	OpReadCustomerToken    = "read_customer_token"
	OpCreateTokenOrder     = "create_token_order"
)

// Ops lists every operation name.
var Ops = []string{
	OpCreateKPSession, OpReadKPSession, OpPlaceOrder, OpCancelAuthorization,
	OpCreateHPPSession, OpReadHPPSession, OpDisableHPPSession, OpDistributeHPPSession,
	OpReadCustomerToken, OpCreateTokenOrder,
	OpReadOrder,
}

// IdempotencyKeyHeader is the header Klarna reads an idempotency key from.
const IdempotencyKeyHeader = "Klarna-Idempotency-Key"

// CorrelationIDHeader is the response header carrying Klarna's correlation id.
const CorrelationIDHeader = "Klarna-Correlation-Id"

var baseURLs = map[string]map[string]string{
	"eu": {"production": "https://api.klarna.com", "playground": "https://api.playground.klarna.com"},
	"na": {"production": "https://api-na.klarna.com", "playground": "https://api-na.playground.klarna.com"},
	"oc": {"production": "https://api-oc.klarna.com", "playground": "https://api-oc.playground.klarna.com"},
}

// BaseURLFor returns Klarna's API host for a region ("eu", "na", "oc"; ""
// means "eu") and environment ("playground", "production"; "" means
// "playground"), per FACTS section 4.
func BaseURLFor(region, env string) (string, error) {
	if region == "" {
		region = "eu"
	}
	if env == "" {
		env = "playground"
	}
	envs, ok := baseURLs[strings.ToLower(region)]
	if !ok {
		return "", fmt.Errorf("klarna config Region: unknown region %q (want eu, na or oc)", region)
	}
	u, ok := envs[strings.ToLower(env)]
	if !ok {
		return "", fmt.Errorf("klarna config Environment: unknown environment %q (want playground or production)", env)
	}
	return u, nil
}

// DefaultRates returns Klarna's rate limits in requests/s for an environment
// ("production"; anything else, "" included, is "playground", the default
// environment): session creation per creation category, every other call,
// and the customer token order (counted at Klarna's session-creation figure,
// the stricter reading of its category list; FACTS 4).
func DefaultRates(env string) (create, other, tokenOrder float64) {
	if strings.EqualFold(env, "production") {
		return DefaultCreateSessionRate, DefaultOtherRate, DefaultCreateSessionRate
	}
	return PlaygroundCreateSessionRate, PlaygroundOtherRate, PlaygroundCreateSessionRate
}

// Client calls Klarna. It is safe for concurrent use.
type Client struct {
	base      string
	username  string
	password  string
	userAgent string
	http      *http.Client
	timeout   time.Duration
	attempts  int
	boBase    time.Duration
	boMax     time.Duration
	maxRA     time.Duration
	kpLim     *bucket // KP session creation
	hppLim    *bucket // HPP session creation
	tokenLim  *bucket // customer token orders (they also take a token of otherLim)
	otherLim  *bucket
	log       *slog.Logger
	// foreignURL logs the first returned URL off the configured host.
	foreignURL sync.Once
	observe    func(op string, status int, d time.Duration, err error)

	// sleep waits d or until ctx ends; tests replace it to record backoffs.
	sleep func(ctx context.Context, d time.Duration) error
}

// New validates cfg, fills in defaults and returns a Client. An invalid
// setting is reported with the name of its field.
func New(cfg Config) (*Client, error) {
	base := strings.TrimRight(strings.TrimSpace(cfg.BaseURL), "/")
	if base == "" {
		var err error
		if base, err = BaseURLFor(cfg.Region, cfg.Environment); err != nil {
			return nil, err
		}
	} else {
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, errors.New("klarna config BaseURL: want an absolute http(s) URL without credentials, query or fragment")
		}
	}
	if cfg.Username == "" {
		return nil, errors.New("klarna config Username: empty")
	}
	if cfg.Password == "" {
		return nil, errors.New("klarna config Password: empty")
	}
	if strings.Contains(cfg.Username, ":") {
		return nil, errors.New("klarna config Username: must not contain ':' (HTTP Basic)")
	}
	c := &Client{
		base:     base,
		username: cfg.Username,
		password: cfg.Password,
		http:     cfg.HTTPClient,
		timeout:  cfg.Timeout,
		attempts: cfg.MaxAttempts,
		boBase:   cfg.BackoffBase,
		boMax:    cfg.BackoffMax,
		log:      cfg.Logger,
		observe:  cfg.Observer,
		sleep:    sleepCtx,
	}
	switch {
	case c.timeout < 0:
		return nil, errors.New("klarna config Timeout: negative")
	case c.timeout == 0:
		c.timeout = DefaultTimeout
	}
	switch {
	case c.attempts < 0:
		return nil, errors.New("klarna config MaxAttempts: negative")
	case c.attempts == 0:
		c.attempts = DefaultMaxAttempts
	}
	switch {
	case c.boBase < 0:
		return nil, errors.New("klarna config BackoffBase: negative")
	case c.boBase == 0:
		c.boBase = DefaultBackoffBase
	}
	switch {
	case c.boMax < 0:
		return nil, errors.New("klarna config BackoffMax: negative")
	case c.boMax == 0:
		c.boMax = DefaultBackoffMax
	}
	if c.boMax < c.boBase {
		return nil, errors.New("klarna config BackoffMax: smaller than BackoffBase")
	}
	switch {
	case cfg.MaxRetryAfter < 0:
		return nil, errors.New("klarna config MaxRetryAfter: negative")
	case cfg.MaxRetryAfter == 0:
		c.maxRA = DefaultMaxRetryAfter
	default:
		c.maxRA = cfg.MaxRetryAfter
	}
	defCreate, defOther, defToken := DefaultRates(cfg.Environment)
	var err error
	if c.kpLim, err = newBucket("CreateSessionRate", cfg.CreateSessionRate, defCreate); err != nil {
		return nil, err
	}
	c.hppLim, _ = newBucket("CreateSessionRate", cfg.CreateSessionRate, defCreate) // same input, checked above
	if c.tokenLim, err = newBucket("TokenOrderRate", cfg.TokenOrderRate, defToken); err != nil {
		return nil, err
	}
	if c.otherLim, err = newBucket("OtherRate", cfg.OtherRate, defOther); err != nil {
		return nil, err
	}
	if c.http == nil {
		c.http = defaultHTTPClient()
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	version := strings.TrimSpace(cfg.Version)
	if version == "" {
		version = "dev"
	}
	c.userAgent = fmt.Sprintf("Library/hppd_%s Language/Go_%s OS/%s_%s",
		uaToken(version), strings.TrimPrefix(runtime.Version(), "go"), runtime.GOOS, runtime.GOARCH)
	return c, nil
}

// uaToken keeps a User-Agent item free of the separators of Klarna's
// convention (spaces, slashes, parentheses).
func uaToken(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r <= ' ' || r == '/' || r == '(' || r == ')' || r == ';' || r >= 0x7f:
			return '-'
		}
		return r
	}, s)
}

// paceMargin: the buckets release requests at 95% of the configured rate.
// Klarna counts at its side, where scheduling jitter between a token and the
// request's arrival can put one more request into a second than was sent in
// it (measured by `make bench` against the simulator: 51 in a second at 50/s).
const paceMargin = 0.95

func limiter(field string, r, def float64) (*rate.Limiter, error) {
	switch {
	case math.IsNaN(r) || math.IsInf(r, 0):
		return nil, fmt.Errorf("klarna config %s: not a finite number", field)
	case r < 0:
		return rate.NewLimiter(rate.Inf, 1), nil
	case r == 0:
		r = def
	}
	return rate.NewLimiter(rate.Limit(r*paceMargin), 1), nil
}

// bucket is one rate category's token bucket with two classes of callers.
// A priority call (an order placement, a token charge, a read that confirms
// a completion) reserves its token at once; routine calls reserve theirs one
// at a time, so however many routine calls queue, a priority call waits
// behind at most the one routine reservation already made.
//
// The token bucket fixes when each call may go, but a process that stalls
// (a loaded machine, a long GC pause) wakes its waiting callers late and
// all at once: three replicas at 60/s together sent 67 calls into one
// second in the chaos run. The window behind the bucket holds every call
// until fewer than the bucket's own bound (its pace plus its burst of 1)
// went out in the second before it, so a stall delays calls and never
// bunches them.
type bucket struct {
	lim     *rate.Limiter
	full    rate.Limit    // the configured rate; lim runs at a share of it (SetShare)
	routine chan struct{} // held by the routine call whose reservation is pending
	win     window
}

func newBucket(field string, r, def float64) (*bucket, error) {
	lim, err := limiter(field, r, def)
	if err != nil {
		return nil, err
	}
	b := &bucket{lim: lim, full: lim.Limit(), routine: make(chan struct{}, 1)}
	b.win.setMax(perSecond(lim.Limit()))
	return b, nil
}

// perSecond is the most calls a bucket paced at r lets into one second: its
// burst and its pace; 0 (no bound) for an unlimited bucket.
func perSecond(r rate.Limit) int {
	if r == rate.Inf {
		return 0
	}
	return int(math.Floor(float64(r))) + 1
}

// window bounds the calls sent in any one second [t, t+1s).
type window struct {
	mu   sync.Mutex
	max  int         // 0: no bound
	sent []time.Time // the last max sends, oldest first
}

func (w *window) setMax(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.max = n
	if n > 0 && len(w.sent) > n {
		w.sent = append([]time.Time(nil), w.sent[len(w.sent)-n:]...)
	}
}

// take records a send at now and returns 0 when fewer than max sends were
// made in the second before now; otherwise it records nothing and returns
// how long to wait before asking again.
func (w *window) take(now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.max <= 0 {
		return 0
	}
	if len(w.sent) >= w.max {
		if d := w.sent[len(w.sent)-w.max].Add(time.Second).Sub(now); d > 0 {
			return d
		}
		w.sent = w.sent[len(w.sent)-w.max+1:]
	}
	w.sent = append(w.sent, now)
	return 0
}

// SetShare makes the client send at share (0 < share <= 1) of its
// configured rates, from now on: processes that use one Klarna account at
// once (replicas) each take their part, so that together they stay within
// the account's limits (see shareRate). Klarna's 429 with Retry-After stays
// the backstop.
func (c *Client) SetShare(share float64) {
	if !(share > 0) || share > 1 {
		share = 1
	}
	for _, b := range []*bucket{c.kpLim, c.hppLim, c.tokenLim, c.otherLim} {
		if b.full != rate.Inf {
			r := shareRate(b.full, share)
			b.lim.SetLimit(r)
			b.win.setMax(perSecond(r))
		}
	}
}

// shareRate is the pace of one of 1/share processes that share a bucket
// paced at full. A bucket lets its burst (1) and its rate into any one
// second, so n processes each at full/n could put n-1 requests more into
// one of Klarna's seconds than one process at full: 3 replicas of a 10/s
// token-order limit sent 12 in one second in the chaos run. Each takes
// 1-share off its pace instead, so together they put at most full+1 into
// any second, as one process does (within the limit from 20/s, the pace
// margin's reach, and by whole requests below). A share too small for that
// keeps half its part rather than stopping.
func shareRate(full rate.Limit, share float64) rate.Limit {
	r := full*rate.Limit(share) - rate.Limit(1-share)
	return max(r, full*rate.Limit(share)/2)
}

// wait blocks until the bucket releases a token to the caller and the
// window has room, or returns an error when ctx ends first or its deadline
// comes before the token.
func (b *bucket) wait(ctx context.Context, priority bool) error {
	if !priority {
		select {
		case b.routine <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-b.routine }()
	}
	if err := b.lim.Wait(ctx); err != nil {
		return err
	}
	for {
		d := b.win.take(time.Now())
		if d == 0 {
			return nil
		}
		if err := sleepCtx(ctx, d); err != nil {
			return err
		}
	}
}

type priorityKey struct{}

// WithPriority marks the Klarna calls made with ctx as urgent: reads that
// confirm a completion. They take the next token of their rate category
// before queued routine calls (such as the poller's re-reads). Order
// placements and token orders are always urgent.
func WithPriority(ctx context.Context) context.Context {
	return context.WithValue(ctx, priorityKey{}, true)
}

// HasPriority reports whether ctx was marked WithPriority.
func HasPriority(ctx context.Context) bool {
	v, _ := ctx.Value(priorityKey{}).(bool)
	return v
}

// urgent reports whether a call of op with ctx outranks routine calls.
func urgent(ctx context.Context, op string) bool {
	switch op {
	case OpPlaceOrder, OpCreateTokenOrder, OpCreateKPSession, OpCreateHPPSession:
		return true
	}
	v, _ := ctx.Value(priorityKey{}).(bool)
	return v
}

func defaultHTTPClient() *http.Client {
	t, ok := http.DefaultTransport.(*http.Transport)
	if ok {
		t = t.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	}
	t.MaxIdleConns = 100
	t.MaxIdleConnsPerHost = 32
	t.IdleConnTimeout = 90 * time.Second
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ExpectContinueTimeout = time.Second
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{
		Transport: t,
		// Klarna's API does not redirect; a redirect would resend credentials
		// and bodies somewhere unexpected, so it is reported as an error.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// BaseURL returns the Klarna host the client talks to, without a trailing
// slash.
func (c *Client) BaseURL() string { return c.base }

// PaymentSessionURL returns the KP session URL HPP expects as
// payment_session_url: BaseURL + "/payments/v1/sessions/" + id.
func (c *Client) PaymentSessionURL(kpSessionID string) string {
	return c.base + "/payments/v1/sessions/" + url.PathEscape(kpSessionID)
}

// returnedPath turns a resource URL Klarna returned (an HPP session_url)
// into a path below the base URL, so hppd sends the request where Klarna said
// the resource is ("Do not recreate URLs", FACTS 8.7). The URL is used only
// when it has the base URL's scheme and host and lies under its path: the
// client's credentials go with the request, and they must never go to a host
// other than the one configured. Otherwise ok is false and the caller builds
// the documented path.
func (c *Client) returnedPath(returned string) (path string, ok bool) {
	if returned == "" {
		return "", false
	}
	u, err := url.Parse(returned)
	if err != nil || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", false
	}
	b, err := url.Parse(c.base)
	if err != nil || !strings.EqualFold(u.Scheme, b.Scheme) || !strings.EqualFold(u.Host, b.Host) {
		return "", false
	}
	p, prefix := u.EscapedPath(), b.EscapedPath()
	if !strings.HasPrefix(p, prefix+"/") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
		return "", false
	}
	return strings.TrimPrefix(p, prefix), true
}

// hppSessionPath is the path of an HPP session: its returned session_url when
// that is safe to use, else /hpp/v1/sessions/{id}.
func (c *Client) hppSessionPath(id, sessionURL string) string {
	if p, ok := c.returnedPath(sessionURL); ok && strings.HasSuffix(p, "/"+url.PathEscape(id)) {
		return p
	}
	if sessionURL != "" {
		// Once per client: behind a proxy every session's URL names the
		// host behind it, and one line says so.
		c.foreignURL.Do(func() {
			c.log.Warn("HPP session_url is not on the Klarna host hppd is configured for (a proxy in between?); using the documented path on the configured host",
				"hpp_session_id", id, "base_url", c.base)
		})
	}
	return "/hpp/v1/sessions/" + url.PathEscape(id)
}

// call is one logical Klarna call.
type call struct {
	op     string
	method string
	path   string // escaped path, e.g. "/hpp/v1/sessions/abc"
	body   []byte // nil for no body
	key    string // Klarna-Idempotency-Key, "" for none
	out    any    // decoded from a 2xx body when non-nil
	// usable, when set, checks the decoded out; an error makes the answer
	// unusable (ErrUnusableAnswer).
	usable func() error
	secret string // a token in the path, scrubbed from Klarna's messages
	// strays collects the session_id an error answer of a session creation
	// carried: the session may exist although the attempt failed.
	strays []string
}

// resendable reports whether the call may be sent again after a transient
// failure: reads, writes that carry an idempotency key, and session
// creation (a stray unpaid session is harmless, a lost checkout is not;
// FACTS 8.5: a 429 processed nothing).
func (cl *call) resendable() bool {
	return cl.method == http.MethodGet || cl.key != "" || cl.op == OpCreateKPSession || cl.op == OpCreateHPPSession
}

// bucketsFor returns the buckets a call of op takes a token from, in order.
// A token order takes one of its own category and one of "other": whichever
// way Klarna counts it, neither of its limits is exceeded.
func (c *Client) bucketsFor(op string) []*bucket {
	switch op {
	case OpCreateKPSession:
		return []*bucket{c.kpLim}
	case OpCreateHPPSession:
		return []*bucket{c.hppLim}
	case OpCreateTokenOrder:
		return []*bucket{c.tokenLim, c.otherLim}
	}
	return []*bucket{c.otherLim}
}

// do runs cl, resending it where allowed.
func (c *Client) do(ctx context.Context, cl *call) error {
	if !cleanPath(cl.path) {
		// An id of "." or ".." passes url.PathEscape unchanged and would
		// name another resource at Klarna: refused before any request.
		return fmt.Errorf("klarna %s: %w: an id in the path %q is empty, \".\" or \"..\"", cl.op, ErrInvalidRequest, cl.path)
	}
	attempts := 1
	if cl.resendable() {
		attempts = c.attempts
	}
	for n := 1; ; n++ {
		err := c.attempt(ctx, cl, n)
		if err == nil {
			return nil
		}
		e := asError(err)
		if e != nil {
			e.Attempt = n
		}
		if n >= attempts || e == nil || !e.transient() || ctx.Err() != nil || e.RetryAfter > c.maxRA {
			return err
		}
		d := c.backoff(n, e.RetryAfter)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= d {
			return err
		}
		if c.sleep(ctx, d) != nil {
			return err
		}
	}
}

// backoff returns the delay before resend number n (1-based): full jitter
// over BackoffBase·2^(n-1) (at most BackoffMax), or retryAfter when that is
// longer (the caller refuses a retryAfter over MaxRetryAfter).
func (c *Client) backoff(n int, retryAfter time.Duration) time.Duration {
	ceil := c.boBase
	for i := 1; i < n && ceil < c.boMax && ceil <= math.MaxInt64/2; i++ {
		ceil *= 2
	}
	ceil = min(ceil, c.boMax)
	d := time.Duration(rand.Int64N(int64(ceil) + 1))
	return max(min(d, c.boMax), retryAfter)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attempt sends cl once.
func (c *Client) attempt(ctx context.Context, cl *call, n int) (err error) {
	var status int
	prio := urgent(ctx, cl.op)
	for _, b := range c.bucketsFor(cl.op) {
		if err := b.wait(ctx, prio); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return &Error{Op: cl.op, Err: fmt.Errorf("rate limiter: %w", err)}
		}
		prio = true // the second bucket of a token order: it already waited its turn
	}
	start := time.Now()
	var corrID string
	defer func() {
		d := time.Since(start)
		if c.observe != nil {
			c.observe(cl.op, status, d, err)
		}
		attrs := []slog.Attr{
			slog.String("op", cl.op),
			slog.Int("attempt", n),
			slog.Int("status", status),
			slog.Duration("duration", d),
		}
		if corrID != "" {
			attrs = append(attrs, slog.String("correlation_id", corrID))
		}
		if err != nil {
			attrs = append(attrs, slog.String("error", err.Error()))
		}
		c.log.LogAttrs(ctx, slog.LevelDebug, "klarna call", attrs...)
	}()

	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, c.base+cl.path, body)
	if err != nil {
		// Only a malformed base or path gets here; the URL holds tokens,
		// so it is not repeated.
		return fmt.Errorf("%w: %s: cannot build request", ErrInvalidRequest, cl.op)
	}
	req.SetBasicAuth(c.username, c.password)
	req.Header.Set("User-Agent", c.userAgent)
	if cl.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.out != nil {
		req.Header.Set("Accept", "application/json")
	}
	if cl.key != "" {
		req.Header.Set(IdempotencyKeyHeader, cl.key)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return &Error{Op: cl.op, Err: transportCause(err)}
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	corrID = resp.Header.Get(CorrelationIDHeader)

	if status < 200 || status > 299 {
		e := &Error{Op: cl.op, HTTPStatus: status, CorrelationID: corrID}
		var eb ErrorBody
		if json.Unmarshal(raw, &eb) == nil {
			e.Code = eb.ErrorCode
			e.Messages = scrub(eb.ErrorMessages, cl.secret)
			if eb.CorrelationID != "" {
				e.CorrelationID = eb.CorrelationID
			}
		}
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			e.RetryAfter = retryAfter(resp.Header, time.Now())
		}
		if cl.op == OpCreateHPPSession && status >= 500 {
			var created struct {
				SessionID string `json:"session_id"`
			}
			if json.Unmarshal(raw, &created) == nil && created.SessionID != "" {
				cl.strays = append(cl.strays, created.SessionID)
			}
		}
		corrID = e.CorrelationID
		return e
	}
	if readErr != nil {
		return &Error{Op: cl.op, HTTPStatus: status, CorrelationID: corrID, Err: fmt.Errorf("read response: %w", transportCause(readErr))}
	}
	if len(raw) > maxResponseBody {
		return &Error{Op: cl.op, HTTPStatus: status, CorrelationID: corrID, Err: fmt.Errorf("response body over %d bytes", maxResponseBody)}
	}
	if cl.out != nil {
		if err := json.Unmarshal(raw, cl.out); err != nil {
			return &Error{Op: cl.op, HTTPStatus: status, CorrelationID: corrID, Err: fmt.Errorf("%w: decode response: %w", ErrUnusableAnswer, err)}
		}
		if cl.usable != nil {
			if err := cl.usable(); err != nil {
				return &Error{Op: cl.op, HTTPStatus: status, CorrelationID: corrID, Err: fmt.Errorf("%w: %w", ErrUnusableAnswer, err)}
			}
		}
	}
	return nil
}

// transportCause strips the *url.Error wrapper, whose text holds the request
// URL and so the tokens in its path.
func transportCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// scrub replaces a path token that Klarna might echo in its messages.
func scrub(msgs []string, secret string) []string {
	if secret == "" || len(msgs) == 0 {
		return msgs
	}
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = strings.ReplaceAll(m, secret, "<redacted>")
	}
	return out
}

// cleanPath reports whether an API path (before any query) has no empty,
// "." or ".." segment after its leading slash.
func cleanPath(p string) bool {
	p, _, _ = strings.Cut(p, "?")
	for _, seg := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
