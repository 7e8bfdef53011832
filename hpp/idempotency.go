package hpp

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Storefront Idempotency-Keys (Stripe's scheme, kept in the store so that
// every process sees one owner per key).
//
// A request with a key claims it (ClaimKey) before it runs and records its
// answer (FinishKey) after. A key is owned by one request at a time: the
// claim writes the key's record (the request's hash, its scope) and takes
// the lease "idempotency/<storefront>\x00<key>" in the same transaction, so
// a duplicate that arrives while the first runs, at this process or another,
// finds the lease in force and gets 409. A request whose process died
// leaves a record without a live lease: the retry takes it over, keeping the
// scope, so the ids it derives from key and scope find what the first
// attempt made instead of making it again. The answer is recorded only while
// the claim's lease holds, in the transaction that ends it, so a request
// that lost its key to a takeover cannot overwrite the answer of the one
// that took it.
//
// A repeat with the same JSON body gets the stored answer; another body,
// 409. Only success answers are kept: after a 5xx the record stays without
// an owner (a retry takes it over with its scope, and another body starts
// afresh); after a 4xx (a refusal that changed nothing) it is deleted. A
// record older than the TTL is forgotten: the key then starts a new request
// in a new scope.

// KeyClaim is the outcome of ClaimKey.
type KeyClaim struct {
	// Replay is the stored answer to send again; nil: run the request.
	Replay *core.IdempotencyRecord
	// Scope goes with the key into the ids the request derives
	// (ScopedKey).
	Scope string

	storefront, key string
	hash            []byte
	lease           core.Lease
}

// ScopedKey is what the flows derive ids from: the key alone for a record
// without a scope (written before scopes existed), else key ‖ 0x00 ‖ scope
// (a header value cannot hold a NUL byte).
func (k *KeyClaim) ScopedKey() string {
	if k.Scope == "" {
		return k.key
	}
	return k.key + "\x00" + k.Scope
}

func idempotencyLease(storefront, key string) string {
	return "idempotency/" + storefront + "\x00" + key
}

// ClaimKey claims a storefront's Idempotency-Key for a request whose
// method, path and canonical body hash to hash; records created ttl or
// longer ago (ttl > 0) are forgotten. A key in use by a live request, or
// used with another request, is a conflict.
func (s *Service) ClaimKey(storefront, key string, hash []byte, ttl time.Duration) (*KeyClaim, error) {
	now := s.now()
	k := &KeyClaim{storefront: storefront, key: key, hash: hash}
	name := idempotencyLease(storefront, key)
	err := s.db.Update(func(tx store.Tx) error {
		k.Replay, k.Scope = nil, newScope()
		rec, err := tx.Idempotency(storefront, key)
		if err != nil && !core.IsNotFound(err) {
			return err
		}
		if err == nil && ttl > 0 && now.Sub(rec.CreatedAt) >= ttl {
			err = core.ErrNotFound // forgotten: the key names a new request
		}
		if err == nil && !rec.Done && rec.Owner == "" && !bytes.Equal(rec.RequestHash, hash) {
			err = core.ErrNotFound // released after a 5xx: another body is a new request
		}
		if err == nil {
			k.Scope = rec.Scope
			if !bytes.Equal(rec.RequestHash, hash) {
				return core.Errorf(core.CodeConflict, "Idempotency-Key was used with another request")
			}
			if rec.Done {
				k.Replay = rec
				return nil
			}
		}
		// New, released, or left by a request whose lease ended (its
		// process died): take it. A live request's lease refuses.
		if k.lease, err = tx.AcquireLease(name, s.cfg.Owner, now, s.cfg.LeaseTTL); err != nil {
			if errors.Is(err, store.ErrLeaseHeld) {
				return core.Errorf(core.CodeConflict, "a request with this Idempotency-Key is in progress")
			}
			return err
		}
		return tx.PutIdempotency(&core.IdempotencyRecord{Storefront: storefront, Key: key, RequestHash: hash, Owner: s.cfg.Owner, CreatedAt: now, Scope: k.Scope})
	})
	if err != nil {
		var ce *core.Error
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("claim idempotency key: %w", err)
	}
	return k, nil
}

// FinishKey records the answer of the request that claimed k (status and
// body; see the rules above) and ends its claim. A claim lost meanwhile (its
// lease expired and another request took the key) records nothing.
func (s *Service) FinishKey(k *KeyClaim, status int, body []byte) error {
	err := s.db.Update(func(tx store.Tx) error {
		if err := tx.ReleaseLease(idempotencyLease(k.storefront, k.key), k.lease); err != nil {
			return err
		}
		rec, err := tx.Idempotency(k.storefront, k.key)
		if err != nil {
			return err
		}
		created := rec.CreatedAt
		switch {
		case status >= 500:
			// Released for a retry, which takes it over and keeps its
			// scope, so it finds what this attempt made.
			return tx.PutIdempotency(&core.IdempotencyRecord{Storefront: k.storefront, Key: k.key, RequestHash: k.hash, CreatedAt: created, Scope: k.Scope})
		case status >= 400:
			return tx.DeleteIdempotency(k.storefront, k.key)
		}
		return tx.PutIdempotency(&core.IdempotencyRecord{Storefront: k.storefront, Key: k.key, RequestHash: k.hash, Status: status, Body: body, Done: true, CreatedAt: created, Scope: k.Scope})
	})
	if err != nil {
		return fmt.Errorf("record idempotency answer: %w", err)
	}
	return nil
}

// newScope returns a fresh idempotency scope (core.IdempotencyRecord.Scope).
func newScope() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
