package admin

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
)

// Backend is every admin operation. Local runs them on a store; Client asks
// the running daemon over its admin socket. Both give the same answers.
type Backend interface {
	// Sessions lists sessions newest first (see Query).
	Sessions(ctx context.Context, q Query) ([]Session, error)
	// Session returns one session; an unknown id is a core not_found error.
	Session(ctx context.Context, id string) (*Session, error)
	// Charges lists charges newest first (see Query).
	Charges(ctx context.Context, q Query) ([]Charge, error)
	// Charge returns one charge; an unknown id is a core not_found error.
	Charge(ctx context.Context, id string) (*Charge, error)
	// Jobs lists every job, earliest due first.
	Jobs(ctx context.Context) ([]Job, error)
	// RetryJob makes the job due now (and wakes a running job runner).
	RetryJob(ctx context.Context, id string) (*Job, error)
	// RetryFailingJobs does RetryJob for every job whose last attempt
	// failed, and returns them.
	RetryFailingJobs(ctx context.Context) ([]Job, error)
	// Backup writes a consistent copy of the data file to w.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	// Check verifies the data file (boltstore.DB.Check). A file that fails the
	// check is reported in CheckReport.Error; the error is for failing to
	// run the check at all.
	Check(ctx context.Context) (*CheckReport, error)
	// Source says where the data comes from, for people.
	Source() string
	// Live reports whether a running daemon answers (its job runner acts on
	// retries at once).
	Live() bool
	Close() error
}

// Query selects sessions or charges. An empty Storefront means all
// storefronts; an empty Status means any; Limit is 1..MaxLimit, 0 meaning
// DefaultLimit.
type Query struct {
	Storefront string
	Status     string
	Limit      int
}

// Limits of Query.Limit (those of the store's listings).
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// Session is a session as an operator sees it: the storefront API's resource
// plus the storefront, the masked customer token of a recovery purchase, the
// poller's next check and why hppd disabled it.
type Session struct {
	Storefront    string    `json:"storefront"`
	CustomerToken string    `json:"customer_token,omitempty"`
	CheckAt       time.Time `json:"check_at,omitzero"`
	DisableReason string    `json:"disable_reason,omitempty"`
	api.Session
}

// Charge is a charge as an operator sees it: the storefront API's resource
// (customer token masked) plus its storefront.
type Charge struct {
	Storefront string `json:"storefront"`
	api.Charge
}

// Job is a job record. Request is the stored request body: inline JSON when
// it is JSON, else a JSON string.
type Job struct {
	ID             string          `json:"id"`
	Kind           core.JobKind    `json:"kind"`
	SessionID      string          `json:"session_id,omitempty"`
	ChargeID       string          `json:"charge_id,omitempty"`
	Storefront     string          `json:"storefront,omitempty"`
	EventType      string          `json:"event_type,omitempty"`
	Source         core.Source     `json:"source,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	DueAt          time.Time       `json:"due_at"`
	CreatedAt      time.Time       `json:"created_at"`
	Attempts       int             `json:"attempts"`
	LastError      string          `json:"last_error,omitempty"`
	LastAttemptAt  time.Time       `json:"last_attempt_at,omitzero"`
	Request        json.RawMessage `json:"request,omitempty"`
}

// Failing reports whether the job's last attempt failed.
func (j *Job) Failing() bool { return j.LastError != "" }

// CheckReport is the outcome of checking the data file.
type CheckReport struct {
	Path     string `json:"path"`
	Sessions int    `json:"sessions"`
	Charges  int    `json:"charges"`
	Jobs     int    `json:"jobs"`
	// Error is empty when the file passed the check.
	Error string `json:"error,omitempty"`
}

// FromSession builds the operator's view of a session.
func FromSession(s *core.Session) Session {
	out := Session{
		Storefront: s.Storefront, CheckAt: s.CheckAt, DisableReason: s.DisableReason,
		Session: api.FromSession(s),
	}
	if s.CustomerToken != "" {
		out.CustomerToken = api.MaskToken(s.CustomerToken)
	}
	return out
}

// FromCharge builds the operator's view of a charge; sess is its fallback
// session, if any.
func FromCharge(c *core.Charge, sess *core.Session) Charge {
	return Charge{Storefront: c.Storefront, Charge: api.FromCharge(c, sess)}
}

// FromJob builds the view of a job record.
func FromJob(j *core.Job) Job {
	out := Job{
		ID: j.ID, Kind: j.Kind, SessionID: j.SessionID, ChargeID: j.ChargeID, Storefront: j.Storefront,
		EventType: j.EventType, Source: j.Source, IdempotencyKey: j.IdempotencyKey, DueAt: j.DueAt,
		CreatedAt: j.CreatedAt, Attempts: j.Attempts, LastError: j.LastError, LastAttemptAt: j.LastAttemptAt,
	}
	switch {
	case len(j.Request) == 0:
	case json.Valid(j.Request):
		out.Request = json.RawMessage(j.Request)
	default:
		out.Request, _ = json.Marshal(string(j.Request)) // a string always marshals
	}
	return out
}
