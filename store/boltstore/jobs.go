package boltstore

import (
	"fmt"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	bolt "go.etcd.io/bbolt"
)

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

func (tx *Tx) jobAt(b *bolt.Bucket, id string) (*core.Job, error) {
	raw := b.Get([]byte(id))
	if raw == nil {
		return nil, core.ErrNotFound
	}
	var j core.Job
	if err := decodeValue(raw, &j); err != nil {
		return nil, fmt.Errorf("store: job %s: %w", id, err)
	}
	return &j, nil
}

// Job returns the job with id, or core.ErrNotFound.
func (tx *Tx) Job(id string) (*core.Job, error) {
	b, err := tx.bucket(bucketJobs)
	if err != nil {
		return nil, err
	}
	return tx.jobAt(b, id)
}

// AddJob inserts j unless a job with j.ID exists; then it returns false and
// leaves the stored job as it is. Job ids are derived from what a job is for,
// so this is what makes "one place_order job per session" hold however many
// transactions try to add it.
func (tx *Tx) AddJob(j *core.Job) (bool, error) {
	if err := checkJob(j); err != nil {
		return false, err
	}
	b, err := tx.bucket(bucketJobs)
	if err != nil {
		return false, err
	}
	if b.Get([]byte(j.ID)) != nil {
		return false, nil
	}
	if err := tx.putJob(b, j, nil); err != nil {
		return false, err
	}
	return true, nil
}

// PutJob inserts or replaces j whatever its lease (to reschedule it, say),
// moving its jobs_due entry to j.Due().
func (tx *Tx) PutJob(j *core.Job) error {
	if err := checkJob(j); err != nil {
		return err
	}
	b, err := tx.bucket(bucketJobs)
	if err != nil {
		return err
	}
	old, err := tx.jobAt(b, j.ID)
	if err != nil && !core.IsNotFound(err) {
		return err
	}
	return tx.putJob(b, j, old)
}

func (tx *Tx) putJob(b *bolt.Bucket, j, old *core.Job) error {
	val, err := encodeValue(j, fast)
	if err != nil {
		return fmt.Errorf("store: put job %s: %w", j.ID, err)
	}
	if err := tx.write(); err != nil {
		return err
	}
	if err := b.Put([]byte(j.ID), val); err != nil {
		return fmt.Errorf("store: put job %s: %w", j.ID, err)
	}
	var oldDue []byte
	if old != nil {
		oldDue = timeKey(nanos(old.Due()), old.ID)
	}
	if err := tx.moveKey(bucketJobsDue, oldDue, timeKey(nanos(j.Due()), j.ID), nil); err != nil {
		return fmt.Errorf("store: put job %s: %w", j.ID, err)
	}
	if err := tx.markLeased(j.ID, old != nil && old.Lease.Owner != "", j.Lease.Owner != ""); err != nil {
		return fmt.Errorf("store: put job %s: %w", j.ID, err)
	}
	if old != nil && old.Kind == j.Kind {
		return nil
	}
	if old != nil {
		if err := tx.addCounter("job/"+string(old.Kind), -1); err != nil {
			return err
		}
	}
	return tx.addCounter("job/"+string(j.Kind), 1)
}

// DeleteJob removes the job with id and its due entry; an absent job is not
// an error.
func (tx *Tx) DeleteJob(id string) error {
	b, err := tx.bucket(bucketJobs)
	if err != nil {
		return err
	}
	old, err := tx.jobAt(b, id)
	if core.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := tx.write(); err != nil {
		return err
	}
	if err := b.Delete([]byte(id)); err != nil {
		return fmt.Errorf("store: delete job %s: %w", id, err)
	}
	if err := tx.moveKey(bucketJobsDue, timeKey(nanos(old.Due()), id), nil, nil); err != nil {
		return fmt.Errorf("store: delete job %s: %w", id, err)
	}
	if err := tx.markLeased(id, old.Lease.Owner != "", false); err != nil {
		return fmt.Errorf("store: delete job %s: %w", id, err)
	}
	return tx.addCounter("job/"+string(old.Kind), -1)
}

// JobsDue returns the jobs due (Job.Due) at or before now, earliest first,
// at most limit (limit <= 0: all), by a cursor from the start of jobs_due.
func (tx *Tx) JobsDue(now time.Time, limit int) ([]*core.Job, error) {
	due, err := tx.bucket(bucketJobsDue)
	if err != nil {
		return nil, err
	}
	b, err := tx.bucket(bucketJobs)
	if err != nil {
		return nil, err
	}
	end := nanos(now)
	var jobs []*core.Job
	c := due.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		ns, id, err := splitTimeKey(k)
		if err != nil {
			return nil, err
		}
		if ns > end {
			break
		}
		j, err := tx.jobAt(b, id)
		if err != nil {
			return nil, fmt.Errorf("store: due job %s: %w", id, err)
		}
		jobs = append(jobs, j)
		if limit > 0 && len(jobs) >= limit {
			break
		}
	}
	return jobs, nil
}

// NextJobDue returns the earliest due time (Job.Due) of all jobs; false when there are none.
func (tx *Tx) NextJobDue() (time.Time, bool) {
	b, err := tx.bucket(bucketJobsDue)
	if err != nil {
		return time.Time{}, false
	}
	k := first(b)
	if k == nil {
		return time.Time{}, false
	}
	ns, _, err := splitTimeKey(k)
	if err != nil {
		return time.Time{}, false
	}
	return timeOf(ns), true
}

// AllJobs calls fn with every job, in id order, stopping at fn's first error.
// fn must not write jobs.
func (tx *Tx) AllJobs(fn func(*core.Job) error) error {
	return forEachValue(tx, bucketJobs, "job", fn)
}
