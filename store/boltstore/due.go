package boltstore

import (
	"encoding/binary"
	"fmt"
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

// A session's due entry is a lower bound.
//
// Every callback moves its session's CheckAt later (news pushes the next
// re-read back), and moving the sessions_due entry with it would cost each
// callback a delete and an insert at two random places of that index: two
// more leaf pages (and their branch pages) written per commit, on top of the
// session's own. So PutSessionKeepDue leaves the entry where it is when
// CheckAt moves later, and the record remembers where its entry is filed:
//
//	0x04 ‖ big-endian unix nanos of the entry ‖ the session's value
//
// (codecDue; behind the event marks, events.go). A record without it has its
// entry at its CheckAt, as in schema 3. The invariant: a session with a
// non-zero CheckAt has exactly one due entry, at or before its CheckAt; one
// without has none. SessionsDue may therefore return a session that is not
// due yet; the poller reads every session it gets anyway, skips one whose
// CheckAt is later and re-files it with PutSession, which always files the
// entry exactly at CheckAt. A lagging entry costs one such re-file when it
// comes due, however many callbacks moved the session meanwhile; a CheckAt
// that moves earlier or to zero (a final status) moves or drops the entry at
// once.
const (
	codecDue  byte = 0x04
	dueHeader      = 1 + 8
)

// splitDue splits a session value (a record without its marks) into the
// time its due entry is filed at (0: at its CheckAt) and the value itself.
func splitDue(body []byte) (filed uint64, value []byte, err error) {
	if len(body) == 0 || body[0] != codecDue {
		return 0, body, nil
	}
	if len(body) <= dueHeader {
		return 0, nil, fmt.Errorf("decode: short due header")
	}
	filed = binary.BigEndian.Uint64(body[1:dueHeader])
	value = body[dueHeader:]
	if filed == 0 || value[0] == codecDue || value[0] == codecMarks {
		return 0, nil, fmt.Errorf("decode: bad due header")
	}
	return filed, value, nil
}

// withDue returns value behind a due header filing its entry at filed, in a
// new slice.
func withDue(filed uint64, value []byte) []byte {
	out := make([]byte, 0, dueHeader+len(value))
	out = append(out, codecDue)
	out = binary.BigEndian.AppendUint64(out, filed)
	return append(out, value...)
}

// dueFiled returns where the due entry of a stored session record is: the
// time of its due header, or checkAt (its CheckAt; 0: no entry).
func dueFiled(raw []byte, checkAt uint64) (uint64, error) {
	_, body, err := splitMarks(raw)
	if err != nil {
		return 0, err
	}
	filed, _, err := splitDue(body)
	if err != nil {
		return 0, err
	}
	if filed == 0 {
		return checkAt, nil
	}
	return filed, nil
}
