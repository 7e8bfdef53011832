package boltstore

import (
	"bytes"
	"fmt"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Prepared session writes (store.SessionVersions).
//
// Every write transaction runs on the one writer goroutine (batch.go), so
// what a Batch function spends there bounds how many callbacks a second the
// store takes. Encoding a session (sessioncodec.go, then S2) is the largest
// part of a callback's function and needs nothing of the transaction, so the
// callback path encodes on its request's goroutine instead: a session's
// version is its stored value, without the event marks in front of it
// (events.go: a callback marks its event before it writes the session, and
// the mark must not make its own prepared write stale) but with its list of
// due entries (due.go: the write derives the new list from it). PutPrepared
// compares the stored value with the version byte for byte and, when equal,
// writes the prepared value the way PutSessionKeepDue writes an encoded one
// (putSessionValue), with the index keys of the session the version was
// decoded from, so the writer neither encodes the new session nor decodes
// the old one.

// sessionVersion is a session's stored value (a copy: it outlives the
// transaction) and the index keys of the session decoded from it.
type sessionVersion struct {
	id   string
	body []byte
	keys recordKeys
}

// preparedSession is a session's new value, encoded against a version.
type preparedSession struct {
	base *sessionVersion
	keys recordKeys
	val  []byte
}

func (p *preparedSession) SessionID() string { return p.base.id }

// SessionVersion returns the session with id, or core.ErrNotFound, and the
// version of its stored value.
func (tx *Tx) SessionVersion(id string) (*core.Session, store.SessionVersion, error) {
	b, err := tx.bucket(bucketSessions)
	if err != nil {
		return nil, nil, err
	}
	raw := b.Get([]byte(id))
	if raw == nil {
		return nil, nil, core.ErrNotFound
	}
	s, err := sessionOf(id, raw)
	if err != nil {
		return nil, nil, err
	}
	return s, &sessionVersion{id: id, body: bytes.Clone(sessionBody(raw)), keys: sessionKeys(s)}, nil
}

// Prepare encodes s, the session read at version v and changed since, for
// PutPrepared, as PutSession would encode it.
func (v *sessionVersion) Prepare(s *core.Session) (store.PreparedSession, error) {
	if s.ID != v.id {
		return nil, fmt.Errorf("store: prepare session %s from a version of session %s", s.ID, v.id)
	}
	if err := store.CheckSession(s); err != nil {
		return nil, err
	}
	val, err := encodeValue(s, density(s.Status.Final()))
	if err != nil {
		return nil, fmt.Errorf("store: prepare session %s: %w", s.ID, err)
	}
	return &preparedSession{base: v, keys: sessionKeys(s), val: val}, nil
}

// PutPrepared writes p when the session's stored value is still p's
// version, as PutSessionKeepDue would write the session p was prepared
// from, and reports whether it wrote.
func (tx *Tx) PutPrepared(p store.PreparedSession) (bool, error) {
	ps, ok := p.(*preparedSession)
	if !ok {
		return false, fmt.Errorf("store: put prepared session: %T was not prepared by boltstore", p)
	}
	b, err := tx.bucket(bucketSessions)
	if err != nil {
		return false, err
	}
	raw := b.Get([]byte(ps.base.id))
	if raw == nil {
		return false, nil
	}
	_, body, err := splitMarks(raw)
	if err != nil {
		return false, fmt.Errorf("store: put prepared session %s: %w", ps.base.id, err)
	}
	if !bytes.Equal(body, ps.base.body) {
		return false, nil
	}
	return true, tx.putSessionValue(b, ps.base.id, raw, ps.keys, ps.val, true, &ps.base.keys)
}

// MarkPrepared does a callback's SeenEvent, MarkEvent and PutPrepared
// (store.PreparedEvents) with one lookup of the session's record, by its id
// rather than through sessions_hpp, and one Put of it. It writes what the
// three would: a new mark joins the record's live marks (its dead ones
// dropped) while it has room, and goes to event_ids otherwise (the record
// keeping its marks as they are); the record then holds p's value.
func (tx *Tx) MarkPrepared(p store.PreparedSession, hppSessionID, eventID string, at time.Time) (store.PreparedOutcome, error) {
	ps, ok := p.(*preparedSession)
	if !ok {
		return store.PreparedStale, fmt.Errorf("store: mark prepared session: %T was not prepared by boltstore", p)
	}
	if err := checkEvent(hppSessionID, eventID); err != nil {
		return store.PreparedStale, err
	}
	if ps.base.keys.hpp != hppSessionID {
		return store.PreparedStale, nil
	}
	b, err := tx.bucket(bucketSessions)
	if err != nil {
		return store.PreparedStale, err
	}
	raw := b.Get([]byte(ps.base.id))
	if raw == nil {
		return store.PreparedStale, nil
	}
	ev := eventLookup{hash: tx.eventKey(hppSessionID, eventID)}
	if err := tx.recordEvent(&ev, ps.base.id, raw); err != nil {
		return store.PreparedStale, err
	}
	if !bytes.Equal(ev.body, ps.base.body) {
		return store.PreparedStale, nil
	}
	// The session is at p's version, so its HPP session is still
	// hppSessionID, and sessions_hpp leads to it: this is SeenEvent's
	// record.
	if !ev.seen {
		if ev.seen, err = tx.markedApart(ev.hash); err != nil {
			return store.PreparedStale, err
		}
	}
	if ev.seen {
		return store.EventSeen, nil
	}
	marks, err := tx.addMark(&ev, nanos(at))
	if err != nil {
		return store.PreparedStale, err
	}
	if marks == nil {
		marks = ev.marks
	}
	if err := tx.putSessionValue(b, ps.base.id, withMarks(marks, ev.body), ps.keys, ps.val, true, &ps.base.keys); err != nil {
		return store.PreparedStale, err
	}
	return store.PreparedWritten, nil
}
