package boltstore

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"time"
)

// Callback events are de-duplicated by a hash of (HPP session id, event id):
// the first 16 bytes of SHA-256(HPP session id ‖ 0x00 ‖ event id), the key in
// event_ids. Fixed-width keys keep the entries small whatever Klarna (or a
// forger who passed the secret check) sends as event_id; 128 bits make a
// collision negligible. events_by_time (time ‖ hash) lets PruneEvents find old
// events in time order.
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
	if err := checkID("hpp_session_id", hppSessionID); err != nil {
		return err
	}
	return checkID("event_id", eventID)
}

// SeenEvent reports whether the callback event eventID of an HPP session was
// marked (and not pruned yet).
func (tx *Tx) SeenEvent(hppSessionID, eventID string) (bool, error) {
	if err := checkEvent(hppSessionID, eventID); err != nil {
		return false, err
	}
	b, err := tx.bucket(bucketEventIDs)
	if err != nil {
		return false, err
	}
	return b.Get(tx.eventKey(hppSessionID, eventID)) != nil, nil
}

// MarkEvent records a callback event as seen at at. Marking it again keeps
// the first time.
func (tx *Tx) MarkEvent(hppSessionID, eventID string, at time.Time) error {
	if err := checkEvent(hppSessionID, eventID); err != nil {
		return err
	}
	b, err := tx.bucket(bucketEventIDs)
	if err != nil {
		return err
	}
	k := tx.eventKey(hppSessionID, eventID)
	if b.Get(k) != nil {
		return nil
	}
	byTime, err := tx.bucket(bucketEventsByTime)
	if err != nil {
		return err
	}
	if err := tx.write(); err != nil {
		return err
	}
	ns := nanos(at)
	if err := b.Put(k, be64(ns)); err != nil {
		return fmt.Errorf("store: mark event: %w", err)
	}
	if err := byTime.Put(append(be64(ns), k...), []byte{}); err != nil {
		return fmt.Errorf("store: mark event: %w", err)
	}
	return nil
}

// PruneEvents forgets events marked before before, oldest first, at most
// limit of them (limit <= 0: all), and returns how many it removed. It walks
// events_by_time from its start, so it reads only what it removes.
func (tx *Tx) PruneEvents(before time.Time, limit int) (int, error) {
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
