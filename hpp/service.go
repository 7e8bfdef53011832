package hpp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
)

// Klarna is what the flows need of Klarna's APIs (*klarna.Client has it).
type Klarna interface {
	CreateKPSession(ctx context.Context, req *klarna.KPSessionRequest) (*klarna.KPSession, error)
	ReadKPSession(ctx context.Context, id string) (*klarna.KPSessionRead, error)
	PlaceOrderRaw(ctx context.Context, authToken string, body []byte, idempotencyKey string) (*klarna.Order, error)
	CreateHPPSession(ctx context.Context, req *klarna.HPPSessionRequest) (*klarna.HPPSession, error)
	// The HPP session calls go to the session_url Klarna returned when it
	// is on the configured Klarna host (sessionURL "" builds the path).
	ReadHPPSessionAt(ctx context.Context, id, sessionURL string) (*klarna.HPPSessionStatus, error)
	DisableHPPSessionAt(ctx context.Context, id, sessionURL string) error
	ReadCustomerToken(ctx context.Context, token string) (*klarna.CustomerToken, error)
	CreateTokenOrderRaw(ctx context.Context, token string, body []byte, idempotencyKey string) (*klarna.Order, error)
	ReadOrder(ctx context.Context, orderID string) (*klarna.OMOrder, error)
	PaymentSessionURL(kpSessionID string) string
}

// Emitter turns state changes into storefront events. SessionEvent and
// ChargeEvent return the outbox job of an event (nil: none for that
// storefront), which the flows write in the transaction of the change, so
// the event commits with it; ChargeEvent gets the charge's fallback session
// (nil: none). Deliver runs a deliver_event job: nil removes the job, an
// error reschedules it (after RetryAfter() when the error has that method).
// A nil Emitter emits nothing.
type Emitter interface {
	SessionEvent(s *core.Session, eventType string, now time.Time) (*core.Job, error)
	ChargeEvent(c *core.Charge, sess *core.Session, eventType string, now time.Time) (*core.Job, error)
	Deliver(ctx context.Context, j *core.Job) error
}

// DefaultLeaseTTL is the default of Config.LeaseTTL: well above a Klarna
// call's timeout (20 s), well below an authorization's life (60 min).
const DefaultLeaseTTL = 2 * time.Minute

// Config configures the flows.
type Config struct {
	// PublicURL is where Klarna and shoppers reach hppd (no trailing slash).
	PublicURL string
	// DefaultMode is the place_order_mode of sessions that name none.
	DefaultMode string
	Policy      core.Policy
	// ChargeRetrySchedule: delays of the scheduled retries of a declined charge
	// with the customer absent (default 1h, 6h, 24h).
	ChargeRetrySchedule []time.Duration
	// PresentRetries: immediate retries of a declined charge with the customer
	// present (default 2), PresentRetryDelay apart (default 300ms).
	PresentRetries    int
	PresentRetryDelay time.Duration
	// JobBackoffBase and JobBackoffMax pace failing jobs (default 1s, 5m).
	JobBackoffBase, JobBackoffMax time.Duration
	// Workers runs at most this many jobs at once (default 8). The job
	// runner (Run) gives each of its lanes this many workers of its own:
	// urgent work (order placement, token charges, confirming re-reads),
	// routine work (the poller's re-reads, disables) and event delivery.
	Workers int
	// RereadRate caps the poller's routine re-reads in requests/s (the
	// HPPD_REREAD_SHARE of Klarna's "other" rate); 0 leaves them to the
	// Klarna client's limits alone.
	RereadRate float64
	// KlarnaTimeout bounds one job's Klarna call (default 20s).
	KlarnaTimeout time.Duration
	// Owner names this process in the store's leases (default: random,
	// new for every Service); LeaseTTL is how long a lease holds (default
	// DefaultLeaseTTL). A lease must outlast the work done under it (a
	// Klarna call, KlarnaTimeout) and is what a dead process's work waits
	// for before another process takes it over.
	Owner    string
	LeaseTTL time.Duration
	// FallbackWithin bounds how long a request retries creating a present
	// customer's fallback session before it answers "try again" (default
	// 10s, or the request's deadline when that is sooner).
	FallbackWithin time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
	Emitter        Emitter

	// Accounts are the Klarna accounts sessions and charges are routed to
	// by purchase country; none: the Klarna given to New is the only
	// account, named DefaultAccount.
	Accounts []Account
	// DefaultAccount serves records that name no account (written before
	// accounts existed); default: the account named DefaultAccount, else the
	// first.
	DefaultAccount string
	// StorefrontAccounts limits a storefront to the named accounts; a
	// storefront not in the map may use every account.
	StorefrontAccounts map[string][]string
	// ReadEvery: the Klarna reads of a session run one at a time, and
	// those shopper URLs (the redirects) ask for at most one per ReadEvery
	// (default DefaultReadEvery) on the Now clock; the others are answered
	// from what is on file and a re-read is scheduled for the end of the
	// interval.
	ReadEvery time.Duration
	// TokenSharing: the storefronts (values) that may read and charge the
	// customer tokens a storefront (key) owns. A token belongs to the
	// storefront that first charged it; no other sees it.
	TokenSharing map[string][]string
	// StorefrontShares caps a storefront's session creations, token reads
	// and token charges at this fraction (0 < x <= 1) of each Klarna
	// account's rate for them (shares.go); a storefront not in the map has
	// no cap of its own.
	StorefrontShares map[string]float64
}

func (c *Config) setDefaults() {
	if c.DefaultMode == "" {
		c.DefaultMode = core.ModeNone
	}
	if c.Policy.StaleAfter <= 0 && len(c.Policy.Schedule) > 0 {
		c.Policy.StaleAfter = c.Policy.Schedule[0]
	}
	if c.Policy.StaleAfter <= 0 {
		c.Policy.StaleAfter = core.DefaultPolicy.StaleAfter
	}
	if c.Policy.ExpiryMargin <= 0 {
		c.Policy.ExpiryMargin = core.DefaultPolicy.ExpiryMargin
	}
	if c.ChargeRetrySchedule == nil {
		c.ChargeRetrySchedule = []time.Duration{time.Hour, 6 * time.Hour, 24 * time.Hour}
	}
	if c.PresentRetries < 0 {
		c.PresentRetries = 0
	} else if c.PresentRetries == 0 {
		c.PresentRetries = 2
	}
	if c.PresentRetryDelay <= 0 {
		c.PresentRetryDelay = 300 * time.Millisecond
	}
	if c.JobBackoffBase <= 0 {
		c.JobBackoffBase = time.Second
	}
	if c.JobBackoffMax <= 0 {
		c.JobBackoffMax = 5 * time.Minute
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.KlarnaTimeout <= 0 {
		c.KlarnaTimeout = 20 * time.Second
	}
	if c.Owner == "" {
		c.Owner = newID("own_")
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.FallbackWithin <= 0 {
		c.FallbackWithin = 10 * time.Second
	}
	if c.ReadEvery <= 0 {
		c.ReadEvery = DefaultReadEvery
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
}

// Stats are counters of what the flows did since start, for metrics.
type Stats struct {
	OrdersPlaced      atomic.Int64
	OrdersFailed      atomic.Int64
	FallbacksStarted  atomic.Int64
	TokensRecovered   atomic.Int64
	CallbacksAccepted atomic.Int64
	CallbacksDup      atomic.Int64
	CallbacksRejected atomic.Int64
	CallbacksResync   atomic.Int64
	JobsFailed        atomic.Int64
	ChargeOutcomes    sync.Map // core.ChargeStatus → *atomic.Int64
	// OrdersIDUnknown counts orders recorded as placed whose id hppd could
	// not learn (session order_id_unknown).
	OrdersIDUnknown atomic.Int64
	// UnusablePlaceOrder and UnusableTokenOrder count 2xx order answers hppd
	// could not use (klarna.IsUnusableAnswer) of KP place order and of the
	// customer token order.
	UnusablePlaceOrder atomic.Int64
	UnusableTokenOrder atomic.Int64
}

func (s *Stats) chargeOutcome(st core.ChargeStatus) {
	v, _ := s.ChargeOutcomes.LoadOrStore(st, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Service runs hppd's flows over a store and Klarna.
type Service struct {
	db    store.Store
	acct  *accounts
	cfg   Config
	log   *slog.Logger
	Stats Stats

	wake   chan struct{}
	slots  chan struct{}
	jobsWG sync.WaitGroup

	// The job runner's state (runner.go): its lanes' feeds, the jobs each
	// lane has taken and not finished, and one dispatch at a time.
	lanes      atomic.Pointer[[numLanes]chan *core.Job]
	busy       [numLanes]atomic.Int32
	dispatchMu sync.Mutex
	freed      chan struct{}
	jobCtx     context.Context
	abortJobs  context.CancelFunc
	rereadLim  *rate.Limiter
	reads      readGate // one Klarna read of a session at a time, outside ones spaced

	// idSecret is the store's id secret (keyedID), read once.
	idSecret func() ([]byte, error)

	// shares are the storefronts' token buckets (shares.go).
	sharesMu sync.Mutex
	shares   map[shareKey]*shareLimiter
	// replicaShare is the part of the configured rates this process uses
	// (SetShare), as math.Float64bits; 0 until it is set (all of them).
	replicaShare atomic.Uint64
}

// New returns a Service.
func New(db store.Store, kl Klarna, cfg Config) *Service {
	cfg.setDefaults()
	s := &Service{
		db:    db,
		acct:  newAccounts(kl, cfg.Accounts, cfg.DefaultAccount, cfg.StorefrontAccounts),
		cfg:   cfg,
		log:   cfg.Logger.With("component", "hpp"),
		wake:  make(chan struct{}, 1),
		slots: make(chan struct{}, cfg.Workers),
		freed: make(chan struct{}, 1),
	}
	s.jobCtx, s.abortJobs = context.WithCancel(context.Background())
	s.idSecret = sync.OnceValues(func() ([]byte, error) { return db.IDSecret() })
	if cfg.RereadRate > 0 && !math.IsInf(cfg.RereadRate, 0) {
		s.rereadLim = rate.NewLimiter(rate.Limit(cfg.RereadRate), 1)
	}
	return s
}

// Config returns the effective configuration.
func (s *Service) Config() Config { return s.cfg }

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// newID returns prefix + 26 random base32 characters (130 bits).
func newID(prefix string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("hpp: crypto/rand: " + err.Error())
	}
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// keyedID derives the id of what a storefront request creates from its
// Idempotency-Key, so a retry after a crash finds the record the first
// attempt made instead of making (and charging) it again. The id is an
// HMAC-SHA256 under the data file's id secret (store.Store.IDSecret), so no one
// outside can compute it from a guessed key. exists reports whether a record
// has an id: a retry of a request begun before ids were HMACs finds its
// record under the id it got then (legacyKeyedID).
func (s *Service) keyedID(prefix, storefront, key string, exists func(id string) (bool, error)) (string, error) {
	secret, err := s.idSecret()
	if err != nil {
		return "", &core.Error{Code: core.CodeInternal, Message: "id secret", Err: err}
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(prefix + "\x00" + storefront + "\x00" + key))
	id := prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(m.Sum(nil)[:16]))
	if ok, err := exists(id); err != nil || ok {
		return id, err
	}
	legacy := legacyKeyedID(prefix, storefront, key)
	if ok, err := exists(legacy); err != nil || ok {
		return legacy, err
	}
	return id, nil
}

// legacyKeyedID is how ids were derived before they were HMACs: a plain
// hash anyone could compute. Only looked up, never given to a new record.
func legacyKeyedID(prefix, storefront, key string) string {
	h := sha256.Sum256([]byte(prefix + "\x00" + storefront + "\x00" + key))
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:16]))
}

// NewSecret returns a callback secret of 256 random bits and its hash.
func NewSecret() (secret string, hash []byte) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("hpp: crypto/rand: " + err.Error())
	}
	secret = base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(secret))
	return secret, h[:]
}

// SecretMatches compares a presented secret with a stored hash in constant time.
func SecretMatches(presented string, hash []byte) bool {
	h := sha256.Sum256([]byte(presented))
	return len(hash) == sha256.Size && subtle.ConstantTimeCompare(h[:], hash) == 1
}

func asKlarna(err error, target **klarna.Error) bool { return errors.As(err, target) }

// upstream wraps a Klarna failure for API clients: the message names the
// operation and Klarna's code, never a token.
func upstream(what string, err error) error {
	var ke *klarna.Error
	if errors.As(err, &ke) {
		msg := what + ": klarna answered"
		if ke.HTTPStatus != 0 {
			msg += " " + strconv.Itoa(ke.HTTPStatus)
		} else {
			msg = what + ": klarna did not answer"
		}
		if ke.Code != "" {
			msg += " " + ke.Code
		}
		if len(ke.Messages) > 0 {
			msg += " (" + strings.Join(ke.Messages, "; ") + ")"
		}
		code := core.CodeUpstream
		if klarna.IsTransient(err) {
			code = core.CodeUnavailable
		}
		return &core.Error{Code: code, Message: msg, Err: err}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &core.Error{Code: core.CodeUnavailable, Message: what + ": klarna did not answer in time", Err: err}
	}
	return &core.Error{Code: core.CodeInternal, Message: what + " failed", Err: err}
}

type requestIDKey struct{}

// WithRequestID returns a context whose log lines carry the HTTP request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// logger is the service's logger, with the request id of ctx when it has one.
func (s *Service) logger(ctx context.Context) *slog.Logger {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok && id != "" {
		return s.log.With("request_id", id)
	}
	return s.log
}

// Wake tells the job runner that a job may be due now.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
