package boltstore

import (
	"strings"
	"time"

	"github.com/hppd/hppd/core"
)

// DueJobIDs calls fn with the id of every job due at or before now, earliest
// first, reading only the jobs_due keys (never a job), until fn returns
// false. It returns the DueAt of the first job due after now (zero when
// there is none, or when fn stopped the walk), so a job runner knows how long
// it may sleep.
func (tx *Tx) DueJobIDs(now time.Time, fn func(id string) bool) (next time.Time, err error) {
	b, err := tx.bucket(bucketJobsDue)
	if err != nil {
		return time.Time{}, err
	}
	end := nanos(now)
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		ns, id, err := splitTimeKey(k)
		if err != nil {
			return time.Time{}, err
		}
		if ns > end {
			return timeOf(ns), nil
		}
		if !fn(id) {
			return time.Time{}, nil
		}
	}
	return time.Time{}, nil
}

// RereadBacklog counts the routine re-reads that are due but not done at now:
// sessions whose CheckAt has come (the poller has not scheduled them yet) and
// reread_session jobs due at or before now. oldest is the earliest due time
// among them (zero when n is 0). The walk reads only index keys and stops at
// now, so its cost follows the backlog, not the data file.
func (tx *Tx) RereadBacklog(now time.Time) (n int, oldest time.Time, err error) {
	end := nanos(now)
	prefix := string(core.JobRereadSession) + "/"
	note := func(ns uint64) {
		t := timeOf(ns)
		if n == 0 || t.Before(oldest) {
			oldest = t
		}
		n++
	}
	sd, err := tx.bucket(bucketSessionsDue)
	if err != nil {
		return 0, time.Time{}, err
	}
	c := sd.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		ns, _, err := splitTimeKey(k)
		if err != nil {
			return 0, time.Time{}, err
		}
		if ns > end {
			break
		}
		note(ns)
	}
	jd, err := tx.bucket(bucketJobsDue)
	if err != nil {
		return 0, time.Time{}, err
	}
	c = jd.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		ns, id, err := splitTimeKey(k)
		if err != nil {
			return 0, time.Time{}, err
		}
		if ns > end {
			break
		}
		if strings.HasPrefix(id, prefix) {
			note(ns)
		}
	}
	return n, oldest, nil
}
