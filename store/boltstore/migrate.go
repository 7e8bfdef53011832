package boltstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hppd/hppd/core"
	bolt "go.etcd.io/bbolt"
)

// Schema 1 (the layout of the first design sketch) had these buckets:
//
//	meta          "schema" → "1"
//	sessions      session id → plain JSON of core.Session
//	sessions_hpp  HPP session id → session id
//	due           big-endian unix nanos of CheckAt ‖ session id → empty
//	events        HPP session id ‖ 0x00 ‖ event id → empty (no time: never pruned)
//	jobs          job id → plain JSON of core.Job
//	jobs_due      big-endian unix nanos of DueAt ‖ job id → empty
//	charges       charge id → plain JSON of core.Charge
//	idempotency   storefront ‖ 0x00 ‖ Idempotency-Key → plain JSON of core.IdempotencyRecord
//
// It had no sessions_kp, sessions_by_storefront, sessions_authorized,
// charges_by_storefront, counters, tokens or events_by_time, and kept values
// uncompressed. Migrating to schema 2 rewrites every record in schema 2's
// encoding, rebuilds every index and the counters from the records, turns
// each event into its hashed key (marked at the migration's time, so pruning
// forgets it after the usual retention) and finally drops due and events.
//
// The migration runs in chunks of migrateChunkSize records, one transaction
// each, so a large file never needs one huge transaction. Progress (phase and
// last key done) is kept in meta/migration in the same transaction as each
// chunk; meta/schema changes to 2 only in the last one. A crash midway leaves
// a file that the next Open carries on migrating from where it stopped.

var (
	bucketV1Due    = []byte("due")
	bucketV1Events = []byte("events")
)

const migrateChunkSize = 5000

// Migration phases, in order; each walks one schema 1 bucket.
var migratePhases = []struct {
	name   string
	bucket []byte
}{
	{"sessions", bucketSessions},
	{"charges", bucketCharges},
	{"jobs", bucketJobs},
	{"events", bucketV1Events},
	{"idempotency", bucketIdempotency},
}

// derivedBuckets are rebuilt from the records when a migration starts.
var derivedBuckets = [][]byte{
	bucketSessionsHPP, bucketSessionsKP, bucketSessionsDue, bucketSessionsByStorefront,
	bucketSessionsAuthorized, bucketChargesByStorefront, bucketJobsDue, bucketEventIDs,
	bucketEventsByTime, bucketCounters,
}

// migration is the progress record in meta/migration.
type migration struct {
	To    int    `json:"to"`
	Phase int    `json:"phase"` // index into migratePhases
	After []byte `json:"after,omitempty"`
	At    int64  `json:"at"` // unix nanos the migration started: the time given to old events
}

// errMigrationPaused is returned when a migrator stops after maxSteps chunks
// (tests use it to leave a file half migrated).
var errMigrationPaused = errors.New("migration paused")

type migrator struct {
	db    *bolt.DB
	chunk int
	// maxSteps > 0 stops after that many chunk transactions.
	maxSteps int
	now      func() time.Time
}

// run migrates a file of schema version from to SchemaVersion.
func (m *migrator) run(from int) error {
	if from != 1 {
		return fmt.Errorf("cannot migrate schema version %d (this hppd migrates 1 to %d)", from, SchemaVersion)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if err := m.db.Update(m.start); err != nil {
		return fmt.Errorf("migrate schema 1 to %d: %w", SchemaVersion, err)
	}
	for steps := 0; ; steps++ {
		if m.maxSteps > 0 && steps >= m.maxSteps {
			return errMigrationPaused
		}
		var done bool
		err := m.db.Update(func(btx *bolt.Tx) error {
			var err error
			done, err = m.step(btx)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate schema 1 to %d: %w", SchemaVersion, err)
		}
		if done {
			return nil
		}
	}
}

// start creates schema 2's buckets, empties the derived ones and records the
// migration, unless one is already under way.
func (m *migrator) start(btx *bolt.Tx) error {
	meta := btx.Bucket(bucketMeta)
	if meta.Get(keyMigration) != nil {
		return nil
	}
	for _, name := range derivedBuckets {
		if btx.Bucket(name) != nil {
			if err := btx.DeleteBucket(name); err != nil {
				return fmt.Errorf("reset %s: %w", name, err)
			}
		}
	}
	if err := createBuckets(btx); err != nil {
		return err
	}
	return putMigration(meta, &migration{To: SchemaVersion, At: m.now().UnixNano()})
}

func putMigration(meta *bolt.Bucket, mg *migration) error {
	b, err := json.Marshal(mg)
	if err != nil {
		return err
	}
	return meta.Put(keyMigration, b)
}

// step migrates one chunk of the current phase, or finishes the migration.
func (m *migrator) step(btx *bolt.Tx) (done bool, err error) {
	meta := btx.Bucket(bucketMeta)
	var mg migration
	if err := json.Unmarshal(meta.Get(keyMigration), &mg); err != nil {
		return false, fmt.Errorf("read progress: %w", err)
	}
	if mg.Phase >= len(migratePhases) {
		return true, m.finish(btx, meta)
	}
	phase := migratePhases[mg.Phase]
	tx := newTx(btx, caches{})
	tx.wrote = true
	var last []byte
	n := 0
	err = chunk(btx.Bucket(phase.bucket), mg.After, m.chunk, func(k, v []byte) error {
		last, n = k, n+1
		switch phase.name {
		case "sessions":
			return migrateSession(tx, k, v)
		case "charges":
			return migrateCharge(tx, k, v)
		case "jobs":
			return migrateJob(tx, k, v)
		case "events":
			return migrateEvent(tx, k, mg.At)
		default:
			return migrateIdempotency(tx, k, v)
		}
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", phase.name, err)
	}
	if n < m.chunk {
		mg.Phase++
		mg.After = nil
	} else {
		mg.After = last
	}
	return false, putMigration(meta, &mg)
}

// chunk calls fn with copies of up to n pairs of b after key after (nil: from
// the start). It reads them all before calling fn, so fn may write to b.
func chunk(b *bolt.Bucket, after []byte, n int, fn func(k, v []byte) error) error {
	if b == nil {
		return nil
	}
	c := b.Cursor()
	var k, v []byte
	if after == nil {
		k, v = c.First()
	} else if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
		k, v = c.Next()
	}
	type pair struct{ k, v []byte }
	var pairs []pair
	for ; k != nil && len(pairs) < n; k, v = c.Next() {
		if v == nil && b.Bucket(k) != nil {
			return fmt.Errorf("unexpected nested bucket %q", k)
		}
		pairs = append(pairs, pair{bytes.Clone(k), bytes.Clone(v)})
	}
	for _, p := range pairs {
		if err := fn(p.k, p.v); err != nil {
			return err
		}
	}
	return nil
}

func migrateSession(tx *Tx, k, v []byte) error {
	var s core.Session
	if err := decodeValue(v, &s); err != nil {
		return fmt.Errorf("session %s: %w", k, err)
	}
	if s.ID != string(k) {
		return fmt.Errorf("session under key %s has id %s", k, s.ID)
	}
	// Deleted first, so that PutSession indexes it as new.
	if err := tx.deleteRecord(bucketSessions, k); err != nil {
		return err
	}
	if err := tx.PutSession(&s); err != nil {
		return fmt.Errorf("session %s: %w", k, err)
	}
	return nil
}

func migrateCharge(tx *Tx, k, v []byte) error {
	var c core.Charge
	if err := decodeValue(v, &c); err != nil {
		return fmt.Errorf("charge %s: %w", k, err)
	}
	if c.ID != string(k) {
		return fmt.Errorf("charge under key %s has id %s", k, c.ID)
	}
	if err := tx.deleteRecord(bucketCharges, k); err != nil {
		return err
	}
	if err := tx.PutCharge(&c); err != nil {
		return fmt.Errorf("charge %s: %w", k, err)
	}
	return nil
}

func (tx *Tx) deleteRecord(name, k []byte) error {
	b, err := tx.bucket(name)
	if err != nil {
		return err
	}
	return b.Delete(k)
}

func migrateJob(tx *Tx, k, v []byte) error {
	var j core.Job
	if err := decodeValue(v, &j); err != nil {
		return fmt.Errorf("job %s: %w", k, err)
	}
	if j.ID != string(k) {
		return fmt.Errorf("job under key %s has id %s", k, j.ID)
	}
	// The derived buckets were emptied, so this is an insert for the
	// indexes and counters; the record itself is rewritten in place.
	b, err := tx.bucket(bucketJobs)
	if err != nil {
		return err
	}
	if err := tx.putJob(b, &j, nil); err != nil {
		return fmt.Errorf("job %s: %w", k, err)
	}
	return nil
}

// migrateEvent records a schema 1 event (key HPP session id ‖ 0x00 ‖ event
// id) the way MarkEvent does, marked at the migration's start.
func migrateEvent(tx *Tx, k []byte, at int64) error {
	hpp, ev, ok := bytes.Cut(k, []byte{sep})
	if !ok || len(hpp) == 0 || len(ev) == 0 {
		return fmt.Errorf("bad schema 1 event key %q", k)
	}
	return tx.MarkEvent(string(hpp), string(ev), time.Unix(0, at))
}

func migrateIdempotency(tx *Tx, k, v []byte) error {
	var r core.IdempotencyRecord
	if err := decodeValue(v, &r); err != nil {
		return fmt.Errorf("idempotency record: %w", err)
	}
	b, err := tx.bucket(bucketIdempotency)
	if err != nil {
		return err
	}
	val, err := encodeValue(&r, fast)
	if err != nil {
		return err
	}
	return b.Put(k, val)
}

// finish drops schema 1's buckets and sets the new version.
func (m *migrator) finish(btx *bolt.Tx, meta *bolt.Bucket) error {
	for _, name := range [][]byte{bucketV1Due, bucketV1Events} {
		if btx.Bucket(name) != nil {
			if err := btx.DeleteBucket(name); err != nil {
				return fmt.Errorf("drop %s: %w", name, err)
			}
		}
	}
	if err := meta.Delete(keyMigration); err != nil {
		return err
	}
	return meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
}
