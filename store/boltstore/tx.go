package boltstore

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket names (doc.go describes each one's keys and values).
var (
	bucketMeta                 = []byte("meta")
	bucketSessions             = []byte("sessions")
	bucketSessionsHPP          = []byte("sessions_hpp")
	bucketSessionsKP           = []byte("sessions_kp")
	bucketSessionsDue          = []byte("sessions_due")
	bucketSessionsByStorefront = []byte("sessions_by_storefront")
	bucketSessionsAuthorized   = []byte("sessions_authorized")
	bucketCharges              = []byte("charges")
	bucketChargesByStorefront  = []byte("charges_by_storefront")
	bucketJobs                 = []byte("jobs")
	bucketJobsDue              = []byte("jobs_due")
	bucketEventIDs             = []byte("event_ids")
	bucketEventsByTime         = []byte("events_by_time")
	bucketIdempotency          = []byte("idempotency")
	bucketTokens               = []byte("tokens")
	bucketTokenOwners          = []byte("token_owners")
	bucketCounters             = []byte("counters")
	bucketJobLeases            = []byte("job_leases")
	bucketLeases               = []byte("leases")
)

// allBuckets are the buckets of the schema, created at open.
var allBuckets = [][]byte{
	bucketMeta, bucketSessions, bucketSessionsHPP, bucketSessionsKP, bucketSessionsDue,
	bucketSessionsByStorefront, bucketSessionsAuthorized, bucketCharges, bucketChargesByStorefront,
	bucketJobs, bucketJobsDue, bucketEventIDs, bucketEventsByTime, bucketIdempotency, bucketTokens,
	bucketCounters, bucketTokenOwners, bucketJobLeases, bucketLeases,
}

// fillPercent is how full bbolt fills a page when it splits one. Buckets whose
// keys mostly arrive in ascending order (time indexes, and a storefront's
// newest records) are filled almost completely; randomly keyed ones keep
// bbolt's default of one half, which leaves room for later inserts.
var fillPercent = map[string]float64{
	string(bucketSessionsDue):          0.9,
	string(bucketSessionsByStorefront): 0.9,
	string(bucketSessionsAuthorized):   0.9,
	string(bucketChargesByStorefront):  0.9,
	string(bucketJobsDue):              0.9,
	string(bucketEventsByTime):         0.95,
}

// Meta keys.
var (
	keySchema    = []byte("schema")
	keyMigration = []byte("migration")
)

const (
	// maxCheckErrors bounds the problems Check reports.
	maxCheckErrors = 20
	// sep separates a storefront from the rest of a key; storefront names
	// must not contain it.
	sep = 0x00
)

// Tx is a store transaction: a bbolt transaction plus the store's key and
// value encodings and index maintenance. Every getter returns freshly decoded
// values that never alias bbolt's memory, so callers may keep and change them.
// A Tx is only valid inside the function it was passed to.
type Tx struct {
	tx *bolt.Tx
	// wrote is set by every write method before it writes (see DB.Batch).
	wrote bool
	// cache holds the DB's caches of decoded records (a nil one: none).
	cache caches
	// lastEvent is eventKey's memo.
	lastEvent *eventMemo
	// writes counts the calls of write; lastLookup is lookupEvent's memo,
	// valid while writes is what it was when the lookup was made.
	writes     int
	lastLookup *lookupMemo
}

func newTx(btx *bolt.Tx, cache caches) *Tx { return &Tx{tx: btx, cache: cache} }

// bucket returns a bucket of the schema, tuned for writing when the Tx is
// writable. A missing bucket means a broken file: every bucket is created at
// open.
func (tx *Tx) bucket(name []byte) (*bolt.Bucket, error) {
	b := tx.tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("store: bucket %s is missing", name)
	}
	if f, ok := fillPercent[string(name)]; ok && tx.tx.Writable() {
		b.FillPercent = f
	}
	return b, nil
}

// write marks the Tx as having written; the methods call it before writing.
func (tx *Tx) write() error {
	if !tx.tx.Writable() {
		return fmt.Errorf("store: write in a read-only transaction")
	}
	tx.wrote = true
	tx.writes++
	return nil
}

// nanos is t as big-endian-encodable unix nanoseconds; the zero time and
// times before 1970 are 0.
func nanos(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	n := t.UnixNano()
	if n < 0 {
		return 0
	}
	return uint64(n)
}

// timeKey is big-endian unix nanos ‖ id: sorts by time, then id.
func timeKey(ns uint64, id string) []byte {
	k := make([]byte, 8+len(id))
	binary.BigEndian.PutUint64(k, ns)
	copy(k[8:], id)
	return k
}

// splitTimeKey undoes timeKey.
func splitTimeKey(k []byte) (uint64, string, error) {
	if len(k) < 8 {
		return 0, "", fmt.Errorf("store: short time key %x", k)
	}
	return binary.BigEndian.Uint64(k), string(k[8:]), nil
}

func timeOf(ns uint64) time.Time { return time.Unix(0, int64(ns)).UTC() }

func be64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

// pairKey is a ‖ 0x00 ‖ b.
func pairKey(a, b string) []byte {
	k := make([]byte, 0, len(a)+1+len(b))
	k = append(k, a...)
	k = append(k, sep)
	return append(k, b...)
}

// first returns the first key of a bucket.
func first(b *bolt.Bucket) []byte {
	k, _ := b.Cursor().First()
	return k
}

// forEachValue decodes every value of bucket name, in key order, into a fresh
// T and calls fn with it, stopping at fn's first error; what names the record
// in a decoding error. fn must not write to the bucket.
func forEachValue[T any](tx *Tx, name []byte, what string, fn func(*T) error) error {
	b, err := tx.bucket(name)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		var rec T
		if err := decodeValue(v, &rec); err != nil {
			return fmt.Errorf("store: %s %s: %w", what, k, err)
		}
		return fn(&rec)
	})
}
