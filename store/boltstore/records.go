package boltstore

import (
	"fmt"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Idempotency returns the record of a storefront's Idempotency-Key, or
// core.ErrNotFound.
func (tx *Tx) Idempotency(storefront, key string) (*core.IdempotencyRecord, error) {
	var r core.IdempotencyRecord
	if err := tx.getPair(bucketIdempotency, storefront, key, &r); err != nil {
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
	return tx.putPair(bucketIdempotency, r.Storefront, r.Key, r, fast)
}

// DeleteIdempotency removes a record; an absent one is not an error.
func (tx *Tx) DeleteIdempotency(storefront, key string) error {
	if err := store.CheckStorefront(storefront); err != nil {
		return err
	}
	b, err := tx.bucket(bucketIdempotency)
	if err != nil {
		return err
	}
	k := pairKey(storefront, key)
	if b.Get(k) == nil {
		return nil
	}
	if err := tx.write(); err != nil {
		return err
	}
	if err := b.Delete(k); err != nil {
		return fmt.Errorf("store: delete idempotency record: %w", err)
	}
	return nil
}

// Token returns hppd's view of a storefront's customer token, or
// core.ErrNotFound.
func (tx *Tx) Token(storefront, customerToken string) (*core.TokenInfo, error) {
	var t core.TokenInfo
	if err := tx.getPair(bucketTokens, storefront, customerToken, &t); err != nil {
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
	return tx.putPair(bucketTokens, t.Storefront, t.CustomerToken, t, fast)
}

// getPair reads the value under storefront ‖ 0x00 ‖ key. Error messages
// never contain key: it may be a customer token.
func (tx *Tx) getPair(name []byte, storefront, key string, v any) error {
	if store.CheckStorefront(storefront) != nil || key == "" {
		// A storefront with a NUL could read another's key space.
		return core.ErrNotFound
	}
	b, err := tx.bucket(name)
	if err != nil {
		return err
	}
	raw := b.Get(pairKey(storefront, key))
	if raw == nil {
		return core.ErrNotFound
	}
	if err := decodeValue(raw, v); err != nil {
		return fmt.Errorf("store: %s of %s: %w", name, storefront, err)
	}
	return nil
}

func (tx *Tx) putPair(name []byte, storefront, key string, v any, d density) error {
	if err := store.CheckStorefront(storefront); err != nil {
		return err
	}
	b, err := tx.bucket(name)
	if err != nil {
		return err
	}
	val, err := encodeValue(v, d)
	if err != nil {
		return fmt.Errorf("store: put %s of %s: %w", name, storefront, err)
	}
	if err := tx.write(); err != nil {
		return err
	}
	if err := b.Put(pairKey(storefront, key), val); err != nil {
		return fmt.Errorf("store: put %s of %s: %w", name, storefront, err)
	}
	return nil
}

// TokenOwner returns the storefront that owns a customer token (the first
// to charge it), or "" when no storefront does yet.
func (tx *Tx) TokenOwner(customerToken string) (string, error) {
	if customerToken == "" {
		return "", nil
	}
	b, err := tx.bucket(bucketTokenOwners)
	if err != nil {
		return "", err
	}
	return string(b.Get([]byte(customerToken))), nil
}

// SetTokenOwner records storefront as the owner of a customer token.
func (tx *Tx) SetTokenOwner(customerToken, storefront string) error {
	if err := store.CheckID("customer_token", customerToken); err != nil {
		return err
	}
	if err := store.CheckStorefront(storefront); err != nil {
		return err
	}
	b, err := tx.bucket(bucketTokenOwners)
	if err != nil {
		return err
	}
	if err := tx.write(); err != nil {
		return err
	}
	if err := b.Put([]byte(customerToken), []byte(storefront)); err != nil {
		return fmt.Errorf("store: put token owner of %s: %w", storefront, err)
	}
	return nil
}
