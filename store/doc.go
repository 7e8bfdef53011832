// Package store is hppd's storage contract: the interfaces, shared types and
// errors the flows (hpp, webhook, events, poller) use, and nothing of any
// database. An implementation lives in a package of its own
// (store/boltstore: one bbolt file, the default; store/pgstore: PostgreSQL,
// which several replicas share) and passes the contract suite in
// store/storetest; neither is a change to the callers. What a valid record
// is (ids, storefront names, statuses) is the contract's too (check.go):
// every implementation refuses the same records with the same errors.
//
// # What an implementation promises
//
//   - Atomicity: everything one Update or Batch function writes commits
//     together or not at all, so a fact and the jobs it calls for (the
//     outbox) are one commit; a function's error rolls its writes back.
//   - Durability before return: when Update or Batch returns nil, the commit
//     survives a crash (SIGKILL, power loss) right after; a callback is
//     answered 2xx only then.
//   - Isolation: View sees one consistent snapshot. Inside one Update or
//     Batch function, a read-then-write sees no other writer's commit in
//     between for every record read by its key (an id, an HPP or KP session
//     id, an event, an Idempotency-Key, a customer token, a lease name),
//     present or absent: no other transaction writes that key until the
//     function's transaction ends. Scans (due lists, listings, counts, All*)
//     inside a read-write transaction promise no more than in a View: the
//     flows follow them with reads by key. A read in a View followed by a
//     write in a later transaction gives no such promise: the write must
//     check again what it depends on.
//   - What may run twice: a Batch function (group commit reruns the others
//     of a batch when one fails after writing), so it must be idempotent
//     and report expected outcomes through variables, not errors.
//   - Uniqueness by id: AddJob inserts only when no job has the id, so ids
//     that name a job's purpose (place_order/<session>) make one job per
//     purpose however many transactions, on however many processes, try.
//   - Due sessions: SessionsDue returns every session whose CheckAt has
//     come, and may return some whose CheckAt is later. boltstore's due index
//     is a lower bound (a callback's write deletes no entry, see KeepDue), pgstore's is exact (a check_at column). The poller reads each
//     session it gets, skips one not due and re-files it with PutSession.
//   - Getters return fresh values; records a caller changes are written back
//     only through the Put methods.
//
// Optionally, a store whose writes go through a single writer lets the
// callers encode a session write before their transaction (prepared
// writes, prepared.go: SessionVersions); a prepared write is written only
// if the session did not change since it was read, and the caller falls
// back to the ordinary read-change-write otherwise. boltstore offers them,
// pgstore does not; storetest checks both.
//
// Who runs a job, creates a session, starts a fallback or answers an
// Idempotency-Key is a lease in the store (lease.go has the rules), never a
// process's memory, so nothing relies on one process being the only one.
//
// Pruning: the transactions expose what retention needs of the contract
// (PruneEvents, deletes); the bounded, resumable walk that finds old records
// is the implementation's (boltstore.Pruner, pgstore.Pruner), behind the
// poller's small Pruner interface, with PruneConfig and PruneResult shared
// here; storetest.Retention checks that they delete the same records.
package store
