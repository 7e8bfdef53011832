package boltstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Callback events are de-duplicated by a hash of (HPP session id, event id):
// the first 16 bytes of SHA-256(HPP session id ‖ 0x00 ‖ event id). Fixed-width
// hashes keep the marks small whatever Klarna (or a forger who passed the
// secret check) sends as event_id; 128 bits make a collision negligible.
//
// # Where marks live
//
// A mark for an event of a stored session lives in the session's own record,
// in front of its value (codecMarks), so the callback that marks the event
// and then rewrites the session dirties one leaf page of the B+tree, not
// three: marks keyed by their random hash in a bucket of their own cost every
// callback a leaf page of that bucket and its branch pages, about 2.5 of the
// 6.1 pages a callback wrote (measured on benchmark 1's file). A record
// holds at most maxRecordMarks live marks; further ones, marks of HPP
// sessions hppd does not store, and the marks of files written before schema
// 3 live in event_ids (hash → time) and events_by_time (time ‖ hash), which
// PruneEvents walks in time order.
//
// Marks in records are pruned by a horizon, meta/events_pruned_before:
// PruneEvents(before) moves it to before, and a mark older than it counts as
// pruned (SeenEvent ignores it; the next rewrite of its record drops it). A
// record's marks therefore cost nothing to prune and go when the session
// goes.
const eventHashLen = 16

func eventHash(hppSessionID, eventID string) []byte {
	h := sha256.New()
	h.Write([]byte(hppSessionID))
	h.Write([]byte{sep})
	h.Write([]byte(eventID))
	return h.Sum(nil)[:eventHashLen]
}

// eventKey returns the event_ids key of an event. The callback path asks
// twice (SeenEvent, then MarkEvent), so the Tx remembers the last one.
func (tx *Tx) eventKey(hppSessionID, eventID string) []byte {
	if m := tx.lastEvent; m != nil && m.hpp == hppSessionID && m.event == eventID {
		return m.hash
	}
	m := &eventMemo{hpp: hppSessionID, event: eventID, hash: eventHash(hppSessionID, eventID)}
	tx.lastEvent = m
	return m.hash
}

// eventMemo is eventKey's memo.
type eventMemo struct {
	hpp, event string
	hash       []byte
}

func checkEvent(hppSessionID, eventID string) error {
	if err := store.CheckID("hpp_session_id", hppSessionID); err != nil {
		return err
	}
	return store.CheckID("event_id", eventID)
}

// codecMarks is the first byte of a session record that carries event
// marks: 0x03 ‖ n (1..maxRecordMarks) ‖ n × (event hash ‖ big-endian unix
// nanos marked) ‖ the session's value (codec.go).
const (
	codecMarks     byte = 0x03
	markLen             = eventHashLen + 8
	maxRecordMarks      = 16
)

// keyEventsPrunedBefore is the meta key of the horizon of record marks.
var keyEventsPrunedBefore = []byte("events_pruned_before")

// splitMarks splits a session record into its marks (n × markLen bytes,
// none when it has none) and the session's value.
func splitMarks(raw []byte) (marks, body []byte, err error) {
	if len(raw) == 0 || raw[0] != codecMarks {
		return nil, raw, nil
	}
	if len(raw) < 2 {
		return nil, nil, fmt.Errorf("decode: short event marks")
	}
	n := int(raw[1])
	end := 2 + n*markLen
	if n == 0 || n > maxRecordMarks || len(raw) <= end {
		return nil, nil, fmt.Errorf("decode: bad event marks (%d of them in %d bytes)", n, len(raw))
	}
	return raw[2:end], raw[end:], nil
}

// SplitEventMarks splits a record of the sessions bucket into the event
// marks it carries (n × 24 bytes, none when it has none) and the session's
// value, for tools and tests that read a file's raw records.
func SplitEventMarks(record []byte) (marks, value []byte, err error) {
	return splitMarks(record)
}

// sessionBody is the session's value within a record (the record itself when
// it is malformed: decoding it then fails).
func sessionBody(raw []byte) []byte {
	if _, body, err := splitMarks(raw); err == nil {
		return body
	}
	return raw
}

// withMarks returns the record of marks and body, in a new slice when there
// are marks.
func withMarks(marks, body []byte) []byte {
	if len(marks) == 0 {
		return body
	}
	out := make([]byte, 0, 2+len(marks)+len(body))
	out = append(out, codecMarks, byte(len(marks)/markLen))
	out = append(out, marks...)
	return append(out, body...)
}

// liveMarks returns the marks not older than horizon, in a new slice.
func liveMarks(marks []byte, horizon uint64) []byte {
	out := make([]byte, 0, len(marks)+markLen)
	for m := marks; len(m) >= markLen; m = m[markLen:] {
		if binary.BigEndian.Uint64(m[eventHashLen:markLen]) >= horizon {
			out = append(out, m[:markLen]...)
		}
	}
	return out
}

// hasMark reports whether marks hold hash, marked at or after horizon.
func hasMark(marks, hash []byte, horizon uint64) bool {
	for m := marks; len(m) >= markLen; m = m[markLen:] {
		if bytes.Equal(m[:eventHashLen], hash) && binary.BigEndian.Uint64(m[eventHashLen:markLen]) >= horizon {
			return true
		}
	}
	return false
}

// eventsHorizon returns meta/events_pruned_before (0 when absent).
func (tx *Tx) eventsHorizon() (uint64, error) {
	meta, err := tx.bucket(bucketMeta)
	if err != nil {
		return 0, err
	}
	v := meta.Get(keyEventsPrunedBefore)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("store: bad meta/%s %x", keyEventsPrunedBefore, v)
	}
	return binary.BigEndian.Uint64(v), nil
}

// sessionRecordOf returns the id and stored record of the session whose HPP
// session is hppSessionID; a nil record when there is none.
func (tx *Tx) sessionRecordOf(hppSessionID string) (string, []byte, error) {
	id, err := tx.SessionIDByHPP(hppSessionID)
	if core.IsNotFound(err) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	b, err := tx.bucket(bucketSessions)
	if err != nil {
		return "", nil, err
	}
	return id, b.Get([]byte(id)), nil
}

// eventLookup is what SeenEvent and MarkEvent learn about an event.
type eventLookup struct {
	seen        bool
	hash        []byte
	id          string // the session whose HPP session it is ("": none)
	marks, body []byte // its record, split
	horizon     uint64
}

// lookupMemo is the last lookupEvent of a Tx: the callback path asks about
// an event twice (SeenEvent, then MarkEvent) with no write in between, and
// the second answer is the first's (its slices still point at the record
// bbolt holds: nothing was written since).
type lookupMemo struct {
	hpp, event string
	writes     int
	ev         eventLookup
}

// lookupEvent finds the mark of an event in its session's record, then in
// event_ids.
func (tx *Tx) lookupEvent(hppSessionID, eventID string) (eventLookup, error) {
	if m := tx.lastLookup; m != nil && m.writes == tx.writes && m.hpp == hppSessionID && m.event == eventID {
		return m.ev, nil
	}
	ev, err := tx.findEvent(hppSessionID, eventID)
	if err == nil {
		tx.lastLookup = &lookupMemo{hpp: hppSessionID, event: eventID, writes: tx.writes, ev: ev}
	}
	return ev, err
}

// findEvent is lookupEvent without the memo.
func (tx *Tx) findEvent(hppSessionID, eventID string) (eventLookup, error) {
	var ev eventLookup
	if err := checkEvent(hppSessionID, eventID); err != nil {
		return ev, err
	}
	ev.hash = tx.eventKey(hppSessionID, eventID)
	id, raw, err := tx.sessionRecordOf(hppSessionID)
	if err != nil {
		return ev, err
	}
	if raw != nil {
		if err := tx.recordEvent(&ev, id, raw); err != nil || ev.seen {
			return ev, err
		}
	}
	ev.seen, err = tx.markedApart(ev.hash)
	return ev, err
}

// recordEvent fills ev, whose hash is set, from raw, the stored record of
// session id: its marks and body, the horizon, and whether the record holds
// the event's mark.
func (tx *Tx) recordEvent(ev *eventLookup, id string, raw []byte) error {
	ev.id = id
	var err error
	if ev.marks, ev.body, err = splitMarks(raw); err != nil {
		return fmt.Errorf("store: session %s: %w", id, err)
	}
	if ev.horizon, err = tx.eventsHorizon(); err != nil {
		return err
	}
	ev.seen = hasMark(ev.marks, ev.hash, ev.horizon)
	return nil
}

// markedApart reports whether event_ids holds the mark of event hash k.
func (tx *Tx) markedApart(k []byte) (bool, error) {
	b, err := tx.bucket(bucketEventIDs)
	if err != nil {
		return false, err
	}
	return b.Get(k) != nil, nil
}

// addMark marks ev's event, not seen, as marked at ns. While ev's record has
// room it returns the record's new marks (its live ones and this one) for
// the caller to write with the record; otherwise (or without a record) it
// marks the event in event_ids and returns nil, the record's marks staying
// as they are.
func (tx *Tx) addMark(ev *eventLookup, ns uint64) ([]byte, error) {
	if ev.id != "" {
		if live := liveMarks(ev.marks, ev.horizon); len(live)/markLen < maxRecordMarks {
			return append(append(live, ev.hash...), be64(ns)...), nil
		}
	}
	return nil, tx.markApart(ev.hash, ns)
}

// SeenEvent reports whether the callback event eventID of an HPP session was
// marked (and not pruned yet).
func (tx *Tx) SeenEvent(hppSessionID, eventID string) (bool, error) {
	ev, err := tx.lookupEvent(hppSessionID, eventID)
	return ev.seen, err
}

// MarkEvent records a callback event as seen at at: in the record of the
// session whose HPP session it is while that has room, in event_ids
// otherwise. Marking it again keeps the first time.
func (tx *Tx) MarkEvent(hppSessionID, eventID string, at time.Time) error {
	ev, err := tx.lookupEvent(hppSessionID, eventID)
	if err != nil || ev.seen {
		return err
	}
	marks, err := tx.addMark(&ev, nanos(at))
	if err != nil || marks == nil {
		return err
	}
	sessions, err := tx.bucket(bucketSessions)
	if err != nil {
		return err
	}
	if err := tx.write(); err != nil {
		return err
	}
	if err := sessions.Put([]byte(ev.id), withMarks(marks, ev.body)); err != nil {
		return fmt.Errorf("store: mark event: %w", err)
	}
	return nil
}

// markApart records the mark of event hash k, marked at ns, in event_ids
// and events_by_time.
func (tx *Tx) markApart(k []byte, ns uint64) error {
	b, err := tx.bucket(bucketEventIDs)
	if err != nil {
		return err
	}
	byTime, err := tx.bucket(bucketEventsByTime)
	if err != nil {
		return err
	}
	if err := tx.write(); err != nil {
		return err
	}
	if err := b.Put(k, be64(ns)); err != nil {
		return fmt.Errorf("store: mark event: %w", err)
	}
	if err := byTime.Put(append(be64(ns), k...), []byte{}); err != nil {
		return fmt.Errorf("store: mark event: %w", err)
	}
	return nil
}

// PruneEvents forgets events marked before before: the marks in session
// records at once, by moving their horizon, and those in event_ids oldest
// first, at most limit of them (limit <= 0: all). It returns how many it
// removed from event_ids. It walks events_by_time from its start, so it
// reads only what it removes.
func (tx *Tx) PruneEvents(before time.Time, limit int) (int, error) {
	horizon, err := tx.eventsHorizon()
	if err != nil {
		return 0, err
	}
	if end := nanos(before); end > horizon {
		meta, err := tx.bucket(bucketMeta)
		if err != nil {
			return 0, err
		}
		if err := tx.write(); err != nil {
			return 0, err
		}
		if err := meta.Put(keyEventsPrunedBefore, be64(end)); err != nil {
			return 0, fmt.Errorf("store: prune events: %w", err)
		}
	}
	byTime, err := tx.bucket(bucketEventsByTime)
	if err != nil {
		return 0, err
	}
	ids, err := tx.bucket(bucketEventIDs)
	if err != nil {
		return 0, err
	}
	end := nanos(before)
	var keys [][]byte
	c := byTime.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) != 8+eventHashLen {
			return 0, fmt.Errorf("store: bad events_by_time key %x", k)
		}
		ns, _, _ := splitTimeKey(k)
		if ns >= end || (limit > 0 && len(keys) >= limit) {
			break
		}
		// Copies: deleting rewrites the pages k points into.
		keys = append(keys, bytes.Clone(k))
	}
	if len(keys) == 0 {
		return 0, nil
	}
	if err := tx.write(); err != nil {
		return 0, err
	}
	for i, k := range keys {
		if err := ids.Delete(k[8:]); err != nil {
			return i, fmt.Errorf("store: prune events: %w", err)
		}
		if err := byTime.Delete(k); err != nil {
			return i, fmt.Errorf("store: prune events: %w", err)
		}
	}
	return len(keys), nil
}
