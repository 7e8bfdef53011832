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
//
// A flow may save the two commits the claim and the answer cost. POST
// /v1/charges prepares its key with a read (PrepareKey) and takes it in the
// transaction that records the charge (claimPrepared), which reads the key
// again and answers "in progress" when anything changed meanwhile; its
// fallback records the answer in the transaction that links the fallback
// session (keyAnswer), and the handler sends those stored bytes.

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
	at              time.Time     // when the request claimed it
	ttl             time.Duration // ClaimKey's ttl
	prepared        bool          // PrepareKey's, not yet taken
	reply           *keyReply     // the answer, once a flow recorded it
}

// keyReply is a request's answer as stored under its key.
type keyReply struct {
	status int
	body   []byte
}

// Answered returns the answer a flow recorded under the key in its own last
// transaction (see ChargeRequest.Key); the caller sends exactly that, and
// FinishKey then has nothing left to do.
func (k *KeyClaim) Answered() (status int, body []byte, ok bool) {
	if k == nil || k.reply == nil {
		return 0, nil, false
	}
	return k.reply.status, k.reply.body, true
}

func (k *KeyClaim) answered(r keyReply) { k.reply = &r }

// keyAnswer is a request's key claim with the renderer of its success
// answer, for a flow that records the answer in its last transaction
// instead of one of its own after it (FinishKey).
type keyAnswer struct {
	key    *KeyClaim
	render func(*core.Charge, *core.Session) (status int, body []byte, err error)
}

// finish records the answer rendered from c and sess under the key inside
// tx, ending the claim. A claim lost meanwhile records nothing and is not an
// error (the zero keyReply; FinishKey then finds it lost too).
func (a *keyAnswer) finish(tx store.Tx, c *core.Charge, sess *core.Session) (keyReply, error) {
	status, body, err := a.render(c, sess)
	if err != nil {
		return keyReply{}, fmt.Errorf("render the answer: %w", err)
	}
	if err := finishKey(tx, a.key, status, body); err != nil {
		if errors.Is(err, store.ErrLeaseLost) {
			return keyReply{}, nil
		}
		return keyReply{}, err
	}
	return keyReply{status: status, body: body}, nil
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
	k := &KeyClaim{storefront: storefront, key: key, hash: hash, at: s.now(), ttl: ttl}
	err := s.db.Update(func(tx store.Tx) error {
		if err := readKey(tx, k, newScope()); err != nil || k.Replay != nil {
			return err
		}
		return s.takeKey(tx, k)
	})
	if err != nil {
		return nil, claimError(err)
	}
	return k, nil
}

// PrepareKey is ClaimKey for a flow whose first transaction takes the key
// itself (ChargeRequest.Key), in the same commit as its first record: the
// claim and what the request makes under it are on disk together or not at
// all, and a request that ends before that transaction leaves nothing
// behind. PrepareKey only reads: it finds the answer to replay, a conflict,
// or the scope the claim will have; the flow's transaction (claimPrepared)
// reads the key again and refuses, as a request in progress, when anything
// changed meanwhile.
func (s *Service) PrepareKey(storefront, key string, hash []byte, ttl time.Duration) (*KeyClaim, error) {
	k := &KeyClaim{storefront: storefront, key: key, hash: hash, at: s.now(), ttl: ttl, prepared: true}
	err := s.db.View(func(tx store.Tx) error {
		if err := readKey(tx, k, newScope()); err != nil || k.Replay != nil {
			return err
		}
		l, err := tx.Lease(idempotencyLease(storefront, key))
		if err != nil {
			return err
		}
		if l.Held(k.at) {
			return errKeyInProgress()
		}
		return nil
	})
	if err != nil {
		return nil, claimError(err)
	}
	if k.Replay != nil {
		k.prepared = false
	}
	return k, nil
}

// claimPrepared takes a prepared key inside the flow's first transaction;
// it does nothing for a key claimed already (ClaimKey).
func (s *Service) claimPrepared(tx store.Tx, k *KeyClaim) error {
	if k == nil || !k.prepared {
		return nil
	}
	scope := k.Scope
	if err := readKey(tx, k, scope); err != nil {
		return err
	}
	if k.Replay != nil || k.Scope != scope {
		// Another request took the key since PrepareKey read it.
		k.Replay, k.Scope = nil, scope
		return errKeyInProgress()
	}
	return s.takeKey(tx, k)
}

// claimed marks a prepared claim as taken, once its transaction committed.
func (k *KeyClaim) claimed() {
	if k != nil {
		k.prepared = false
	}
}

// readKey reads the key's record and decides, by the rules above, whether
// the request replays its answer (k.Replay) or may take the key, and with
// which scope (fresh for a new key); a conflict is an error.
func readKey(tx store.Tx, k *KeyClaim, fresh string) error {
	k.Replay, k.Scope = nil, fresh
	rec, err := tx.Idempotency(k.storefront, k.key)
	if err != nil && !core.IsNotFound(err) {
		return err
	}
	if err == nil && k.ttl > 0 && k.at.Sub(rec.CreatedAt) >= k.ttl {
		err = core.ErrNotFound // forgotten: the key names a new request
	}
	if err == nil && !rec.Done && rec.Owner == "" && !bytes.Equal(rec.RequestHash, k.hash) {
		err = core.ErrNotFound // released after a 5xx: another body is a new request
	}
	if err == nil {
		k.Scope = rec.Scope
		if !bytes.Equal(rec.RequestHash, k.hash) {
			return core.Errorf(core.CodeConflict, "Idempotency-Key was used with another request")
		}
		if rec.Done {
			k.Replay = rec
		}
	}
	return nil
}

// takeKey takes the key for k's request: new, released, or left by a
// request whose lease ended (its process died). A live request's lease
// refuses.
func (s *Service) takeKey(tx store.Tx, k *KeyClaim) error {
	var err error
	if k.lease, err = tx.AcquireLease(idempotencyLease(k.storefront, k.key), s.cfg.Owner, k.at, s.cfg.LeaseTTL); err != nil {
		if errors.Is(err, store.ErrLeaseHeld) {
			return errKeyInProgress()
		}
		return err
	}
	return tx.PutIdempotency(&core.IdempotencyRecord{Storefront: k.storefront, Key: k.key, RequestHash: k.hash, Owner: s.cfg.Owner, CreatedAt: k.at, Scope: k.Scope})
}

func errKeyInProgress() error {
	return core.Errorf(core.CodeConflict, "a request with this Idempotency-Key is in progress")
}

func claimError(err error) error {
	var ce *core.Error
	if errors.As(err, &ce) {
		return err
	}
	return fmt.Errorf("claim idempotency key: %w", err)
}

// FinishKey records the answer of the request that claimed k (status and
// body; see the rules above) and ends its claim. A claim lost meanwhile (its
// lease expired and another request took the key) records nothing. A claim
// whose answer its flow recorded already (Answered), or a prepared one its
// flow never took (PrepareKey), needs nothing more.
func (s *Service) FinishKey(k *KeyClaim, status int, body []byte) error {
	if k.reply != nil || k.prepared {
		return nil // recorded already; or prepared and never taken: nothing to record
	}
	if err := s.db.Update(func(tx store.Tx) error { return finishKey(tx, k, status, body) }); err != nil {
		return fmt.Errorf("record idempotency answer: %w", err)
	}
	return nil
}

// finishKey is FinishKey's work inside tx. It writes nothing when the claim
// was lost (store.ErrLeaseLost).
func finishKey(tx store.Tx, k *KeyClaim, status int, body []byte) error {
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
}

// newScope returns a fresh idempotency scope (core.IdempotencyRecord.Scope).
func newScope() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
