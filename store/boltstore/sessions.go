package boltstore

import (
	"fmt"
	"slices"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	bolt "go.etcd.io/bbolt"
)

// recordKeys are the fields of a session or charge that indexes and counters
// are derived from. PutSession and PutCharge compare the stored record's keys
// with the new record's and touch only the index entries that differ.
type recordKeys struct {
	storefront string
	created    uint64
	status     string
	// Sessions only.
	hpp, kp    string
	checkAt    uint64 // 0: not in sessions_due
	authorized bool   // in sessions_authorized, at authAt
	authAt     uint64
}

func sessionKeys(s *core.Session) recordKeys {
	return recordKeys{
		storefront: s.Storefront,
		created:    nanos(s.CreatedAt),
		status:     string(s.Status),
		hpp:        s.HPPSessionID,
		kp:         s.KPSessionID,
		checkAt:    nanos(s.CheckAt),
		authorized: s.Status == core.SessionAuthorized,
		authAt:     nanos(s.AuthorizedAt),
	}
}

func decodeSessionKeys(raw []byte) (recordKeys, error) {
	var s core.Session
	if err := decodeValue(raw, &s); err != nil {
		return recordKeys{}, err
	}
	return sessionKeys(&s), nil
}

// storedKeys returns the index keys of the record stored under id, if any.
func storedKeys(b *bolt.Bucket, id string, decode func(id string, raw []byte) (recordKeys, error)) (recordKeys, bool, error) {
	raw := b.Get([]byte(id))
	if raw == nil {
		return recordKeys{}, false, nil
	}
	k, err := decode(id, raw)
	if err != nil {
		return recordKeys{}, false, err
	}
	return k, true, nil
}

// Session returns the session with id, or core.ErrNotFound.
func (tx *Tx) Session(id string) (*core.Session, error) {
	b, err := tx.bucket(bucketSessions)
	if err != nil {
		return nil, err
	}
	raw := b.Get([]byte(id))
	if raw == nil {
		return nil, core.ErrNotFound
	}
	return sessionOf(id, raw)
}

// sessionOf decodes session id from its stored value raw.
func sessionOf(id string, raw []byte) (*core.Session, error) {
	var s core.Session
	if err := decodeValue(raw, &s); err != nil {
		return nil, fmt.Errorf("store: session %s: %w", id, err)
	}
	return &s, nil
}

// SessionIDByHPP returns the id of the session whose HPP session is
// hppSessionID, or core.ErrNotFound.
func (tx *Tx) SessionIDByHPP(hppSessionID string) (string, error) {
	return tx.lookup(bucketSessionsHPP, hppSessionID)
}

// SessionIDByKP returns the id of the session whose KP session is
// kpSessionID, or core.ErrNotFound.
func (tx *Tx) SessionIDByKP(kpSessionID string) (string, error) {
	return tx.lookup(bucketSessionsKP, kpSessionID)
}

func (tx *Tx) lookup(name []byte, key string) (string, error) {
	if key == "" {
		return "", core.ErrNotFound
	}
	b, err := tx.bucket(name)
	if err != nil {
		return "", err
	}
	v := b.Get([]byte(key))
	if v == nil {
		return "", core.ErrNotFound
	}
	return string(v), nil
}

// PutSession inserts or replaces s and, in the same transaction, every entry
// derived from it: sessions_hpp and sessions_kp (unique: an HPP or KP session
// id that already belongs to another session is a conflict), sessions_due (at
// s.CheckAt; the zero time is not indexed), sessions_by_storefront,
// sessions_authorized (while s is authorized) and the status counters.
// The due entry is filed exactly at s.CheckAt (the only one), so PutSession
// of an unchanged session re-files one whose entries PutSessionKeepDue left
// behind (due.go).
func (tx *Tx) PutSession(s *core.Session) error { return tx.putSession(s, false) }

// PutSessionKeepDue is PutSession, except that it deletes no due entry while
// s.CheckAt is not zero: one moved later stays where it is, one moved earlier
// gets a new entry beside the old (a lower bound, due.go). It is the callback
// path's write, which then dirties the session's own page and at most the
// last page of sessions_due, not two random ones.
func (tx *Tx) PutSessionKeepDue(s *core.Session) error { return tx.putSession(s, true) }

func (tx *Tx) putSession(s *core.Session, keepDue bool) error {
	if err := store.CheckSession(s); err != nil {
		return err
	}
	val, err := encodeValue(s, density(s.Status.Final()))
	if err != nil {
		return fmt.Errorf("store: put session %s: %w", s.ID, err)
	}
	b, err := tx.bucket(bucketSessions)
	if err != nil {
		return err
	}
	return tx.putSessionValue(b, s.ID, b.Get([]byte(s.ID)), sessionKeys(s), val, keepDue, nil)
}

// putSessionValue writes the encoded value val of session sid, whose index
// keys are nk, over raw, its record in the sessions bucket b (nil: none),
// with everything derived from it (see PutSession). old, when not nil, are
// the keys of the session stored in raw, known to the caller (PutPrepared);
// otherwise they are decoded from raw.
func (tx *Tx) putSessionValue(b *bolt.Bucket, sid string, raw []byte, nk recordKeys, val []byte, keepDue bool, old *recordKeys) error {
	id := []byte(sid)
	had := raw != nil
	var err error
	var prev recordKeys
	switch {
	case old != nil && had:
		prev = *old
	case had:
		if prev, err = decodeSessionKeys(raw); err != nil {
			return fmt.Errorf("store: put session %s: %w", sid, err)
		}
	}
	hppB, err := tx.bucket(bucketSessionsHPP)
	if err != nil {
		return err
	}
	kpB, err := tx.bucket(bucketSessionsKP)
	if err != nil {
		return err
	}
	if !had || nk.hpp != prev.hpp {
		if err := uniqueFree(hppB, nk.hpp, sid, "hpp_session_id"); err != nil {
			return err
		}
	}
	if !had || nk.kp != prev.kp {
		if err := uniqueFree(kpB, nk.kp, sid, "kp_session_id"); err != nil {
			return err
		}
	}
	// have are the session's due entries, want those it keeps.
	var have []uint64
	want := exactDue(nk.checkAt)
	if had {
		if have, err = dueEntries(raw, prev.checkAt); err != nil {
			return fmt.Errorf("store: put session %s: %w", sid, err)
		}
		if keepDue {
			want = keptDue(have, nk.checkAt)
		}
		if !slices.Equal(want, exactDue(nk.checkAt)) {
			val = withDue(want, val)
		}
		// The record keeps its event marks (events.go).
		marks, _, err := splitMarks(raw)
		if err != nil {
			return fmt.Errorf("store: put session %s: %w", sid, err)
		}
		val = withMarks(marks, val)
	}
	if err := tx.write(); err != nil {
		return err
	}
	if err := b.Put(id, val); err != nil {
		return fmt.Errorf("store: put session %s: %w", sid, err)
	}
	if err := tx.indexRecord(bucketSessionsByStorefront, "session/", id, prev, nk, had); err != nil {
		return fmt.Errorf("store: put session %s: %w", sid, err)
	}
	if err := moveUnique(hppB, prev.hpp, nk.hpp, id); err != nil {
		return fmt.Errorf("store: put session %s: %w", sid, err)
	}
	if err := moveUnique(kpB, prev.kp, nk.kp, id); err != nil {
		return fmt.Errorf("store: put session %s: %w", sid, err)
	}
	if err := tx.moveDue(sid, have, want); err != nil {
		return fmt.Errorf("store: put session %s: %w", sid, err)
	}
	var oldAuth, newAuth []byte
	if prev.authorized {
		oldAuth = timeKey(prev.authAt, sid)
	}
	if nk.authorized {
		newAuth = timeKey(nk.authAt, sid)
	}
	if err := tx.moveKey(bucketSessionsAuthorized, oldAuth, newAuth, nil); err != nil {
		return fmt.Errorf("store: put session %s: %w", sid, err)
	}
	return nil
}

// uniqueFree reports a conflict when key already maps to another id.
func uniqueFree(b *bolt.Bucket, key, id, field string) error {
	if key == "" {
		return nil
	}
	if v := b.Get([]byte(key)); v != nil && string(v) != id {
		return &core.Error{Code: core.CodeConflict, Field: field, Message: "already belongs to another session"}
	}
	return nil
}

// moveUnique moves a unique index entry from oldKey to newKey (both → id);
// an empty key means no entry. An old entry is removed only if it is id's.
func moveUnique(b *bolt.Bucket, oldKey, newKey string, id []byte) error {
	if oldKey == newKey {
		return nil
	}
	if oldKey != "" {
		if v := b.Get([]byte(oldKey)); v != nil && string(v) == string(id) {
			if err := b.Delete([]byte(oldKey)); err != nil {
				return err
			}
		}
	}
	if newKey != "" {
		return b.Put([]byte(newKey), id)
	}
	return nil
}

// moveDue changes the due entries of session id from have to want.
func (tx *Tx) moveDue(id string, have, want []uint64) error {
	for _, t := range have {
		if !slices.Contains(want, t) {
			if err := tx.moveKey(bucketSessionsDue, timeKey(t, id), nil, nil); err != nil {
				return err
			}
		}
	}
	for _, t := range want {
		if !slices.Contains(have, t) {
			if err := tx.moveKey(bucketSessionsDue, nil, timeKey(t, id), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// moveKey replaces the entry oldKey with newKey (value val) in bucket name;
// nil means no entry. Equal keys are left alone.
func (tx *Tx) moveKey(name, oldKey, newKey, val []byte) error {
	if string(oldKey) == string(newKey) && val == nil {
		return nil
	}
	b, err := tx.bucket(name)
	if err != nil {
		return err
	}
	if oldKey != nil && string(oldKey) != string(newKey) {
		if err := b.Delete(oldKey); err != nil {
			return err
		}
	}
	if newKey != nil {
		if val == nil {
			val = []byte{}
		}
		return b.Put(newKey, val)
	}
	return nil
}

// indexRecord maintains a by-storefront index entry (value: the status) and
// the status counters of a session or charge.
func (tx *Tx) indexRecord(name []byte, counterPrefix string, id []byte, old, nk recordKeys, had bool) error {
	newKey := storefrontKey(nk.storefront, nk.created, string(id))
	if had {
		oldKey := storefrontKey(old.storefront, old.created, string(id))
		if string(oldKey) != string(newKey) || old.status != nk.status {
			if err := tx.moveKey(name, oldKey, newKey, []byte(nk.status)); err != nil {
				return err
			}
		}
		if old.status != nk.status {
			if err := tx.addCounter(counterPrefix+old.status, -1); err != nil {
				return err
			}
			return tx.addCounter(counterPrefix+nk.status, 1)
		}
		return nil
	}
	if err := tx.moveKey(name, nil, newKey, []byte(nk.status)); err != nil {
		return err
	}
	return tx.addCounter(counterPrefix+nk.status, 1)
}

// SessionsDue returns the ids of sessions with a due entry at or before now,
// once each, by earliest entry, at most limit (limit <= 0: all): every
// session whose CheckAt has come, and those whose entries a callback left
// behind their CheckAt (due.go), which the caller skips and re-files. It reads only the
// due entries (a cursor from the start of sessions_due), never the sessions:
// telling the lagging ones apart here would cost a record read each.
func (tx *Tx) SessionsDue(now time.Time, limit int) ([]string, error) {
	b, err := tx.bucket(bucketSessionsDue)
	if err != nil {
		return nil, err
	}
	end := nanos(now)
	var ids []string
	var seen map[string]bool // a session with two entries due is returned once
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		ns, id, err := splitTimeKey(k)
		if err != nil {
			return nil, err
		}
		if ns > end {
			break
		}
		if seen == nil {
			seen = map[string]bool{}
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
		if limit > 0 && len(ids) >= limit {
			break
		}
	}
	return ids, nil
}

// OldestAuthorized returns the AuthorizedAt of the oldest session that is
// authorized but whose order is not placed yet; false when there is none.
func (tx *Tx) OldestAuthorized() (time.Time, bool, error) {
	b, err := tx.bucket(bucketSessionsAuthorized)
	if err != nil {
		return time.Time{}, false, err
	}
	k := first(b)
	if k == nil {
		return time.Time{}, false, nil
	}
	ns, _, err := splitTimeKey(k)
	if err != nil {
		return time.Time{}, false, err
	}
	return timeOf(ns), true, nil
}

// ListSessions returns a storefront's sessions newest first (by CreatedAt),
// optionally only those with status q.Status, at most q.Limit (default 50,
// at most 500), and the cursor of the next page ("" when there is none).
// Filtering reads only the index (which holds each session's status).
func (tx *Tx) ListSessions(q core.ListQuery) ([]*core.Session, string, error) {
	if q.Status != "" && !core.SessionStatus(q.Status).Valid() {
		return nil, "", core.Invalid("status", "%q is not a session status", q.Status)
	}
	ids, next, err := tx.list(bucketSessionsByStorefront, q)
	if err != nil {
		return nil, "", err
	}
	out := make([]*core.Session, 0, len(ids))
	for _, id := range ids {
		s, err := tx.Session(id)
		if err != nil {
			return nil, "", fmt.Errorf("store: list sessions: %s: %w", id, err)
		}
		out = append(out, s)
	}
	return out, next, nil
}

// AllSessions calls fn with every session, in id order, stopping at fn's first
// error. fn must not write sessions.
func (tx *Tx) AllSessions(fn func(*core.Session) error) error {
	return forEachValue(tx, bucketSessions, "session", fn)
}
