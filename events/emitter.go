package events

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
)

// Event types.
const (
	SessionAuthorized   = "session.authorized"
	SessionOrderPlaced  = "session.order_placed"
	SessionCancelled    = "session.cancelled"
	SessionExpired      = "session.expired"
	SessionFailed       = "session.failed"
	ChargeCharged       = "charge.charged"
	ChargeFallback      = "charge.fallback"
	ChargeRecovered     = "charge.recovered"
	ChargeNeedsCustomer = "charge.needs_customer"
	ChargeFailed        = "charge.failed"
	// A fraud review outcome read from Order Management (the resource's
	// fraud_status says which).
	SessionFraudStatusChanged = "session.fraud_status_changed"
	ChargeFraudStatusChanged  = "charge.fraud_status_changed"
)

// SessionTypes and ChargeTypes list the event types of each resource.
var (
	SessionTypes = []string{SessionAuthorized, SessionOrderPlaced, SessionCancelled, SessionExpired, SessionFailed, SessionFraudStatusChanged}
	ChargeTypes  = []string{ChargeCharged, ChargeFallback, ChargeRecovered, ChargeNeedsCustomer, ChargeFailed, ChargeFraudStatusChanged}
)

// Event is the JSON body of every delivery. Data is the resource as hppd's API
// returns it at Timestamp: an api.Session for "session.*" types, an api.Charge
// for "charge.*" types.
type Event struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// JobIDPrefix starts the id of every deliver_event job; the rest is the
// message id sent as webhook-id.
const JobIDPrefix = string(core.JobDeliverEvent) + "/"

// DefaultSchedule is the retry schedule of Options.Schedule, after Standard
// Webhooks' example schedule (its first seven delays).
var DefaultSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// Defaults of Options, and limits.
const (
	// DefaultJitter adds up to 10% to each scheduled delay.
	DefaultJitter = 0.1
	// DefaultTimeout bounds one delivery attempt.
	DefaultTimeout = 10 * time.Second
	// maxRetryAfter caps a receiver's Retry-After.
	maxRetryAfter = 24 * time.Hour
	// maxDrain is how much of a response body is read (and discarded) so the
	// connection can be reused.
	maxDrain  = 64 << 10
	userAgent = "hppd-events/1"
)

// Options tune an Emitter.
type Options struct {
	// HTTPClient sends deliveries (default: a client with no overall timeout;
	// each attempt is bounded by Timeout). Redirects are never followed
	// whatever its CheckRedirect says: a 3xx is a failed attempt.
	HTTPClient *http.Client
	// Now is the clock of webhook-timestamp (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
	// Schedule is the delay before each retry of a failed delivery: after the
	// n-th failed attempt (n from 1) the next one waits Schedule[n-1] plus
	// jitter, or the receiver's Retry-After (capped at 24h) when that is
	// longer. When the schedule is used up the event is dropped. nil means
	// DefaultSchedule (eight attempts over about 27.6 hours); an empty,
	// non-nil slice means one attempt only.
	Schedule []time.Duration
	// Jitter adds a uniformly random fraction in [0, Jitter] of each delay
	// (so retries never come earlier than the schedule). 0 means
	// DefaultJitter; negative means none; more than 1 is 1.
	Jitter float64
	// Timeout bounds one attempt (default 10s).
	Timeout time.Duration
}

// Emitter turns state changes into storefront events (it implements
// hpp.Emitter). It is safe for concurrent use.
type Emitter struct {
	cfg       *Config
	client    *http.Client
	now       func() time.Time
	log       *slog.Logger
	schedule  []time.Duration
	jitter    float64
	timeout   time.Duration
	delivered atomic.Int64
	dropped   atomic.Int64
}

// New returns an Emitter for cfg (nil: no storefront gets events).
func New(cfg *Config, opts Options) *Emitter {
	e := &Emitter{cfg: cfg, now: opts.Now, log: opts.Logger, jitter: opts.Jitter, timeout: opts.Timeout}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("component", "events")
	e.schedule = append([]time.Duration{}, opts.Schedule...)
	if opts.Schedule == nil {
		e.schedule = append([]time.Duration{}, DefaultSchedule...)
	}
	switch {
	case e.jitter == 0:
		e.jitter = DefaultJitter
	case e.jitter < 0:
		e.jitter = 0
	case e.jitter > 1:
		e.jitter = 1
	}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	var c http.Client
	if opts.HTTPClient != nil {
		c = *opts.HTTPClient
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	e.client = &c
	return e
}

// Delivered counts events delivered (a 2xx answer) since New.
func (e *Emitter) Delivered() int64 { return e.delivered.Load() }

// Dropped counts events given up since New: the schedule was used up, or the
// storefront no longer has an endpoint.
func (e *Emitter) Dropped() int64 { return e.dropped.Load() }

// SessionEvent returns the outbox job of a session event, for the caller to
// write in the transaction of the change, so the payload is the session as it
// is in that transaction. A storefront without an endpoint gets none (nil).
// An unknown event type is an error (and so rolls back the change): it is a
// bug, not a state.
func (e *Emitter) SessionEvent(s *core.Session, eventType string, now time.Time) (*core.Job, error) {
	if !isOneOf(eventType, SessionTypes) {
		return nil, fmt.Errorf("emit %s for session %s: unknown session event type", eventType, s.ID)
	}
	if !e.cfg.Enabled(s.Storefront) {
		return nil, nil
	}
	j, err := newJob(s.Storefront, eventType, api.FromSession(s), now)
	if err != nil {
		return nil, fmt.Errorf("emit %s for session %s: %w", eventType, s.ID, err)
	}
	j.SessionID = s.ID
	return j, nil
}

// ChargeEvent returns the outbox job of a charge event, with the charge's
// fallback session sess (nil: none) as the API shows it; like SessionEvent,
// the caller writes it with the change.
func (e *Emitter) ChargeEvent(c *core.Charge, sess *core.Session, eventType string, now time.Time) (*core.Job, error) {
	if !isOneOf(eventType, ChargeTypes) {
		return nil, fmt.Errorf("emit %s for charge %s: unknown charge event type", eventType, c.ID)
	}
	if !e.cfg.Enabled(c.Storefront) {
		return nil, nil
	}
	j, err := newJob(c.Storefront, eventType, api.FromCharge(c, sess), now)
	if err != nil {
		return nil, fmt.Errorf("emit %s for charge %s: %w", eventType, c.ID, err)
	}
	j.ChargeID = c.ID
	return j, nil
}

func isOneOf(s string, list []string) bool {
	for _, v := range list {
		if s == v {
			return true
		}
	}
	return false
}

// newJob builds a deliver_event job carrying the exact payload bytes.
func newJob(storefront, eventType string, resource any, now time.Time) (*core.Job, error) {
	data, err := json.Marshal(resource)
	if err != nil {
		return nil, fmt.Errorf("encode resource: %w", err)
	}
	body, err := json.Marshal(Event{Type: eventType, Timestamp: now.UTC(), Data: data})
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return &core.Job{
		ID:         JobIDPrefix + NewMessageID(),
		Kind:       core.JobDeliverEvent,
		Storefront: storefront,
		EventType:  eventType,
		Request:    body,
		DueAt:      now,
		CreatedAt:  now,
	}, nil
}

// NewMessageID returns "msg_" and 26 random base32 characters (130 bits).
func NewMessageID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("events: crypto/rand: " + err.Error())
	}
	return "msg_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// DeliveryError is a failed delivery attempt that will be retried after
// RetryAfter (the hpp job runner reschedules by it). It never carries the
// endpoint's URL, the secret or the body.
type DeliveryError struct {
	MessageID  string
	Storefront string
	// StatusCode is the receiver's answer; 0 when there was none.
	StatusCode int
	// Err is why there was no answer (the endpoint URL stripped).
	Err   error
	after time.Duration
}

func (e *DeliveryError) Error() string {
	s := "deliver event " + e.MessageID + " to storefront " + e.Storefront + ": "
	switch {
	case e.StatusCode != 0:
		return s + "answered " + strconv.Itoa(e.StatusCode)
	case e.Err != nil:
		return s + e.Err.Error()
	}
	return s + "failed"
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// RetryAfter is the delay before the next attempt.
func (e *DeliveryError) RetryAfter() time.Duration { return e.after }

// Deliver runs one attempt of a deliver_event job: it POSTs the stored payload
// to the storefront's endpoint, signed at this attempt's time. nil means done
// (delivered, or given up and counted in Dropped); a *DeliveryError means try
// again after its RetryAfter.
func (e *Emitter) Deliver(ctx context.Context, j *core.Job) error {
	if j.Kind != core.JobDeliverEvent {
		return fmt.Errorf("deliver job %s: kind %s is not %s", j.ID, j.Kind, core.JobDeliverEvent)
	}
	msgID := strings.TrimPrefix(j.ID, JobIDPrefix)
	log := e.log.With("storefront", j.Storefront, "msg_id", msgID, "event_type", j.EventType, "attempt", j.Attempts+1)
	ep, ok := e.cfg.endpoint(j.Storefront)
	if !ok {
		e.dropped.Add(1)
		log.Error("event dropped: the storefront has no event endpoint any more")
		return nil
	}
	if !validMessageID(msgID) {
		e.dropped.Add(1)
		log.Error("event dropped: job id does not make a valid webhook-id")
		return nil
	}
	status, retryAfter, err := e.post(ctx, ep, msgID, j.Request)
	if err == nil && status >= 200 && status <= 299 {
		e.delivered.Add(1)
		log.Debug("event delivered", "status", status)
		return nil
	}
	derr := &DeliveryError{MessageID: msgID, Storefront: j.Storefront, StatusCode: status, Err: err}
	if j.Attempts >= len(e.schedule) {
		e.dropped.Add(1)
		log.Error("event dropped: delivery attempts used up", "endpoint_host", ep.host, "attempts", j.Attempts+1, "err", derr)
		return nil
	}
	derr.after = max(e.delay(j.Attempts), retryAfter)
	log.Warn("event delivery failed; will retry", "endpoint_host", ep.host, "retry_in", derr.after, "err", derr)
	return derr
}

// delay is the scheduled delay after failed attempt n+1, with jitter.
func (e *Emitter) delay(n int) time.Duration {
	d := e.schedule[n]
	if e.jitter > 0 && d > 0 {
		d += time.Duration(mrand.Float64() * e.jitter * float64(d))
	}
	return d
}

// post sends one signed attempt. It returns the status (0 without an answer),
// the receiver's Retry-After (0 if none), and why there was no answer.
func (e *Emitter) post(ctx context.Context, ep endpoint, msgID string, body []byte) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url.String(), bytes.NewReader(body))
	if err != nil {
		return 0, 0, errors.New("build request")
	}
	now := e.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderID, msgID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, signature(ep.key, msgID, now, body))
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, 0, stripURL(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"), now), nil
}

// stripURL drops the URL that net/http puts in its errors (its query may hold
// a token), keeping the operation and the cause.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("%s: timeout: %w", strings.ToLower(ue.Op), ue.Err)
		}
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

// retryAfter parses a Retry-After header (seconds or an HTTP date), capped.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
