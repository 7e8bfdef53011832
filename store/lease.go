package store

import (
	"errors"
	"time"

	"github.com/hppd/hppd/core"
)

// Leases: who runs a piece of work is decided in the store, never in a
// process's memory, so several processes can share a store and a process that
// dies loses its claims when they expire.
//
// A lease (core.Lease) has an owner (the claiming process's id, unique per
// process run), an expiry and a fencing token. The rules every
// implementation keeps:
//
//   - One holder: a claim succeeds only when no lease is in force (none, or
//     the last one expired); otherwise it fails with ErrLeaseHeld and
//     changes nothing. Claims are made in read-write transactions, which
//     isolate what they read by key, so two processes never both win one
//     claim.
//   - A job's claim moves its due time to the lease's expiry (Job.Due), so
//     a job whose runner died is simply due again when its lease expires,
//     and a due-scan never returns a job someone holds. Its own DueAt is
//     kept for when the lease ends without a result.
//   - Fencing: every claim of a job takes a token greater than the last
//     one's. A result (CompleteJob, UpdateJob, ReleaseJob, ReleaseLease)
//     commits only while the stored lease is exactly the one its runner got
//     and has not expired; otherwise it fails with ErrLeaseLost and the
//     transaction must not commit what depended on it (the flows return the
//     error from the transaction's function, which rolls it back). A
//     runner whose lease was lost thus never records a second result over
//     the one a later holder recorded.
//   - A lease costs a few bytes in the job's own record; a job written with
//     its lease already set (AddJob of a job whose Lease names the writer)
//     is claimed in the transaction that creates it, at no extra commit.
//   - Time: every method takes now from the caller, so one clock (the
//     flows' Now) decides expiry, and tests move it.
//   - An implementation may end leases earlier when it knows their owner is
//     gone: boltstore, whose file only one process can open, ends every
//     lease it finds at Open.
//
// The lease length is the caller's: well above the longest call a holder
// makes before it commits (a Klarna call is bounded at 20 s), well below
// what waiting for an expiry may cost (an authorization lives 60 minutes).
type Leases interface {
	// ClaimJob leases job id to owner until now+ttl, whether it is due or
	// not (a request that runs a job at once). It returns the job with its
	// new Lease; core.ErrNotFound when there is no such job.
	ClaimJob(id, owner string, now time.Time, ttl time.Duration) (*core.Job, error)
	// ClaimDueJob is ClaimJob for a job found by a due-scan: it fails with
	// ErrNotDue when the job is no longer due at now (another process ran
	// or rescheduled it since the scan).
	ClaimDueJob(id, owner string, now time.Time, ttl time.Duration) (*core.Job, error)
	// UpdateJob writes j, which its holder changed (a counter), keeping
	// the lease: ErrLeaseLost unless j.Lease is the stored lease, in force.
	UpdateJob(j *core.Job, now time.Time) error
	// ReleaseJob writes j with its lease ended, due at j.DueAt (a failed
	// attempt rescheduled): ErrLeaseLost as UpdateJob.
	ReleaseJob(j *core.Job, now time.Time) error
	// CompleteJob deletes j, its work done: ErrLeaseLost as UpdateJob, and
	// also when the job is gone.
	CompleteJob(j *core.Job, now time.Time) error

	// AcquireLease takes the named lease (work that is not a job: creating
	// a session, starting a fallback) for owner until now+ttl:
	// ErrLeaseHeld while another lease of that name is in force.
	AcquireLease(name, owner string, now time.Time, ttl time.Duration) (core.Lease, error)
	// Lease returns the named lease as stored (zero when none); it may
	// have expired.
	Lease(name string) (core.Lease, error)
	// ReleaseLease ends the named lease l: ErrLeaseLost unless it is the
	// stored lease (an expired one may still be released by its holder
	// while nobody took it since).
	ReleaseLease(name string, l core.Lease) error
}

// Errors of leases.
var (
	// ErrLeaseHeld: another owner holds a lease in force.
	ErrLeaseHeld = errors.New("store: lease held by another owner")
	// ErrLeaseLost: the caller's lease expired or was taken over; nothing
	// was written.
	ErrLeaseLost = errors.New("store: lease lost")
	// ErrNotDue: the job is not due (any more).
	ErrNotDue = errors.New("store: job not due")
)
