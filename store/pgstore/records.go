package pgstore

import (
	"crypto/sha256"
	"fmt"
	"time"

	json "github.com/go-json-experiment/json/v1"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// eventHash is boltstore's de-duplication key of a callback event: the first
// 16 bytes of SHA-256(HPP session id ‖ 0x00 ‖ event id).
func eventHash(hppSessionID, eventID string) []byte {
	h := sha256.New()
	h.Write([]byte(hppSessionID))
	h.Write([]byte{0})
	h.Write([]byte(eventID))
	return h.Sum(nil)[:16]
}

func checkEvent(hppSessionID, eventID string) error {
	if err := store.CheckID("hpp_session_id", hppSessionID); err != nil {
		return err
	}
	return store.CheckID("event_id", eventID)
}

// SeenEvent reports whether a callback event was marked (and not pruned).
func (tx *Tx) SeenEvent(hppSessionID, eventID string) (bool, error) {
	if err := checkEvent(hppSessionID, eventID); err != nil {
		return false, err
	}
	var seen bool
	h := eventHash(hppSessionID, eventID)
	if err := tx.lockedRow(key(lockEvent, string(h)), `SELECT EXISTS (SELECT 1 FROM event_ids WHERE hash = $1)`, []any{h}, &seen); err != nil {
		return false, fmt.Errorf("store: seen event: %w", err)
	}
	return seen, nil
}

// MarkEvent records a callback event as seen at at; marking it again keeps
// the first time.
func (tx *Tx) MarkEvent(hppSessionID, eventID string, at time.Time) error {
	if err := checkEvent(hppSessionID, eventID); err != nil {
		return err
	}
	h := eventHash(hppSessionID, eventID)
	if _, err := tx.lockedExec(key(lockEvent, string(h)), `INSERT INTO event_ids (hash, marked_at) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING`,
		h, ns(at)); err != nil {
		return fmt.Errorf("store: mark event: %w", err)
	}
	return nil
}

// PruneEvents forgets events marked before before, oldest first, at most
// limit (<= 0: all), by the event_ids_by_time index.
func (tx *Tx) PruneEvents(before time.Time, limit int) (int, error) {
	tag, err := tx.exec(`DELETE FROM event_ids WHERE hash IN (
		SELECT hash FROM event_ids WHERE marked_at < $1 ORDER BY marked_at, hash LIMIT $2)`, ns(before), sqlLimit(limit))
	if err != nil {
		return 0, fmt.Errorf("store: prune events: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Idempotency returns a storefront's record of an Idempotency-Key, or
// core.ErrNotFound.
func (tx *Tx) Idempotency(storefront, key string) (*core.IdempotencyRecord, error) {
	var r core.IdempotencyRecord
	if err := tx.getPair(lockIdempotency, `SELECT body FROM idempotency WHERE storefront = $1 AND key = $2`, storefront, key, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// PutIdempotency inserts or replaces a record.
func (tx *Tx) PutIdempotency(r *core.IdempotencyRecord) error {
	if r == nil {
		return fmt.Errorf("store: put idempotency record: nil")
	}
	if err := store.CheckID("idempotency_key", r.Key); err != nil {
		return err
	}
	if err := store.CheckStorefront(r.Storefront); err != nil {
		return err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("store: put idempotency record of %s: %w", r.Storefront, err)
	}
	if _, err := tx.lockedExec(key(lockIdempotency, pairName(r.Storefront, r.Key)), `INSERT INTO idempotency (storefront, key, created_at, body) VALUES ($1, $2, $3, $4)
		ON CONFLICT (storefront, key) DO UPDATE SET created_at = $3, body = $4`, r.Storefront, []byte(r.Key), ns(r.CreatedAt), body); err != nil {
		return fmt.Errorf("store: put idempotency record of %s: %w", r.Storefront, err)
	}
	return nil
}

// DeleteIdempotency removes a record; an absent one is not an error.
func (tx *Tx) DeleteIdempotency(storefront, k string) error {
	if err := store.CheckStorefront(storefront); err != nil {
		return err
	}
	if _, err := tx.lockedExec(key(lockIdempotency, pairName(storefront, k)), `DELETE FROM idempotency WHERE storefront = $1 AND key = $2`, storefront, []byte(k)); err != nil {
		return fmt.Errorf("store: delete idempotency record of %s: %w", storefront, err)
	}
	return nil
}

// Token returns hppd's view of a storefront's customer token, or
// core.ErrNotFound.
func (tx *Tx) Token(storefront, customerToken string) (*core.TokenInfo, error) {
	var t core.TokenInfo
	if err := tx.getPair(lockToken, `SELECT body FROM tokens WHERE storefront = $1 AND customer_token = $2`, storefront, customerToken, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// PutToken inserts or replaces t.
func (tx *Tx) PutToken(t *core.TokenInfo) error {
	if t == nil {
		return fmt.Errorf("store: put token: nil")
	}
	if err := store.CheckID("customer_token", t.CustomerToken); err != nil {
		return err
	}
	if err := store.CheckStorefront(t.Storefront); err != nil {
		return err
	}
	body, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("store: put token of %s: %w", t.Storefront, err)
	}
	if _, err := tx.lockedExec(key(lockToken, pairName(t.Storefront, t.CustomerToken)), `INSERT INTO tokens (storefront, customer_token, body) VALUES ($1, $2, $3)
		ON CONFLICT (storefront, customer_token) DO UPDATE SET body = $3`, t.Storefront, []byte(t.CustomerToken), body); err != nil {
		return fmt.Errorf("store: put token of %s: %w", t.Storefront, err)
	}
	return nil
}

// getPair reads and decodes the body of a (storefront, key) row. Error
// messages never contain key: it may be a customer token.
func (tx *Tx) getPair(kind byte, sql, storefront, k string, v any) error {
	if store.CheckStorefront(storefront) != nil || k == "" {
		return core.ErrNotFound
	}
	var body []byte
	if err := tx.lockedRow(key(kind, pairName(storefront, k)), sql, []any{storefront, []byte(k)}, &body); err != nil {
		if core.IsNotFound(err) {
			return err
		}
		return fmt.Errorf("store: record of %s: %w", storefront, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("store: record of %s: %w", storefront, err)
	}
	return nil
}

// TokenOwner returns the storefront that owns a customer token, or "".
func (tx *Tx) TokenOwner(customerToken string) (string, error) {
	if customerToken == "" {
		return "", nil
	}
	var sf string
	err := tx.lockedRow(key(lockTokenOwner, customerToken), `SELECT storefront FROM token_owners WHERE customer_token = $1`, []any{[]byte(customerToken)}, &sf)
	if core.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: token owner: %w", err)
	}
	return sf, nil
}

// SetTokenOwner records storefront as the owner of a customer token.
func (tx *Tx) SetTokenOwner(customerToken, storefront string) error {
	if err := store.CheckID("customer_token", customerToken); err != nil {
		return err
	}
	if err := store.CheckStorefront(storefront); err != nil {
		return err
	}
	if _, err := tx.lockedExec(key(lockTokenOwner, customerToken), `INSERT INTO token_owners (customer_token, storefront) VALUES ($1, $2)
		ON CONFLICT (customer_token) DO UPDATE SET storefront = $2`, []byte(customerToken), storefront); err != nil {
		return fmt.Errorf("store: put token owner of %s: %w", storefront, err)
	}
	return nil
}
