package store

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"time"
)

// eventHashLen is the length of an event key: the first 16 bytes of
// SHA-256(HPP session id ‖ 0x00 ‖ event id). Fixed-width keys keep the
// de-duplication buckets small whatever Klarna (or a forger who passed the
// secret check) sends as event_id; 128 bits make a collision negligible.
const eventHashLen = 16

func eventKey(hppSessionID, eventID string) []byte {
	h := sha256.New()
	h.Write([]byte(hppSessionID))
	h.Write([]byte{sep})
	h.Write([]byte(eventID))
	return h.Sum(nil)[:eventHashLen]
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
	return b.Get(eventKey(hppSessionID, eventID)) != nil, nil
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
	k := eventKey(hppSessionID, eventID)
	if b.Get(k) != nil {
		return nil
	}
	if err := tx.write(); err != nil {
		return err
	}
	ns := nanos(at)
	if err := b.Put(k, be64(ns)); err != nil {
		return fmt.Errorf("store: mark event: %w", err)
	}
	bt, err := tx.bucket(bucketEventsByTime)
	if err != nil {
		return err
	}
	if err := bt.Put(append(be64(ns), k...), []byte{}); err != nil {
		return fmt.Errorf("store: mark event: %w", err)
	}
	return nil
}

// PruneEvents forgets events marked before before, oldest first, at most
// limit of them (limit <= 0: all), and returns how many it removed. It walks
// events_by_time from its start, so it reads only what it removes.
func (tx *Tx) PruneEvents(before time.Time, limit int) (int, error) {
	bt, err := tx.bucket(bucketEventsByTime)
	if err != nil {
		return 0, err
	}
	b, err := tx.bucket(bucketEventIDs)
	if err != nil {
		return 0, err
	}
	end := nanos(before)
	var keys [][]byte
	c := bt.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		ns, _, err := splitTimeKey(k)
		if err != nil {
			return 0, err
		}
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
		if err := bt.Delete(k); err != nil {
			return i, fmt.Errorf("store: prune events: %w", err)
		}
		if err := b.Delete(k[8:]); err != nil {
			return i, fmt.Errorf("store: prune events: %w", err)
		}
	}
	return len(keys), nil
}
