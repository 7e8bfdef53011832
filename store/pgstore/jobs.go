package pgstore

import (
	"context"
	"fmt"
	"time"

	json "github.com/go-json-experiment/json/v1"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/jackc/pgx/v5"
)

// jobCols are what scanJob reads.
const jobCols = `body, lease_owner, lease_token, lease_until`

func checkJob(j *core.Job) error {
	if j == nil {
		return fmt.Errorf("store: put job: nil")
	}
	if err := store.CheckID("id", j.ID); err != nil {
		return err
	}
	if j.Kind == "" || len(j.Kind) > 64 {
		return core.Invalid("kind", "is required (at most 64 bytes)")
	}
	return nil
}

// jobBody encodes j without its lease: the lease lives in the columns.
func jobBody(j *core.Job) ([]byte, error) {
	c := *j
	c.Lease = core.Lease{}
	return encode("job", j.ID, &c)
}

func decodeJob(body []byte, owner string, token, until int64) (*core.Job, error) {
	var j core.Job
	if err := json.Unmarshal(body, &j); err != nil {
		return nil, err
	}
	j.Lease = core.Lease{Owner: owner, Token: uint64(token), Until: leaseTime(until)}
	return &j, nil
}

// jobRow reads a job's row under the lock of job id.
func (tx *Tx) jobRow(id, sql string, args ...any) (*core.Job, error) {
	var body []byte
	var owner string
	var token, until int64
	if err := tx.lockedRow(key(lockJob, id), sql, args, &body, &owner, &token, &until); err != nil {
		return nil, err
	}
	return decodeJob(body, owner, token, until)
}

// Job returns the job with id, or core.ErrNotFound. In a read-write
// transaction it also takes the job's row lock, which ClaimDueJobsOf (no
// key locks) skips: no batch claim leases the job between this read and
// the transaction's write of it.
func (tx *Tx) Job(id string) (*core.Job, error) {
	sql := `SELECT ` + jobCols + ` FROM jobs WHERE id = $1`
	if tx.rw {
		sql += ` FOR UPDATE`
	}
	j, err := tx.jobRow(id, sql, id)
	if err != nil && !core.IsNotFound(err) {
		return nil, fmt.Errorf("store: job %s: %w", id, err)
	}
	return j, err
}

// AddJob inserts j unless a job with j.ID exists: one INSERT … ON CONFLICT
// DO NOTHING, so concurrent adders on any replica make one job.
func (tx *Tx) AddJob(j *core.Job) (bool, error) {
	if err := checkJob(j); err != nil {
		return false, err
	}
	body, err := jobBody(j)
	if err != nil {
		return false, err
	}
	tag, err := tx.lockedExec(key(lockJob, j.ID), `INSERT INTO jobs (id, kind, due, lease_owner, lease_token, lease_until, body, session_id, charge_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING`,
		j.ID, string(j.Kind), ns(j.Due()), j.Lease.Owner, int64(j.Lease.Token), ns(j.Lease.Until), body, j.SessionID, j.ChargeID)
	if err != nil {
		return false, fmt.Errorf("store: add job %s: %w", j.ID, err)
	}
	if tag.RowsAffected() == 1 {
		tx.jobs = true
	}
	return tag.RowsAffected() == 1, nil
}

// PutJob inserts or replaces j whatever its lease.
func (tx *Tx) PutJob(j *core.Job) error {
	if err := checkJob(j); err != nil {
		return err
	}
	body, err := jobBody(j)
	if err != nil {
		return err
	}
	_, err = tx.lockedExec(key(lockJob, j.ID), `INSERT INTO jobs (id, kind, due, lease_owner, lease_token, lease_until, body, session_id, charge_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (id) DO UPDATE SET kind = $2, due = $3, lease_owner = $4, lease_token = $5, lease_until = $6, body = $7,
			session_id = $8, charge_id = $9`,
		j.ID, string(j.Kind), ns(j.Due()), j.Lease.Owner, int64(j.Lease.Token), ns(j.Lease.Until), body, j.SessionID, j.ChargeID)
	if err != nil {
		return fmt.Errorf("store: put job %s: %w", j.ID, err)
	}
	tx.jobs = true
	return nil
}

// DeleteJob removes a job whatever its lease.
func (tx *Tx) DeleteJob(id string) error {
	if _, err := tx.lockedExec(key(lockJob, id), `DELETE FROM jobs WHERE id = $1`, id); err != nil {
		return fmt.Errorf("store: delete job %s: %w", id, err)
	}
	return nil
}

// JobsDue returns the jobs due at or before now, earliest first, at most
// limit (<= 0: all), from the jobs_due index.
func (tx *Tx) JobsDue(now time.Time, limit int) ([]*core.Job, error) {
	var jobs []*core.Job
	err := tx.rows(`SELECT `+jobCols+` FROM jobs WHERE due <= $1 ORDER BY due, id LIMIT $2`,
		[]any{ns(now), sqlLimit(limit)}, func(r pgx.Rows) error {
			var body []byte
			var owner string
			var token, until int64
			if err := r.Scan(&body, &owner, &token, &until); err != nil {
				return err
			}
			j, err := decodeJob(body, owner, token, until)
			if err != nil {
				return err
			}
			jobs = append(jobs, j)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("store: jobs due: %w", err)
	}
	return jobs, nil
}

// DueJobIDs calls fn with the id of every job due at or before now,
// earliest first, until fn returns false; next is the first due time after
// now (zero when none, or when fn stopped).
func (tx *Tx) DueJobIDs(now time.Time, fn func(id string) bool) (next time.Time, err error) {
	var ids []string
	err = tx.rows(`SELECT id FROM jobs WHERE due <= $1 ORDER BY due, id`, []any{ns(now)}, func(r pgx.Rows) error {
		var id string
		if err := r.Scan(&id); err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("store: due jobs: %w", err)
	}
	for _, id := range ids {
		if !fn(id) {
			return time.Time{}, nil
		}
	}
	var min *int64
	if err := tx.row(`SELECT min(due) FROM jobs WHERE due > $1`, []any{ns(now)}, &min); err != nil {
		return time.Time{}, fmt.Errorf("store: next job due: %w", err)
	}
	if min == nil {
		return time.Time{}, nil
	}
	return timeOf(*min), nil
}

// NextJobDue returns the earliest due time of all jobs.
func (tx *Tx) NextJobDue() (time.Time, bool) {
	var min *int64
	if err := tx.row(`SELECT min(due) FROM jobs`, nil, &min); err != nil || min == nil {
		return time.Time{}, false
	}
	return timeOf(*min), true
}

// AllJobs calls fn with every job in id order.
func (tx *Tx) AllJobs(fn func(*core.Job) error) error {
	after := ""
	for {
		var jobs []*core.Job
		err := tx.rows(`SELECT id, `+jobCols+` FROM jobs WHERE id > $1 ORDER BY id LIMIT $2`, []any{after, pageSize}, func(r pgx.Rows) error {
			var id, owner string
			var body []byte
			var token, until int64
			if err := r.Scan(&id, &body, &owner, &token, &until); err != nil {
				return err
			}
			j, err := decodeJob(body, owner, token, until)
			if err != nil {
				return fmt.Errorf("job %s: %w", id, err)
			}
			jobs = append(jobs, j)
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: read jobs: %w", err)
		}
		for _, j := range jobs {
			if err := fn(j); err != nil {
				return err
			}
			after = j.ID
		}
		if len(jobs) < pageSize {
			return nil
		}
	}
}

// Leases (store's rules). A claim is one UPDATE whose WHERE is the claim's
// condition (not held at now; for ClaimDueJob, due at now), under the job's
// key lock: of concurrent claimers on any replica one updates the row and
// the others, which waited for it, find it held. The token grows in
// the row (lease_token + 1) and is kept when a lease ends. A result is one
// statement fenced by WHERE on the exact lease and its expiry: no row
// matched is store.ErrLeaseLost, and nothing was written.

// ClaimJob leases job id to owner until now+ttl.
func (tx *Tx) ClaimJob(id, owner string, now time.Time, ttl time.Duration) (*core.Job, error) {
	return tx.claimJob(id, owner, now, ttl, false)
}

// ClaimDueJob is ClaimJob for a job that must still be due at now.
func (tx *Tx) ClaimDueJob(id, owner string, now time.Time, ttl time.Duration) (*core.Job, error) {
	return tx.claimJob(id, owner, now, ttl, true)
}

func (tx *Tx) claimJob(id, owner string, now time.Time, ttl time.Duration, dueOnly bool) (*core.Job, error) {
	if owner == "" || ttl <= 0 {
		return nil, fmt.Errorf("store: claim job %s: no owner or lease length", id)
	}
	until := ns(now.Add(ttl))
	j, err := tx.jobRow(id, `UPDATE jobs SET lease_owner = $2, lease_token = lease_token + 1, lease_until = $3, due = $3
		WHERE id = $1 AND NOT (lease_owner <> '' AND lease_until > $4) AND (NOT $5 OR due <= $4)
		RETURNING `+jobCols, id, owner, until, ns(now), dueOnly)
	if err == nil || !core.IsNotFound(err) {
		if err != nil {
			return nil, fmt.Errorf("store: claim job %s: %w", id, err)
		}
		return j, nil
	}
	// Nothing updated: say why.
	old, err := tx.Job(id)
	if err != nil {
		return nil, err
	}
	if old.Lease.Held(now) {
		return nil, store.ErrLeaseHeld
	}
	return nil, store.ErrNotDue
}

// fence is the WHERE of a result under lease l at now.
const fence = `id = $1 AND lease_owner = $2 AND lease_owner <> '' AND lease_token = $3 AND lease_until = $4 AND lease_until > $5`

func fenceArgs(j *core.Job, now time.Time) []any {
	return []any{j.ID, j.Lease.Owner, int64(j.Lease.Token), ns(j.Lease.Until), ns(now)}
}

// UpdateJob writes j keeping its lease.
func (tx *Tx) UpdateJob(j *core.Job, now time.Time) error {
	if err := checkJob(j); err != nil {
		return err
	}
	body, err := jobBody(j)
	if err != nil {
		return err
	}
	tag, err := tx.lockedExec(key(lockJob, j.ID), `UPDATE jobs SET kind = $6, body = $7, session_id = $8, charge_id = $9 WHERE `+fence,
		append(fenceArgs(j, now), string(j.Kind), body, j.SessionID, j.ChargeID)...)
	if err != nil {
		return fmt.Errorf("store: update job %s: %w", j.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrLeaseLost
	}
	return nil
}

// ReleaseJob writes j with its lease ended, due at j.DueAt.
func (tx *Tx) ReleaseJob(j *core.Job, now time.Time) error {
	if err := checkJob(j); err != nil {
		return err
	}
	body, err := jobBody(j)
	if err != nil {
		return err
	}
	tag, err := tx.lockedExec(key(lockJob, j.ID), `UPDATE jobs SET kind = $6, body = $7, due = $8, lease_owner = '', lease_until = 0,
		session_id = $9, charge_id = $10 WHERE `+fence,
		append(fenceArgs(j, now), string(j.Kind), body, ns(j.DueAt), j.SessionID, j.ChargeID)...)
	if err != nil {
		return fmt.Errorf("store: release job %s: %w", j.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrLeaseLost
	}
	j.Lease = core.Lease{Token: j.Lease.Token}
	return nil
}

// CompleteJob deletes j under its lease.
func (tx *Tx) CompleteJob(j *core.Job, now time.Time) error {
	if j == nil {
		return fmt.Errorf("store: job result: nil job")
	}
	tag, err := tx.lockedExec(key(lockJob, j.ID), `DELETE FROM jobs WHERE `+fence, fenceArgs(j, now)...)
	if err != nil {
		return fmt.Errorf("store: complete job %s: %w", j.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrLeaseLost
	}
	return nil
}

// ClaimDueJobs leases to owner, until now+ttl, up to limit jobs due at now,
// earliest first, in one statement of its own transaction: FOR UPDATE SKIP
// LOCKED on the jobs_due index, so claimers on several replicas take
// different jobs without waiting on each other, and a job whose lease
// expired is simply due again. It is what a job runner on this store uses
// instead of a due-scan followed by one ClaimDueJob per id.
func (db *DB) ClaimDueJobs(owner string, now time.Time, ttl time.Duration, limit int) ([]*core.Job, error) {
	jobs, _, err := db.ClaimDueJobsOf(nil, true, owner, now, ttl, limit)
	return jobs, err
}

// ClaimDueJobsOf is ClaimDueJobs for the jobs whose kind is one of kinds
// or, with except, none of them: the jobs of one of a runner's lanes. When
// fewer than limit were due, next is the earliest due time after now among
// those jobs (zero when there is none); when limit were taken it is zero,
// as more may be due. Jobs returned with an error are leased to owner
// all the same.
//
// The statement takes row locks only, no key locks (locks.go): it changes
// nothing but a job's lease columns and due time, every writer that depends
// on a job's lease says so in its WHERE (claims, fenced results), and a
// transaction that read a job to write it back holds its row lock (Job),
// which SKIP LOCKED passes over.
func (db *DB) ClaimDueJobsOf(kinds []core.JobKind, except bool, owner string, now time.Time, ttl time.Duration, limit int) (jobs []*core.Job, next time.Time, err error) {
	if owner == "" || ttl <= 0 || limit <= 0 {
		return nil, time.Time{}, fmt.Errorf("store: claim due jobs: no owner, lease length or limit")
	}
	if db.closed.Load() {
		return nil, time.Time{}, store.ErrClosed
	}
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = string(k)
	}
	ctx := context.Background()
	rows, err := db.pool.Query(ctx, `UPDATE jobs j
		SET lease_owner = $1, lease_token = j.lease_token + 1, lease_until = $2, due = $2
		FROM (SELECT id FROM jobs WHERE due <= $3 AND (kind = ANY($5)) <> $6
			ORDER BY due, id LIMIT $4 FOR UPDATE SKIP LOCKED) d
		WHERE j.id = d.id
		RETURNING j.body, j.lease_owner, j.lease_token, j.lease_until`,
		owner, ns(now.Add(ttl)), ns(now), limit, names, except)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("store: claim due jobs: %w", err)
	}
	for rows.Next() {
		var body []byte
		var o string
		var token, until int64
		if err := rows.Scan(&body, &o, &token, &until); err != nil {
			rows.Close()
			return nil, time.Time{}, fmt.Errorf("store: claim due jobs: %w", err)
		}
		j, err := decodeJob(body, o, token, until)
		if err != nil {
			rows.Close()
			return nil, time.Time{}, fmt.Errorf("store: claim due jobs: %w", err)
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, fmt.Errorf("store: claim due jobs: %w", err)
	}
	if len(jobs) == limit {
		return jobs, time.Time{}, nil
	}
	var min *int64
	if err := db.pool.QueryRow(ctx, `SELECT min(due) FROM jobs WHERE due > $1 AND (kind = ANY($2)) <> $3`,
		ns(now), names, except).Scan(&min); err != nil {
		// The jobs are leased to owner: they go back with the error.
		return jobs, time.Time{}, fmt.Errorf("store: next job due: %w", err)
	}
	if min != nil {
		next = timeOf(*min)
	}
	return jobs, next, nil
}

// AcquireLease takes the named lease: one upsert that replaces only a lease
// not in force at now.
func (tx *Tx) AcquireLease(name, owner string, now time.Time, ttl time.Duration) (core.Lease, error) {
	if err := store.CheckID("lease", name); err != nil {
		return core.Lease{}, err
	}
	if owner == "" || ttl <= 0 {
		return core.Lease{}, fmt.Errorf("store: acquire lease %s: no owner or lease length", name)
	}
	var token, until int64
	err := tx.lockedRow(key(lockLease, name), `INSERT INTO leases AS l (name, owner, token, until) VALUES ($1, $2, 1, $3)
		ON CONFLICT (name) DO UPDATE SET owner = $2, token = l.token + 1, until = $3 WHERE NOT (l.until > $4)
		RETURNING token, until`, []any{[]byte(name), owner, ns(now.Add(ttl)), ns(now)}, &token, &until)
	if core.IsNotFound(err) {
		return core.Lease{}, store.ErrLeaseHeld
	}
	if err != nil {
		return core.Lease{}, fmt.Errorf("store: acquire lease %s: %w", name, err)
	}
	return core.Lease{Owner: owner, Token: uint64(token), Until: leaseTime(until)}, nil
}

// Lease returns the named lease as stored (zero when none).
func (tx *Tx) Lease(name string) (core.Lease, error) {
	var owner string
	var token, until int64
	err := tx.lockedRow(key(lockLease, name), `SELECT owner, token, until FROM leases WHERE name = $1`, []any{[]byte(name)}, &owner, &token, &until)
	if core.IsNotFound(err) {
		return core.Lease{}, nil
	}
	if err != nil {
		return core.Lease{}, fmt.Errorf("store: lease %s: %w", name, err)
	}
	return core.Lease{Owner: owner, Token: uint64(token), Until: leaseTime(until)}, nil
}

// ReleaseLease ends the named lease l; the row goes with it, as in
// boltstore.
func (tx *Tx) ReleaseLease(name string, l core.Lease) error {
	tag, err := tx.lockedExec(key(lockLease, name), `DELETE FROM leases WHERE name = $1 AND owner = $2 AND owner <> '' AND token = $3 AND until = $4`,
		[]byte(name), l.Owner, int64(l.Token), ns(l.Until))
	if err != nil {
		return fmt.Errorf("store: release lease %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrLeaseLost
	}
	return nil
}
