package boltstore

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	bolt "go.etcd.io/bbolt"
)

// Leases (the rules are store's). A job's lease is a field of its record, so
// a claim rewrites one small record and moves its jobs_due entry; the ids of
// leased jobs are also kept in job_leases, so that Open, which holds the
// file's exclusive lock and so knows every lease in it belongs to a process
// that is gone, ends them without reading every job (endLeases). Named
// leases are records of their own in leases.

// ClaimJob leases job id to owner until now+ttl (store.Leases).
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
	b, err := tx.bucket(bucketJobs)
	if err != nil {
		return nil, err
	}
	old, err := tx.jobAt(b, id)
	if err != nil {
		return nil, err
	}
	if old.Lease.Held(now) {
		return nil, store.ErrLeaseHeld
	}
	if dueOnly && old.Due().After(now) {
		return nil, store.ErrNotDue
	}
	j := *old
	j.Lease = core.Lease{Owner: owner, Token: old.Lease.Token + 1, Until: now.Add(ttl)}
	if err := tx.putJob(b, &j, old); err != nil {
		return nil, err
	}
	return &j, nil
}

// holding returns the stored job j's holder may write: ErrLeaseLost unless
// the stored lease is j.Lease and in force at now.
func (tx *Tx) holding(b *bolt.Bucket, j *core.Job, now time.Time) (*core.Job, error) {
	if j == nil {
		return nil, fmt.Errorf("store: job result: nil job")
	}
	old, err := tx.jobAt(b, j.ID)
	if core.IsNotFound(err) {
		return nil, store.ErrLeaseLost
	}
	if err != nil {
		return nil, err
	}
	if !sameLease(old.Lease, j.Lease) || !old.Lease.Held(now) {
		return nil, store.ErrLeaseLost
	}
	return old, nil
}

func sameLease(a, b core.Lease) bool {
	return a.Owner == b.Owner && a.Token == b.Token && a.Until.Equal(b.Until)
}

// UpdateJob writes j keeping its lease (store.Leases).
func (tx *Tx) UpdateJob(j *core.Job, now time.Time) error {
	if err := checkJob(j); err != nil {
		return err
	}
	b, err := tx.bucket(bucketJobs)
	if err != nil {
		return err
	}
	old, err := tx.holding(b, j, now)
	if err != nil {
		return err
	}
	return tx.putJob(b, j, old)
}

// ReleaseJob writes j with its lease ended (store.Leases).
func (tx *Tx) ReleaseJob(j *core.Job, now time.Time) error {
	if err := checkJob(j); err != nil {
		return err
	}
	b, err := tx.bucket(bucketJobs)
	if err != nil {
		return err
	}
	old, err := tx.holding(b, j, now)
	if err != nil {
		return err
	}
	nj := *j
	nj.Lease = core.Lease{Token: j.Lease.Token} // the next claim's token grows on
	if err := tx.putJob(b, &nj, old); err != nil {
		return err
	}
	*j = nj
	return nil
}

// CompleteJob deletes j under its lease (store.Leases).
func (tx *Tx) CompleteJob(j *core.Job, now time.Time) error {
	b, err := tx.bucket(bucketJobs)
	if err != nil {
		return err
	}
	if _, err := tx.holding(b, j, now); err != nil {
		return err
	}
	return tx.DeleteJob(j.ID)
}

// markLeased keeps job_leases: the ids of jobs whose record has a lease.
func (tx *Tx) markLeased(id string, was, is bool) error {
	if was == is {
		return nil
	}
	b, err := tx.bucket(bucketJobLeases)
	if err != nil {
		return err
	}
	if is {
		return b.Put([]byte(id), []byte{})
	}
	return b.Delete([]byte(id))
}

// endLeases ends every job lease in the file, each job due again at its own
// DueAt. Open runs it: bbolt's lock means no other process has the file, so
// every lease in it is a dead process's.
func (tx *Tx) endLeases() error {
	lb, err := tx.bucket(bucketJobLeases)
	if err != nil {
		return err
	}
	var ids []string
	if err := lb.ForEach(func(k, _ []byte) error { ids = append(ids, string(k)); return nil }); err != nil {
		return err
	}
	b, err := tx.bucket(bucketJobs)
	if err != nil {
		return err
	}
	for _, id := range ids {
		old, err := tx.jobAt(b, id)
		if core.IsNotFound(err) {
			if err := lb.Delete([]byte(id)); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		j := *old
		j.Lease = core.Lease{Token: old.Lease.Token}
		if err := tx.putJob(b, &j, old); err != nil {
			return err
		}
	}
	nb, err := tx.bucket(bucketLeases)
	if err != nil {
		return err
	}
	var names [][]byte
	if err := nb.ForEach(func(k, _ []byte) error { names = append(names, append([]byte(nil), k...)); return nil }); err != nil {
		return err
	}
	for _, k := range names {
		if err := nb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// AcquireLease takes the named lease (store.Leases).
func (tx *Tx) AcquireLease(name, owner string, now time.Time, ttl time.Duration) (core.Lease, error) {
	if err := store.CheckID("lease", name); err != nil {
		return core.Lease{}, err
	}
	if owner == "" || ttl <= 0 {
		return core.Lease{}, fmt.Errorf("store: acquire lease %s: no owner or lease length", name)
	}
	old, err := tx.Lease(name)
	if err != nil {
		return core.Lease{}, err
	}
	if old.Held(now) {
		return core.Lease{}, store.ErrLeaseHeld
	}
	l := core.Lease{Owner: owner, Token: old.Token + 1, Until: now.Add(ttl)}
	if err := tx.putLease(name, l); err != nil {
		return core.Lease{}, err
	}
	return l, nil
}

// Lease returns the named lease as stored (store.Leases).
func (tx *Tx) Lease(name string) (core.Lease, error) {
	b, err := tx.bucket(bucketLeases)
	if err != nil {
		return core.Lease{}, err
	}
	var l core.Lease
	if v := b.Get([]byte(name)); v != nil {
		if err := json.Unmarshal(v, &l); err != nil {
			return core.Lease{}, fmt.Errorf("store: lease %s: %w", name, err)
		}
	}
	return l, nil
}

// ReleaseLease ends the named lease l (store.Leases). The record goes with
// it: a later lease of the name starts its tokens again, and is told apart
// from l by its owner and expiry, which the fencing compares too.
func (tx *Tx) ReleaseLease(name string, l core.Lease) error {
	old, err := tx.Lease(name)
	if err != nil {
		return err
	}
	if old.Owner == "" || !sameLease(old, l) {
		return store.ErrLeaseLost
	}
	b, err := tx.bucket(bucketLeases)
	if err != nil {
		return err
	}
	if err := tx.write(); err != nil {
		return err
	}
	return b.Delete([]byte(name))
}

func (tx *Tx) putLease(name string, l core.Lease) error {
	b, err := tx.bucket(bucketLeases)
	if err != nil {
		return err
	}
	v, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("store: lease %s: %w", name, err)
	}
	if err := tx.write(); err != nil {
		return err
	}
	return b.Put([]byte(name), v)
}
