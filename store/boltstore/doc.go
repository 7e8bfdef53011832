// Package boltstore implements hppd's store contract (package store) on one
// bbolt file: sessions, charges, the durable job outbox, callback
// de-duplication, storefront idempotency keys, customer token views and the
// counters metrics read. *DB is a store.Store and *Tx a store.Tx; opening,
// closing, backups, checks, retention and compaction are this package's own,
// used by the wiring and the admin tools.
//
// # Transactions
//
// A fact and everything derived from it commit together: Tx.PutSession
// writes the session, its index entries, its due entry and the status
// counters in the caller's transaction (Tx.PutSessionKeepDue, the callback
// path's write, may leave due entries earlier than CheckAt: due.go), so a
// callback's de-duplication mark, the session's new state and the jobs it
// needs are one Update or Batch.
// There is a single writer at a time (bbolt's model) and any number of
// readers, each on a consistent snapshot.
//
// DB.Batch is group commit: concurrent callers share one transaction and one
// fsync, and each returns only after that transaction is on disk, so a
// callback answered 2xx after Batch returned survives a SIGKILL or power loss
// right after. One writer goroutine runs every call waiting when it is free
// in one transaction, so batches grow with the load (batch.go). A Batch
// function may run twice, so it must be idempotent; its error goes to its own
// caller only.
//
// The writer's time per call bounds how many callbacks a second the store
// takes, so the callback path does what it can before its Batch: it reads
// the session with its version in a View, computes the new session and
// encodes it there (prepared writes, store.SessionVersions: prepared.go),
// and its Batch function (Tx.MarkPrepared, one lookup of the record) only
// checks the event's mark, marks it and writes the prepared value if the
// session is still at that version; otherwise it reads, changes and writes
// the session as any other write does.
//
// Getters decode a fresh value from the stored bytes, so nothing returned
// aliases bbolt's memory map and callers may keep and change what they get.
// Decoded charges are also kept in a small cache validated by the stored
// bytes (cache.go): a fallback purchase writes its charge and reads it back
// several times, and each read after a write is a copy, not a JSON decode.
// Sessions are decoded on every read: their binary decoding costs about
// what a cached copy would.
//
// # Buckets (schema 5)
//
// All buckets exist from Open on. Integers in keys are big-endian so that
// bytes sort like numbers; times are unix nanoseconds as uint64 (the zero time
// is 0). "‖" is concatenation; storefront names may not contain 0x00, which
// separates them from the rest of a key. An event hash is SHA-256(HPP
// session id ‖ 0x00 ‖ event id)[:16].
//
//	meta                    "schema" → decimal schema version ("5");
//	                        "migration" → JSON progress, only while a migration runs
//	                        "id_secret" → 32 random bytes, made once: the HMAC key of
//	                        ids derived from Idempotency-Keys (DB.IDSecret)
//	                        "events_pruned_before" → unix nanos: record marks older
//	                        are pruned (events.go)
//	sessions                session id → value of core.Session, behind the callback
//	                        de-duplication marks of its events (events.go)
//	sessions_hpp            HPP session id → session id (unique)
//	sessions_kp             KP session id → session id (unique)
//	sessions_due            time ‖ session id → empty: the entries a session's record
//	                        lists (or one at its CheckAt), the earliest at or before
//	                        CheckAt (a lower bound: due.go); none while CheckAt is zero;
//	                        the poller seeks from the start up to now
//	sessions_by_storefront  storefront ‖ 0x00 ‖ CreatedAt ‖ session id → status
//	                        (listing newest first; the status filters without decoding)
//	sessions_authorized     AuthorizedAt ‖ session id → empty; sessions in status
//	                        authorized (order not placed yet); the first key is the oldest
//	charges                 charge id → value of core.Charge
//	charges_by_storefront   storefront ‖ 0x00 ‖ CreatedAt ‖ charge id → status
//	jobs                    job id → value of core.Job
//	jobs_due                Job.Due() ‖ job id → empty (one entry per job): DueAt, or
//	                        the lease's expiry while the job is leased
//	job_leases              job id → empty: the jobs whose record holds a lease
//	                        (Open ends them; see leases.go); added to schema 2 files at open
//	leases                  lease name → JSON of core.Lease: named leases
//	                        ("create/<session id>", "fallback/<charge id>"); likewise
//	event_ids               event hash → time marked: callback de-duplication marks that
//	                        no session record holds (events.go)
//	events_by_time          time marked ‖ event hash → empty (pruning in time order)
//	idempotency             storefront ‖ 0x00 ‖ Idempotency-Key → value of core.IdempotencyRecord
//	tokens                  storefront ‖ 0x00 ‖ customer token → value of core.TokenInfo
//	token_owners            customer token → storefront name: the storefront that first
//	                        charged it (Tx.TokenOwner); added to schema 2 files at open
//	counters                "session/<status>", "charge/<status>", "job/<kind>" →
//	                        int64 count (absent: 0)
//
// A value is the encoding/json of the core type compressed against a fixed
// preset dictionary that holds the field names, or for a pending session its
// binary encoding compressed (codec.go); its first byte says how:
//
//	0x01  S2 block: fast, for records written on a request's path (jobs,
//	      charges, idempotency records, tokens; pending sessions before
//	      schema 5)
//	0x02  raw DEFLATE: dense, for final sessions (written once, most of the
//	      file)
//	'{'   plain JSON: schema 1's values, and values compression does not shrink
//	0x03  a session record with event marks in front of one of the above
//	      (events.go); schema 3
//	0x04  a session value with the list of its due entries in front (when
//	      they are not just one at its CheckAt), then one of the first three
//	      or 0x05 (due.go); behind the marks when there are any; schema 4
//	0x05  S2 block (no dictionary) of a session's binary encoding
//	      (sessioncodec.go): pending sessions; schema 5
//
// A paid session of about 2.5 KiB of JSON is stored in under 500 bytes, so a
// session with all its index entries takes about 1.4 KiB of the file.
//
// Schema 1 and its migration are described in migrate.go; schema 2 is
// schema 3 without records of event marks, schema 3 is schema 4 without
// lists of due entries (every entry exactly at CheckAt), and schema 4 is
// schema 5 without binary sessions, so Open only rewrites their number. Open migrates an
// older file in place (resumably, in chunks) and refuses a newer one.
//
// # Costs
//
//   - SessionsDue, JobsDue, PruneEvents and OldestAuthorized walk a time
//     index from its start: cost proportional to what they return.
//     SessionsDue may return sessions whose entries lag behind their
//     CheckAt; each costs the poller one re-file when its first comes due,
//     and RereadBacklog counts such entries until then.
//   - Counts reads the small counters bucket; the counters are maintained by
//     the writes, never recomputed.
//   - Open reads the meta bucket only (plus bbolt's freelist), whatever the
//     file's size; after a crash also, unless the freelist was too long for
//     commits to write it: then bbolt walks the file (store.go, DB.rw).
//   - Check re-derives every index and counter from the records: an admin and
//     test tool.
//   - A Pruner (retention.go) deletes final sessions and charges past the
//     retention, expired idempotency records and old callback marks: each
//     step reads at most PruneConfig.ScanPerTx entries in a read transaction
//     and deletes at most PerTx records in a write transaction, a bounded
//     number of steps per run. The by-storefront indexes are sorted by
//     CreatedAt, so a storefront's walk stops at the retention cutoff; the
//     idempotency bucket is swept in key order across runs.
//
// # Locking and backups
//
// bbolt holds an exclusive flock on the file while it is open. Open waits
// Options.LockTimeout (default 1s) for it and then returns *LockedError, so a
// second hppd on the same file fails fast with a message naming the file.
// For the same reason a backup of a live file is taken by the process that
// has it open: Backup and BackupFile copy the file from one read transaction,
// a consistent snapshot taken while writers carry on.
//
// # Compaction
//
// Deleting frees pages that bbolt reuses but never returns to the file
// system. CompactFile (compact.go) rewrites a file that no process has open
// with bolt.Compact into path.compact, verifies the copy and renames it over
// the original; hppd compact runs it.
package boltstore
