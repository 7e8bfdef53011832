package pgstore

import (
	"hash/fnv"
	"slices"
)

// Key locks. Update and Batch run at READ COMMITTED, where every statement
// reads the rows committed when it starts, and keep the contract's promise
// (a read-then-write inside one function sees no other writer's commit in
// between) with two-phase locking on keys: before a keyed read or write in a
// read-write transaction, the transaction takes the key's lock, a
// transaction-scoped advisory lock (pg_advisory_xact_lock) on a 64-bit hash
// of what names the record, and holds it until it commits or rolls back. A
// reader of a key therefore waits for a writer of it to finish, and its read,
// a statement that starts after the lock is granted, sees that writer's
// commit; nobody else writes the key until the reader's transaction ends.
// Transactions that touch different keys never wait for each other, and none
// is rerun for having read what another wrote, as a SERIALIZABLE one is.
//
// An advisory lock names a key whether or not its row exists, so it covers
// what a row lock (SELECT … FOR UPDATE) cannot: "no such record yet, so I
// create it" (an Idempotency-Key taken by its first request, a callback
// event not marked yet, a lookup by HPP or KP session id). The lock goes out
// in the same round trip as the statement it guards (a pipelined pgx.Batch:
// the server runs the read only after the lock is granted), and a key the
// transaction holds already costs nothing.
//
// Two transactions that take two keys in opposite orders deadlock;
// PostgreSQL aborts one after deadlock_timeout (1 s by default) and Update
// runs it again. The flows read the records of one piece of work in one
// order (a callback: its event, then its session, then the session's
// jobs), so that is rare. Two names whose hashes collide share a lock: a
// wait, never a wrong answer.
//
// Scans (due-scans, listings, counts, All*) take no locks: inside Update
// they read what was committed when each statement started, a hint that
// the flows follow with reads by key, which do lock. Statements that change
// a job's lease (claims, fenced results) are single UPDATEs or DELETEs whose
// WHERE PostgreSQL evaluates again on the newest row version after any row
// lock wait, so they are exact with or without a key lock; ClaimDueJobs,
// which runs outside a Tx, relies on that, and on the row lock a
// read-write transaction's Job read takes besides the key lock (its SKIP
// LOCKED passes over a job a transaction read and may write back).

// lockKey names a record: its kind (one letter per table or lookup) and
// what identifies it there.
type lockKey struct {
	kind byte
	name string
}

// Kinds of lockKey.
const (
	lockSession     = 's' // sessions.id
	lockHPP         = 'h' // sessions.hpp_session_id
	lockKP          = 'k' // sessions.kp_session_id
	lockCharge      = 'c' // charges.id
	lockJob         = 'j' // jobs.id
	lockEvent       = 'e' // event_ids.hash
	lockIdempotency = 'i' // idempotency (storefront, key)
	lockToken       = 't' // tokens (storefront, customer_token)
	lockTokenOwner  = 'o' // token_owners.customer_token
	lockLease       = 'l' // leases.name
)

func key(kind byte, name string) []lockKey { return []lockKey{{kind, name}} }

// pairName is the name of a (storefront, key) record: a storefront name has
// no NUL.
func pairName(storefront, k string) string { return storefront + "\x00" + k }

func (k lockKey) hash() int64 {
	h := fnv.New64a()
	h.Write([]byte{k.kind, 0})
	h.Write([]byte(k.name))
	return int64(h.Sum64())
}

// lockStmt is the statement that takes some key locks.
type lockStmt struct {
	sql    string
	args   []any
	hashes []int64
	tx     *Tx
}

// taken records the locks as held: the statement succeeded.
func (l *lockStmt) taken() {
	if l.tx.held == nil {
		l.tx.held = make(map[int64]struct{}, 4)
	}
	for _, h := range l.hashes {
		l.tx.held[h] = struct{}{}
	}
}

// lockStatement is the statement taking those of keys this read-write
// transaction does not hold yet, in hash order (one statement's locks never
// deadlock with another's); nil when there are none, or in a View.
func (tx *Tx) lockStatement(keys []lockKey) *lockStmt {
	if !tx.rw {
		return nil
	}
	var hs []int64
	for _, k := range keys {
		if k.name == "" {
			continue
		}
		h := k.hash()
		if _, ok := tx.held[h]; !ok && !slices.Contains(hs, h) {
			hs = append(hs, h)
		}
	}
	switch len(hs) {
	case 0:
		return nil
	case 1:
		return &lockStmt{sql: `SELECT pg_advisory_xact_lock($1)`, args: []any{hs[0]}, hashes: hs, tx: tx}
	}
	slices.Sort(hs)
	return &lockStmt{sql: `SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k`,
		args: []any{hs}, hashes: hs, tx: tx}
}
