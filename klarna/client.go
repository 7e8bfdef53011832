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
	// CreateSessionRate and OtherRate are the client-side limits in
	// requests/s of the two rate categories; defaults 40 and 200; <0
	// disables a limiter.
	CreateSessionRate, OtherRate float64
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
	createLim *rate.Limiter
	otherLim  *rate.Limiter
	log       *slog.Logger
	observe   func(op string, status int, d time.Duration, err error)

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
	var err error
	if c.createLim, err = limiter("CreateSessionRate", cfg.CreateSessionRate, DefaultCreateSessionRate); err != nil {
		return nil, err
	}
	if c.otherLim, err = limiter("OtherRate", cfg.OtherRate, DefaultOtherRate); err != nil {
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
}

// resendable reports whether the call may be sent again after a transient
// failure: reads, and writes that carry an idempotency key.
func (cl *call) resendable() bool {
	return cl.method == http.MethodGet || cl.key != ""
}

func (c *Client) limiterFor(op string) *rate.Limiter {
	if op == OpCreateKPSession || op == OpCreateHPPSession {
		return c.createLim
	}
	return c.otherLim
}

// do runs cl, resending it where allowed.
func (c *Client) do(ctx context.Context, cl *call) error {
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
		if n >= attempts || e == nil || !e.transient() || ctx.Err() != nil {
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
// over BackoffBase·2^(n-1), at least retryAfter, at most BackoffMax.
func (c *Client) backoff(n int, retryAfter time.Duration) time.Duration {
	ceil := c.boBase
	for i := 1; i < n && ceil < c.boMax && ceil <= math.MaxInt64/2; i++ {
		ceil *= 2
	}
	ceil = min(ceil, c.boMax)
	d := time.Duration(rand.Int64N(int64(ceil) + 1))
	d = max(d, retryAfter)
	return min(d, c.boMax)
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
	if err := c.limiterFor(cl.op).Wait(ctx); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return &Error{Op: cl.op, Err: fmt.Errorf("rate limiter: %w", err)}
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
