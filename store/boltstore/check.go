package boltstore

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/hppd/hppd/core"
	bolt "go.etcd.io/bbolt"
)

// checker collects what checkIndexes finds.
type checker struct {
	tx   *Tx
	errs []error
	// counts are the counters the records imply; entries the number of
	// index entries they imply, per bucket.
	counts  map[string]int64
	entries map[string]int
}

func (c *checker) fail(format string, args ...any) {
	if len(c.errs) < maxCheckErrors {
		c.errs = append(c.errs, fmt.Errorf(format, args...))
	}
}

// has reports whether b holds key k (also when its value is empty).
func has(b *bolt.Bucket, k []byte) bool {
	got, _ := b.Cursor().Seek(k)
	return got != nil && bytes.Equal(got, k)
}

// expect checks that bucket name holds k (with value val unless val is nil)
// and counts the entry.
func (c *checker) expect(name, k, val []byte, what string) {
	c.entries[string(name)]++
	b, err := c.tx.bucket(name)
	if err != nil {
		c.fail("%v", err)
		return
	}
	if !has(b, k) {
		c.fail("%s: no entry in %s", what, name)
		return
	}
	if val != nil && !bytes.Equal(b.Get(k), val) {
		c.fail("%s: entry in %s is %q, want %q", what, name, b.Get(k), val)
	}
}

// checkIndexes verifies that every index entry, due entry and counter is
// exactly what the records imply: each record's entries exist, and no bucket
// holds more entries than the records account for.
func checkIndexes(tx *Tx) error {
	c := &checker{tx: tx, counts: map[string]int64{}, entries: map[string]int{}}
	c.sessions()
	c.charges()
	c.jobs()
	c.events()
	for _, name := range [][]byte{
		bucketSessionsHPP, bucketSessionsKP, bucketSessionsDue, bucketSessionsByStorefront,
		bucketSessionsAuthorized, bucketChargesByStorefront, bucketJobsDue, bucketEventsByTime, bucketJobLeases,
	} {
		b, err := tx.bucket(name)
		if err != nil {
			c.fail("%v", err)
			continue
		}
		if n := b.Stats().KeyN; n != c.entries[string(name)] {
			c.fail("%s has %d entries, the records imply %d", name, n, c.entries[string(name)])
		}
	}
	c.counters()
	return errors.Join(c.errs...)
}

func (c *checker) sessions() {
	b, err := c.tx.bucket(bucketSessions)
	if err != nil {
		c.fail("%v", err)
		return
	}
	_ = b.ForEach(func(k, v []byte) error {
		var s core.Session
		if err := decodeValue(v, &s); err != nil {
			c.fail("session %s: %v", k, err)
			return nil
		}
		what := "session " + string(k)
		if s.ID != string(k) {
			c.fail("%s: has id %q", what, s.ID)
		}
		sk := sessionKeys(&s)
		c.counts["session/"+sk.status]++
		if sk.hpp != "" {
			c.expect(bucketSessionsHPP, []byte(sk.hpp), k, what)
		}
		if sk.kp != "" {
			c.expect(bucketSessionsKP, []byte(sk.kp), k, what)
		}
		due, err := dueEntries(v, sk.checkAt)
		switch {
		case err != nil:
			c.fail("%s: %v", what, err)
		case len(due) > 0 && (sk.checkAt == 0 || slices.Min(due) > sk.checkAt):
			c.fail("%s: due entries %v, none at or before its check_at %d", what, due, sk.checkAt)
		}
		for _, t := range due {
			c.expect(bucketSessionsDue, timeKey(t, s.ID), nil, what)
		}
		if sk.authorized {
			c.expect(bucketSessionsAuthorized, timeKey(sk.authAt, s.ID), nil, what)
		}
		c.expect(bucketSessionsByStorefront, storefrontKey(sk.storefront, sk.created, s.ID), []byte(sk.status), what)
		return nil
	})
}

func (c *checker) charges() {
	b, err := c.tx.bucket(bucketCharges)
	if err != nil {
		c.fail("%v", err)
		return
	}
	_ = b.ForEach(func(k, v []byte) error {
		var ch core.Charge
		if err := decodeValue(v, &ch); err != nil {
			c.fail("charge %s: %v", k, err)
			return nil
		}
		what := "charge " + string(k)
		if ch.ID != string(k) {
			c.fail("%s: has id %q", what, ch.ID)
		}
		ck := chargeKeys(&ch)
		c.counts["charge/"+ck.status]++
		c.expect(bucketChargesByStorefront, storefrontKey(ck.storefront, ck.created, ch.ID), []byte(ck.status), what)
		return nil
	})
}

func (c *checker) jobs() {
	b, err := c.tx.bucket(bucketJobs)
	if err != nil {
		c.fail("%v", err)
		return
	}
	_ = b.ForEach(func(k, v []byte) error {
		var j core.Job
		if err := decodeValue(v, &j); err != nil {
			c.fail("job %s: %v", k, err)
			return nil
		}
		what := "job " + string(k)
		if j.ID != string(k) {
			c.fail("%s: has id %q", what, j.ID)
		}
		c.counts["job/"+string(j.Kind)]++
		c.expect(bucketJobsDue, timeKey(nanos(j.Due()), j.ID), nil, what)
		if j.Lease.Owner != "" {
			c.expect(bucketJobLeases, []byte(j.ID), nil, what)
		}
		return nil
	})
}

// events checks event_ids (hash → time) against events_by_time.
func (c *checker) events() {
	b, err := c.tx.bucket(bucketEventIDs)
	if err != nil {
		c.fail("%v", err)
		return
	}
	_ = b.ForEach(func(k, v []byte) error {
		if len(k) != eventHashLen || len(v) != 8 {
			c.fail("event_ids: bad entry %x → %x", k, v)
			return nil
		}
		c.expect(bucketEventsByTime, append(bytes.Clone(v), k...), []byte{}, fmt.Sprintf("event %x", k))
		return nil
	})
}

func (c *checker) counters() {
	b, err := c.tx.bucket(bucketCounters)
	if err != nil {
		c.fail("%v", err)
		return
	}
	stored := map[string]int64{}
	_ = b.ForEach(func(k, v []byte) error {
		n, err := counterValue(v)
		if err != nil {
			c.fail("counter %s: %v", k, err)
		}
		stored[string(k)] = n
		return nil
	})
	for k, n := range c.counts {
		if stored[k] != n {
			c.fail("counter %s is %d, the records imply %d", k, stored[k], n)
		}
	}
	for k, n := range stored {
		if _, ok := c.counts[k]; !ok {
			c.fail("counter %s is %d, the records imply 0", k, n)
		}
	}
}
