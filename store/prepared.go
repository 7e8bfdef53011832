package store

import (
	"time"

	"github.com/hppd/hppd/core"
)

// Prepared session writes.
//
// A store with a single writer (boltstore: one read-write transaction at a
// time, on one goroutine) bounds its write throughput by the time each
// write function spends in that transaction, and most of a session write's
// time is turning the new session into its stored form (JSON, then
// compression), which needs nothing of the transaction. A store whose Tx
// implements SessionVersions lets the caller do that part on its own
// goroutine:
//
//  1. In a View, SessionVersion reads the session and the version of the
//     stored value it was decoded from.
//  2. Outside any transaction, the caller changes the session and
//     SessionVersion.Prepare encodes it.
//  3. In its Update or Batch, PutPrepared writes the prepared value only if
//     the session stored then is still at that version; otherwise it writes
//     nothing and reports false, and the caller does the ordinary
//     read-change-write (Session, change, PutSession) in the same
//     transaction.
//
// So a prepared write is exactly the ordinary write of a session nobody
// changed in between, and correctness never depends on it: a store without
// versions (pgstore, whose writes run in parallel transactions), a session
// changed since the View, or a caller that prepares nothing, all take the
// ordinary path. Only the session's own record is prepared; everything else
// the write derives (index entries, due entries, counters) is still done by
// PutPrepared in the transaction, as PutSessionKeepDue does it.

// SessionVersions is implemented by a Tx whose store prepares session
// writes outside its transactions.
type SessionVersions interface {
	// SessionVersion is Session, with the version of the stored session it
	// returns. Callback de-duplication marks (MarkEvent) are not part of a
	// session's version: marking an event leaves it unchanged.
	SessionVersion(id string) (*core.Session, SessionVersion, error)
	// PutPrepared writes p as PutSessionKeepDue writes the session p was
	// prepared from, and returns true, when the session stored now is at
	// the version p was prepared against. Otherwise (the session was
	// written or deleted since) it writes nothing and returns false.
	// Writing p again after that is an ordinary write of the same value.
	PutPrepared(p PreparedSession) (bool, error)
}

// SessionVersion is the version of a stored session, as SessionVersion read
// it. It stays valid after its transaction ends and may be used from any
// goroutine.
type SessionVersion interface {
	// Prepare encodes s, the session read at this version as changed by
	// the caller, for PutPrepared. It uses no transaction. s is checked as
	// PutSession checks it, and the caller must not change s afterwards.
	Prepare(s *core.Session) (PreparedSession, error)
}

// PreparedSession is a session write encoded outside its transaction
// (SessionVersion.Prepare). It may be written more than once (a Batch
// function may run twice).
type PreparedSession interface {
	// SessionID is the id of the session it writes.
	SessionID() string
}

// ReadSessionVersion returns session id as tx.Session does, and its version
// when tx has versions (nil otherwise: then nothing can be prepared).
func ReadSessionVersion(tx Tx, id string) (*core.Session, SessionVersion, error) {
	if v, ok := tx.(SessionVersions); ok {
		return v.SessionVersion(id)
	}
	s, err := tx.Session(id)
	return s, nil, err
}

// PutPrepared writes p through tx's PutPrepared when there is a p and tx
// has versions. false means nothing was written: the caller reads, changes
// and writes the session the ordinary way.
func PutPrepared(tx Tx, p PreparedSession) (bool, error) {
	v, ok := tx.(SessionVersions)
	if !ok || p == nil {
		return false, nil
	}
	return v.PutPrepared(p)
}

// A callback de-duplicates its event and, when the event is new, marks it
// and writes its session: SeenEvent, MarkEvent and PutPrepared, three
// lookups of the same session's record on the single writer. A Tx that
// implements PreparedEvents does the three in one look at the record.

// PreparedEvents is implemented by a Tx that de-duplicates an event and
// writes a prepared session in one step.
type PreparedEvents interface {
	// MarkPrepared is, for a session stored now at p's version and whose
	// HPP session is hppSessionID: SeenEvent(hppSessionID, eventID), then
	// for an event not seen MarkEvent(hppSessionID, eventID, at) and
	// PutPrepared(p), with the same outcome and the same stored bytes. It
	// reports EventSeen or PreparedWritten. For any other session (written
	// or deleted since the version, or of another HPP session) it writes
	// nothing and reports PreparedStale: the caller then takes those steps
	// one by one.
	MarkPrepared(p PreparedSession, hppSessionID, eventID string, at time.Time) (PreparedOutcome, error)
}

// PreparedOutcome is what MarkPrepared did.
type PreparedOutcome int

// MarkPrepared's outcomes.
const (
	PreparedStale   PreparedOutcome = iota // nothing written: take the steps one by one
	EventSeen                              // the event was marked before: nothing written
	PreparedWritten                        // the event is marked and p written
)

// MarkPrepared runs tx's MarkPrepared when there is a p and tx implements
// PreparedEvents; PreparedStale otherwise.
func MarkPrepared(tx Tx, p PreparedSession, hppSessionID, eventID string, at time.Time) (PreparedOutcome, error) {
	v, ok := tx.(PreparedEvents)
	if !ok || p == nil {
		return PreparedStale, nil
	}
	return v.MarkPrepared(p, hppSessionID, eventID, at)
}
