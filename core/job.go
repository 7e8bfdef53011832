package core

import (
	"math/rand/v2"
	"time"
)

// JobKind names what a job does.
type JobKind string

// Job kinds, in the order the worker runs due jobs (authorizations live 60
// minutes, so placing orders goes first).
const (
	JobPlaceOrder     JobKind = "place_order"
	JobSyncSession    JobKind = "sync_session"
	JobDisableSession JobKind = "disable_session"
	JobRetryCharge    JobKind = "retry_charge"
	JobDeliverEvent   JobKind = "deliver_event"
)

// JobRereadSession is the poller's routine re-read of a session with no news.
// JobSyncSession is the re-read that confirms what somebody claimed (a
// callback, a redirect, a completion seen without its token): it runs ahead
// of routine re-reads, in the job runner and at Klarna's rate limiter.
const JobRereadSession JobKind = "reread_session"

// Priority orders job kinds: lower runs first.
func (k JobKind) Priority() int {
	switch k {
	case JobPlaceOrder:
		return 0
	case JobSyncSession:
		return 1
	case JobDisableSession:
		return 2
	case JobRetryCharge:
		return 3
	case JobRereadSession:
		return 4
	}
	return 5
}

// RereadJobID is the id of the routine re-read of a session.
func RereadJobID(sessionID string) string { return string(JobRereadSession) + "/" + sessionID }

// Job is a durable side effect. It is written in the same transaction as the
// state change that needs it and removed in the same transaction as the state
// change its result causes.
type Job struct {
	ID        string  `json:"id"`
	Kind      JobKind `json:"kind"`
	SessionID string  `json:"session_id,omitempty"`
	ChargeID  string  `json:"charge_id,omitempty"`
	// Request is the exact body to send (place_order: persisted before the first
	// attempt and replayed byte for byte); IdempotencyKey goes with it.
	Request        []byte    `json:"request,omitempty"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	Storefront     string    `json:"storefront,omitempty"`
	EventType      string    `json:"event_type,omitempty"`
	Source         Source    `json:"source,omitempty"`
	DueAt          time.Time `json:"due_at"`
	CreatedAt      time.Time `json:"created_at"`
	Attempts       int       `json:"attempts"`
	LastError      string    `json:"last_error,omitempty"`
	LastAttemptAt  time.Time `json:"last_attempt_at,omitzero"`
	// Sent counts the attempts that may have reached Klarna (place_order): it
	// is committed before each call, so after a crash mid-call the next run
	// knows that Klarna may already have acted on an earlier one.
	Sent int `json:"sent,omitempty"`
	// Lease is who runs the job now (zero: nobody). While a lease holds,
	// the job is due at the lease's expiry instead of DueAt, so a job whose
	// runner died is simply due again when its lease expires.
	Lease Lease `json:"lease,omitzero"`
}

// Lease is a claim on a job or a named piece of work, kept in the store:
// Owner is the claiming process's id, Until its expiry and Token a fencing
// token that grows with every claim of the same job. A result commits only
// while the stored lease equals the one its runner got.
type Lease struct {
	Owner string    `json:"owner,omitempty"`
	Token uint64    `json:"token,omitempty"`
	Until time.Time `json:"until,omitzero"`
}

// Held reports whether l is a lease still in force at now.
func (l Lease) Held(now time.Time) bool { return l.Owner != "" && now.Before(l.Until) }

// Due is when j is due: the lease's expiry while it is leased, else DueAt.
func (j *Job) Due() time.Time {
	if j.Lease.Owner != "" {
		return j.Lease.Until
	}
	return j.DueAt
}

// Backoff is the delay before attempt n+1 of a job after n failures:
// exponential from base, capped, with full jitter on the upper half.
func Backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

// Failed records a failed attempt and schedules the next one.
func (j *Job) Failed(err string, now time.Time, delay time.Duration) {
	j.Attempts++
	j.LastError = err
	j.LastAttemptAt = now
	j.DueAt = now.Add(delay)
}
