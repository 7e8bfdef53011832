package boltstore

import (
	"encoding/binary"
	"fmt"
	"slices"
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

// A session's due entries are a lower bound.
//
// Every callback moves its session's CheckAt, and moving the sessions_due
// entry with it would cost each callback a delete and an insert at two
// random places of that index: two more leaf pages (and their branch pages)
// written per commit, on top of the session's own. So PutSessionKeepDue (the
// callback path's write) does not delete: when CheckAt moves later it leaves
// the entries as they are, and when it moves earlier it adds an entry at the
// new CheckAt (near now, where the batch's other new entries are: the index
// is in time order) and leaves the old one. The record lists its entries:
//
//	0x04 ‖ n (1..maxDueEntries) ‖ n × big-endian unix nanos ‖ the session's value
//
// (codecDue; behind the event marks, events.go). A record without the list
// has one entry at its CheckAt when that is not zero, as in schema 3. The
// invariant: a session's entries are exactly its list, and the earliest is
// at or before its CheckAt; a session with a zero CheckAt has none.
// SessionsDue therefore returns every due session, and may return one that
// is not due yet; the poller reads every session it gets anyway, skips one
// whose CheckAt is later and re-files it with PutSession, which deletes every
// entry of the list and files one exactly at CheckAt. A session's stale
// entries cost one such re-file when the first comes due, however many
// callbacks moved it meanwhile. A zero CheckAt (a final status), a full list
// and deleting the session drop the entries at once.
const (
	codecDue      byte = 0x04
	maxDueEntries int  = 4
)

// splitDue splits a session value (a record without its marks) into the due
// entries it lists (nil: no list) and the value itself.
func splitDue(body []byte) (entries []uint64, value []byte, err error) {
	if len(body) == 0 || body[0] != codecDue {
		return nil, body, nil
	}
	if len(body) < 2 {
		return nil, nil, fmt.Errorf("decode: short due list")
	}
	n := int(body[1])
	end := 2 + 8*n
	if n == 0 || n > maxDueEntries || len(body) <= end {
		return nil, nil, fmt.Errorf("decode: bad due list (%d entries in %d bytes)", n, len(body))
	}
	entries = make([]uint64, n)
	for i := range entries {
		if entries[i] = binary.BigEndian.Uint64(body[2+8*i:]); entries[i] == 0 {
			return nil, nil, fmt.Errorf("decode: due entry at time 0")
		}
	}
	value = body[end:]
	if value[0] == codecDue || value[0] == codecMarks {
		return nil, nil, fmt.Errorf("decode: nested due list")
	}
	return entries, value, nil
}

// withDue returns value behind the list of due entries, in a new slice.
func withDue(entries []uint64, value []byte) []byte {
	out := make([]byte, 0, 2+8*len(entries)+len(value))
	out = append(out, codecDue, byte(len(entries)))
	for _, e := range entries {
		out = binary.BigEndian.AppendUint64(out, e)
	}
	return append(out, value...)
}

// dueEntries returns the due entries of a stored session record: its list,
// or checkAt (its CheckAt) when it has none (nil when that is zero).
func dueEntries(raw []byte, checkAt uint64) ([]uint64, error) {
	_, body, err := splitMarks(raw)
	if err != nil {
		return nil, err
	}
	entries, _, err := splitDue(body)
	if err != nil || entries != nil {
		return entries, err
	}
	return exactDue(checkAt), nil
}

// exactDue is the entry list of a session filed exactly: one entry at
// checkAt, none when it is zero.
func exactDue(checkAt uint64) []uint64 {
	if checkAt == 0 {
		return nil
	}
	return []uint64{checkAt}
}

// keptDue returns the entries a PutSessionKeepDue of a session whose
// entries are have and whose new CheckAt is checkAt leaves: have when its
// earliest is still at or before checkAt, have plus checkAt when there is
// room, and the exact list otherwise.
func keptDue(have []uint64, checkAt uint64) []uint64 {
	if checkAt == 0 || len(have) == 0 {
		return exactDue(checkAt)
	}
	if slices.Min(have) <= checkAt {
		return have
	}
	if len(have) < maxDueEntries {
		return append(slices.Clip(have), checkAt)
	}
	return exactDue(checkAt)
}
