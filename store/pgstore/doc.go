// Package pgstore implements hppd's store contract (package store) on a
// PostgreSQL database that several hppd processes (replicas) share. *DB is a
// store.Store and *Tx a store.Tx; Open, Close, Check, migrations and the
// batch claims (ClaimDueJobs, ClaimDueJobsOf) are this package's own: the
// wiring and the admin tools use the first, hpp's job runner ClaimDueJobsOf
// through an interface of its own. hppd selects it when HPPD_DATABASE_URL is set; bbolt
// (store/boltstore) stays the embedded default.
//
// # Transactions
//
// Update and Batch run at READ COMMITTED with key locks (locks.go): every
// keyed read or write in a read-write transaction (a session, charge or job
// by id, a session by HPP or KP session id, a callback event, an
// Idempotency-Key, a customer token, a named lease) first takes a
// transaction-scoped advisory lock on its key, sent in the same round trip,
// and holds it to the commit. That is two-phase locking on the records the
// flows read and write, which is what the contract's "a read-then-write
// inside one function sees no other writer's commit in between" needs once
// writers are other processes, without SERIALIZABLE's predicate locks, whose
// false conflicts reran each callback 2 to 6 times under load. Because the
// lock names a key rather than a row, it also covers the absent record:
// "no mark yet, so this callback is new", "no record of this
// Idempotency-Key, so this request owns it", "no session has this HPP
// session id". Uniqueness that must hold whatever a transaction read is
// the schema's: one job per id (INSERT … ON CONFLICT DO NOTHING), one mark
// per event, unique HPP and KP session ids. Scans take no locks: inside
// Update they are hints the flows follow with reads by key. No path needs
// SERIALIZABLE.
//
// Update runs the function again in a new transaction (nothing of the failed
// one committed) when PostgreSQL picks it as a deadlock victim (two
// transactions taking two keys in opposite orders), up to 30 times with
// short jittered pauses; a function may therefore run more than once under
// Update too, as the contract already says of Batch, and the flows reset
// what they report at the top of their functions. A statement that fails
// aborts a PostgreSQL transaction, so Tx remembers the first database error
// and the run is retried (or fails) whatever the function did with it. View
// is a read-only REPEATABLE READ transaction: one snapshot, no locks.
//
// Batch is Update: PostgreSQL already shares one WAL flush among commits that
// arrive together, so a transaction per call costs no fsync per call.
// Every connection sets synchronous_commit=on whatever the server's default,
// so Update returns only after its commit is durable and a callback is
// answered 2xx only then.
//
// # Schema
//
// migrations/*.sql, embedded and applied at Open under a transaction-scoped
// table lock (migrate.go says why that lock, and how steps are expand-only).
// A record's body is the encoding/json of its core type (written and read
// with github.com/go-json-experiment/json/v1; boltstore's codec says why) in
// a bytea (bytes, not jsonb: no re-parse on every write, and no refusal of a
// \u0000 a storefront sent); beside it are the columns that scans, listings,
// counts and fencing read, written by the same statement:
//
//	sessions      id, storefront, status, hpp_session_id and kp_session_id (unique),
//	              check_at (NULL: no re-read due), authorized_at (only while
//	              authorized), created_at, updated_at, body
//	              indexes: (check_at, id) partial, (storefront, created_at, id),
//	              (authorized_at) partial, (status)
//	charges       id, storefront, status, created_at, updated_at, body;
//	              (storefront, created_at, id), (status)
//	jobs          id, kind, due, lease_owner, lease_token, lease_until, body
//	              (the body without its lease); (due, id), (kind)
//	leases        name (bytea), owner, token, until: named leases
//	event_ids     hash (boltstore's 16-byte callback hash), marked_at; (marked_at, hash)
//	idempotency   (storefront, key bytea), created_at, body; (created_at)
//	tokens        (storefront, customer_token bytea), body
//	token_owners  customer_token (bytea), storefront
//	hppd_meta     key, value: "id_secret"
//
// Times are unix nanoseconds in bigint columns, 0 or NULL for the zero time,
// so a due-scan or a fence compares exactly the time the caller passed
// (timestamptz would round to microseconds). Lease names, Idempotency-Keys
// and customer tokens are bytea: they may hold a NUL, which text cannot. Ids
// are COLLATE "C": they sort
// bytewise, as in boltstore, whatever the database's locale. Counts are
// GROUP BY on the status and kind indexes rather than counter rows, which
// every write would otherwise update and every concurrent transaction
// collide on.
//
// # Leases
//
// A job's lease is its three lease columns, and due is the lease's expiry
// while it is leased, so a job whose runner died is due again when the lease
// expires: no sweeper. ClaimJob and ClaimDueJob are one UPDATE whose WHERE is
// the claim's condition; UpdateJob, ReleaseJob and CompleteJob are one
// statement whose WHERE is the exact lease (owner, token, expiry) and an
// expiry after now, so a lost lease matches no row, the call returns
// store.ErrLeaseLost and the flow's function, returning it, rolls back what
// depended on it. ClaimDueJobsOf leases a batch of due jobs of some kinds
// (a runner's lane) in one statement with FOR UPDATE SKIP LOCKED on the due
// index, so runners on several replicas take disjoint jobs without queueing
// on each other's row locks; hpp's runner uses it in place of a due-scan and
// a claim per job.
// Named leases (session creation, fallbacks) are rows of leases, taken by an
// upsert that replaces only an expired lease.
//
// Idempotency keys are rows of idempotency: the flows take a key by reading
// it and, when absent, inserting its record (owner set) under the key's
// lock, so of two replicas reached by one retry at once one owns the key and
// the other, waiting on the lock, then finds it, and the stored answer is
// replayed from the body.
//
// # Costs
//
//   - A callback's read and write are a handful of statements in one
//     transaction: one round trip each (a key lock rides with the
//     statement it guards), one commit.
//   - SessionsDue, JobsDue, DueJobIDs, PruneEvents and OldestAuthorized are
//     index range scans: cost proportional to what they return.
//   - Counts reads the status and kind indexes: cost proportional to the
//     number of records (an index-only scan), unlike boltstore's counters.
//   - Check reads every row.
//
// Measured (BenchmarkCallback with HPPD_PGTEST_FSYNC=on, 128 callers, 5,000
// callbacks a run, five runs, server and benchmark on the same two cores,
// which other work kept at a load average of 7 to 15): a callback's store
// work (a View and a write) runs at about 870 to 1,900 per second with one
// handle of 8 connections (p99 100 to 330 ms) and 1,400 to 2,200 with three
// (p99 130 to 260 ms), no transaction run twice. With SERIALIZABLE, run
// alternately with it, it was 370 to 650 per second (p99 0.5 to 1.1 s) and
// 260 to 440 (p99 1.0 to 1.8 s), each callback run 2.7 to 3.4 times with
// one handle and 4.3 to 5.3 with three, and once a callback failed after
// its 30 runs. bbolt's benchmark gave 3,300 to 10,000 in the same minutes.
// The p99 is mostly the 128 callers queueing for the pools' connections;
// the client uses about a quarter of one core, so what is left is the
// server's CPU per statement: a callback sends 12 to 15 statements (3 or 4
// of them key locks) in 7 or 8 round trips.
package pgstore
