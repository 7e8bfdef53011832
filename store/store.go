package store

import (
	"errors"
	"time"

	"github.com/hppd/hppd/core"
)

// Store is what the flows need of a store: transactions, and the secret of
// ids derived from Idempotency-Keys. Opening, closing, backups and checks
// belong to the implementation and are used by the wiring and admin tools,
// which know it.
type Store interface {
	// View runs fn in a read-only transaction: a consistent snapshot.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction of its own, durable before
	// Update returns; fn's error rolls everything back.
	Update(fn func(Tx) error) error
	// Batch is Update for functions that may share one transaction and one
	// durable commit with concurrent callers (group commit). fn may run
	// twice, so it must be idempotent; its error reaches its own caller
	// only. fn must not call View, Update or Batch itself.
	Batch(fn func(Tx) error) error
	// IDSecret returns the store's id secret (32 random bytes, made once,
	// the same for every handle on the store and after every restart).
	IDSecret() ([]byte, error)
}

// Tx is a transaction. Every getter returns a freshly decoded value the
// caller may keep and change. A Tx is valid only inside the function it was
// passed to. Missing records are core.ErrNotFound; bad input is a
// core.Error with code invalid.
type Tx interface {
	Sessions
	Charges
	Jobs
	Leases
	Records
	// Counts returns how many sessions are in each status, charges in each
	// status and jobs of each kind; every known status and kind is present.
	Counts() (sessions map[core.SessionStatus]int, charges map[core.ChargeStatus]int, jobs map[core.JobKind]int, err error)
	// RereadBacklog counts the routine re-reads due at now and not done:
	// sessions whose CheckAt has come and reread_session jobs due; oldest
	// is the earliest due time among them. Like SessionsDue it may count a
	// session whose due entry lags behind its CheckAt until the poller
	// re-files it.
	RereadBacklog(now time.Time) (n int, oldest time.Time, err error)
}

// Sessions are the session reads and writes of a Tx.
type Sessions interface {
	Session(id string) (*core.Session, error)
	SessionIDByHPP(hppSessionID string) (string, error)
	SessionIDByKP(kpSessionID string) (string, error)
	// PutSession writes s with everything derived from it (its lookups,
	// its due time, its listing entry, the status counters). It files the
	// due time exactly at s.CheckAt: writing an unchanged session re-files
	// one that PutSessionKeepDue (KeepDue) left earlier.
	PutSession(s *core.Session) error
	// SessionsDue returns the ids of every session whose CheckAt is at or
	// before now, once each, oldest due entry first, at most limit (<= 0: all).
	// It may also return sessions that are not due yet (a store's due index
	// may be a lower bound, see KeepDue): the caller reads each session,
	// skips one whose CheckAt is after now, and re-files it with PutSession.
	SessionsDue(now time.Time, limit int) ([]string, error)
	// OldestAuthorized is the AuthorizedAt of the oldest session authorized
	// and not yet ordered; false when there is none.
	OldestAuthorized() (time.Time, bool, error)
	// ListSessions lists a storefront's sessions newest first, with the
	// cursor of the next page ("" when none).
	ListSessions(q core.ListQuery) ([]*core.Session, string, error)
	// AllSessions calls fn with every session until fn fails.
	AllSessions(fn func(*core.Session) error) error
}

// KeepDue is implemented by a Tx whose due index may lag behind CheckAt.
// PutSessionKeepDue is PutSession, except that the session's old due time
// may stay in the index when s.CheckAt moves, so that SessionsDue returns
// the session early (and the poller re-files it) instead of every write
// deleting an index entry. SessionsDue still never misses a due session: a
// CheckAt that moves earlier is indexed at once, one that moves to zero
// leaves the index. The callback path, which moves CheckAt on every write,
// writes through PutSessionKeepDue.
type KeepDue interface {
	PutSessionKeepDue(s *core.Session) error
}

// PutSessionKeepDue writes s through tx's PutSessionKeepDue when it has
// one, and PutSession otherwise (a store whose due index is exact).
func PutSessionKeepDue(tx Tx, s *core.Session) error {
	if k, ok := tx.(KeepDue); ok {
		return k.PutSessionKeepDue(s)
	}
	return tx.PutSession(s)
}

// Charges are the charge reads and writes of a Tx.
type Charges interface {
	Charge(id string) (*core.Charge, error)
	PutCharge(c *core.Charge) error
	ListCharges(q core.ListQuery) ([]*core.Charge, string, error)
	AllCharges(fn func(*core.Charge) error) error
}

// Jobs are the outbox: jobs are written in the transaction of the change
// that calls for them and run later by whoever leases them (see Leases).
type Jobs interface {
	Job(id string) (*core.Job, error)
	// AddJob inserts j unless a job with j.ID exists (then false, and the
	// stored job is left alone). Job ids name what a job is for, so this is
	// what makes "one place_order job per session" hold across
	// transactions and processes.
	AddJob(j *core.Job) (bool, error)
	// PutJob inserts or replaces j, whatever its lease: for tools and for
	// jobs nobody runs. A job's runner records its results with
	// CompleteJob, UpdateJob and ReleaseJob instead.
	PutJob(j *core.Job) error
	// DeleteJob removes a job whatever its lease (absent: no error).
	DeleteJob(id string) error
	// JobsDue returns the jobs due at or before now (a held lease makes a
	// job due at its expiry), earliest first, at most limit (<= 0: all).
	JobsDue(now time.Time, limit int) ([]*core.Job, error)
	// DueJobIDs calls fn with the id of every job due at or before now,
	// earliest first, until fn returns false; next is when the first job
	// due after now falls due (zero: none, or fn stopped).
	DueJobIDs(now time.Time, fn func(id string) bool) (next time.Time, err error)
	// NextJobDue is the earliest due time of all jobs; false when none.
	NextJobDue() (time.Time, bool)
	// AllJobs calls fn with every job until fn fails; fn must not write jobs.
	AllJobs(fn func(*core.Job) error) error
}

// Records are callback marks, storefront idempotency records and customer
// token views.
type Records interface {
	SeenEvent(hppSessionID, eventID string) (bool, error)
	MarkEvent(hppSessionID, eventID string, at time.Time) error
	PruneEvents(before time.Time, limit int) (int, error)
	Idempotency(storefront, key string) (*core.IdempotencyRecord, error)
	PutIdempotency(r *core.IdempotencyRecord) error
	DeleteIdempotency(storefront, key string) error
	Token(storefront, customerToken string) (*core.TokenInfo, error)
	PutToken(t *core.TokenInfo) error
	TokenOwner(customerToken string) (string, error)
	SetTokenOwner(customerToken, storefront string) error
}

// Errors of the contract.
var (
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)
