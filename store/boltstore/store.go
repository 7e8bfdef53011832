package boltstore

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/hppd/hppd/store"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout version this package reads and writes. Open
// migrates older files (see migrate.go) and refuses newer ones. Schema 3 is
// schema 2 plus session records that carry event marks (events.go): a
// schema 2 file is a valid schema 3 file, so moving it up only writes the
// number, and a hppd that knows schema 2 only refuses the file instead of
// misreading its records. Schema 4 is schema 3 plus session records that
// list due entries other than one at their CheckAt (due.go): a schema 3 file
// is a valid schema 4 file, and a hppd that knows schema 3 refuses the file
// instead of misreading those records or never removing those entries.
// Schema 5 is schema 4 plus sessions in the binary encoding
// (sessioncodec.go): a schema 4 file is a valid schema 5 file (its sessions
// stay JSON until next written), and a hppd that knows schema 4 refuses the
// file instead of failing on a session it cannot decode.
const SchemaVersion = 5

// Defaults of Options.
const (
	DefaultLockTimeout  = time.Second
	DefaultMaxBatchSize = 1000
)

// initialMmapSize maps the first 256 MiB at once (address space only; the file
// grows with the data). Growing the mapping waits for every open read
// transaction, a running backup included, so a mapping that is rarely
// outgrown keeps writers from stalling behind readers.
const initialMmapSize = 256 << 20

// freelistType is bbolt's in-memory freelist: the array, kept sorted. Each
// commit that writes the freelist (rw) writes its ids in order; the array
// has them so, and only the pages freed since are sorted and merged in. The
// hash map type sorts the start of every free span on every such commit:
// on a file whose free pages are scattered (a callback batch frees pages all
// over the file) that took 1.4 s of the single writer's 3.35 s in benchmark
// 1's profile (the map's freePageIds, mostly its sort). The map's advantage,
// finding a run of free pages fast, is for nodes larger than a page, which
// hppd's values (a few hundred bytes to a few KiB) seldom make; the array
// takes a single page off its front. The on-disk freelist is the same for
// both, so a file opens with either.
const freelistType = bolt.FreelistArrayType

// Options tune Open.
type Options struct {
	// LockTimeout is how long Open waits for the file lock another process
	// holds (default 1s); then Open fails with *LockedError.
	LockTimeout time.Duration
	// NoSync skips fsync on commit. Tests and benchmarks only: a commit is then
	// not durable against power loss.
	NoSync bool
	// MaxBatchSize caps the calls of one group commit (default 1000).
	// MaxBatchDelay is how long a batch that is not full waits for more calls
	// before it starts. The default, 0, starts it as soon as the writer is
	// free: calls that arrive while a commit runs form the next batch anyway,
	// so batches grow with the load without adding latency when it is low.
	// A delay trades latency for fewer commits (see batch.go).
	MaxBatchDelay time.Duration
	MaxBatchSize  int
	// OnCommit, when set, is called on the writer goroutine after each
	// committed write transaction (not after one rolled back or one that
	// wrote nothing): how many calls it carried and what it cost. It must
	// return quickly: the next batch waits for it.
	OnCommit func(CommitInfo)
}

// CommitInfo describes one committed write transaction (Options.OnCommit).
//
// The writer's time per transaction is Work plus Commit; their sum over a
// window, divided by the window, is the share of it the single writer was
// busy, and when that share nears 1 the writer bounds how many writes a
// second the store takes. Commit is mostly waiting for the disk: bbolt
// writes each changed B+tree node (the leaves holding the changed records
// and every branch page above them, as new copies in free pages, wherever
// in the file those are), fdatasyncs, writes the meta page and fdatasyncs
// again, so its cost follows Writes more than bytes.
type CommitInfo struct {
	// Calls is how many Batch calls the transaction ran (1 for Update).
	Calls int
	// Work is the time from the transaction's start to the end of its
	// functions; Commit the time bbolt's commit took after that.
	Work, Commit time.Duration
	// Writes is how many page writes the commit made (one per B+tree node
	// and one for the meta page; a node larger than a page is one write).
	Writes int64
}

// LockedError is returned by Open when another process holds the file's lock
// (bbolt takes an exclusive flock for as long as a file is open).
type LockedError struct{ Path string }

func (e *LockedError) Error() string {
	return "store: " + e.Path + " is locked by another process (is another hppd running on it?)"
}

// DB is hppd's bbolt file. It is safe for concurrent use: any number of
// readers, one writer at a time (bbolt's model).
type DB struct {
	bolt  *bolt.DB
	path  string
	cache caches

	// Group commit (batch.go): Batch sends to calls, one writer goroutine
	// runs them. closeMu orders sends before Close.
	maxBatch   int
	maxDelay   time.Duration
	calls      chan *call
	closeMu    sync.RWMutex
	closed     bool
	quit       chan struct{}
	writerDone chan struct{}

	freelistMax int // freelistSyncMax; tests lower it (see rw)
	onCommit    func(CommitInfo)

	commits atomic.Int64 // write transactions committed since Open (Commits)
}

// Open opens (creating if needed) the store at path: the parent directory is
// created with mode 0700 and the file with 0600, every bucket exists
// afterwards, and a file of an older schema is migrated before Open returns.
func Open(path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: open: empty path")
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.MaxBatchDelay < 0 {
		opts.MaxBatchDelay = 0
	}
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = DefaultMaxBatchSize
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         opts.LockTimeout,
		NoSync:          opts.NoSync,
		FreelistType:    freelistType,
		InitialMmapSize: initialMmapSize,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, &LockedError{Path: path}
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db := &DB{
		bolt:       bdb,
		path:       path,
		maxBatch:   opts.MaxBatchSize,
		maxDelay:   opts.MaxBatchDelay,
		calls:      make(chan *call, opts.MaxBatchSize),
		quit:       make(chan struct{}),
		writerDone: make(chan struct{}),

		freelistMax: freelistSyncMax,
		onCommit:    opts.OnCommit,
	}
	db.cache = newCaches()
	if err := db.prepare(); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	go db.writer()
	return db, nil
}

// prepare brings the file to SchemaVersion: a new file gets every bucket, an
// older one is migrated, a newer one is refused. A current file costs one read
// transaction.
func (db *DB) prepare() error {
	var (
		version    int
		missing    bool
		empty      bool
		migrating  bool
		leased     bool
		versionErr error
	)
	err := db.bolt.View(func(btx *bolt.Tx) error {
		k, _ := btx.Cursor().First()
		empty = k == nil
		meta := btx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		version, versionErr = readSchema(meta)
		migrating = meta.Get(keyMigration) != nil
		for _, name := range allBuckets {
			if btx.Bucket(name) == nil {
				missing = true
			}
		}
		for _, name := range [][]byte{bucketJobLeases, bucketLeases} {
			if b := btx.Bucket(name); b != nil && first(b) != nil {
				leased = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case empty:
		return db.bolt.Update(func(btx *bolt.Tx) error {
			if err := createBuckets(btx); err != nil {
				return err
			}
			return btx.Bucket(bucketMeta).Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
		})
	case versionErr != nil:
		return versionErr
	case version == 0:
		return errors.New("not an hppd store: no schema version in bucket meta")
	case version > SchemaVersion:
		return fmt.Errorf("schema version %d is newer than this hppd supports (%d): run a newer hppd on it", version, SchemaVersion)
	case migrating && version == SchemaVersion:
		return errors.New("meta/migration is set in a file of the current schema")
	case version >= 2 && version < SchemaVersion && !migrating:
		return db.bolt.Update(func(btx *bolt.Tx) error {
			if err := createBuckets(btx); err != nil {
				return err
			}
			if leased {
				if err := newTx(btx, caches{}).endLeases(); err != nil {
					return err
				}
			}
			return btx.Bucket(bucketMeta).Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
		})
	case version < SchemaVersion:
		return (&migrator{db: db.bolt, chunk: migrateChunkSize}).run(version)
	case missing:
		return db.bolt.Update(createBuckets)
	case leased:
		// Only this process has the file (bbolt's lock): every lease in it
		// is a dead process's, so its work is due again now, not when the
		// lease would have expired.
		return db.bolt.Update(func(btx *bolt.Tx) error { return newTx(btx, caches{}).endLeases() })
	}
	return nil
}

// readSchema reads meta/schema; 0 when absent.
func readSchema(meta *bolt.Bucket) (int, error) {
	v := meta.Get(keySchema)
	if v == nil {
		return 0, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("bad schema version %q in bucket meta", v)
	}
	return n, nil
}

func createBuckets(btx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := btx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

// Close finishes the Batch calls already made, writes bbolt's freelist and
// closes the file, waiting for running transactions. Batch fails with
// ErrClosed afterwards.
//
// Close always writes bbolt's freelist, however long, so that the next Open
// reads it instead of walking the file (see rw).
func (db *DB) Close() error {
	db.closeMu.Lock()
	if db.closed {
		db.closeMu.Unlock()
		return nil
	}
	db.closed = true
	close(db.quit)
	db.closeMu.Unlock()
	<-db.writerDone
	var errs []error
	err := db.bolt.Update(func(*bolt.Tx) error {
		db.bolt.NoFreelistSync = false // read by this commit; set under the writer lock
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("store: close %s: write freelist: %w", db.path, err))
	}
	if err := db.bolt.Close(); err != nil {
		errs = append(errs, fmt.Errorf("store: close %s: %w", db.path, err))
	}
	return errors.Join(errs...)
}

// Path is the file's path.
func (db *DB) Path() string { return db.path }

// View runs fn in a read-only transaction (a consistent snapshot; many at once).
func (db *DB) View(fn func(store.Tx) error) error {
	return db.bolt.View(func(btx *bolt.Tx) error { return fn(newTx(btx, db.cache)) })
}

// Update runs fn in a read-write transaction of its own, committed (and
// fsynced) before Update returns; fn's error rolls everything back.
func (db *DB) Update(fn func(store.Tx) error) error {
	return db.rw(1, func(btx *bolt.Tx) error { return fn(newTx(btx, db.cache)) })
}

// freelistSyncMax is the longest freelist (free and pending page ids, 8 bytes
// each) that ordinary commits write: 8,192 ids, 64 KiB, 32 MiB of free pages.
const freelistSyncMax = 8192

// rw runs fn in a read-write transaction after Open; every commit of the
// open store goes through it (migrations run before, with bbolt's defaults).
//
// bbolt's freelist (the file's free pages) is either written with a commit
// or not at all, and it is written whole. Written, the next Open reads it:
// start-up after a crash costs what start-up after a clean stop costs.
// Not written, the next Open after a crash rebuilds it by walking every page
// of the file, about 0.8 s per million sessions. So commits write it while
// it is short, a few pages next to the pages a callback batch dirties
// anyway, and skip it once it is longer than freelistSyncMax ids (after a big
// delete, or pages a long backup kept from reuse), when writing it with every
// commit would cost more than an occasional walk; Close writes it in any
// case. The decision reads the counts bbolt kept at the previous commit,
// under the writer lock, which is what NoFreelistSync needs.
func (db *DB) rw(calls int, fn func(*bolt.Tx) error) error {
	start := time.Now()
	var worked time.Time
	var writes int64
	err := db.bolt.Update(func(btx *bolt.Tx) error {
		st := db.bolt.Stats()
		db.bolt.NoFreelistSync = st.FreePageN+st.PendingPageN > db.freelistMax
		if db.onCommit != nil {
			// The transaction's own count, complete once it committed
			// (the meta page included).
			btx.OnCommit(func() { s := btx.Stats(); writes = s.GetWrite() })
		}
		defer func() { worked = time.Now() }()
		return fn(btx)
	})
	if err == nil {
		db.commits.Add(1)
		if db.onCommit != nil {
			db.onCommit(CommitInfo{Calls: calls, Work: worked.Sub(start), Commit: time.Since(worked), Writes: writes})
		}
	}
	return err
}

// Commits returns how many write transactions the store has committed since
// Open: each one a commit with its two fdatasyncs (unless Options.NoSync),
// so what a flow costs the disk. A group commit (Batch) counts once.
func (db *DB) Commits() int64 { return db.commits.Load() }

// view and update are View and Update for this package's own code, which
// uses the methods of *Tx that are not part of the contract.
func (db *DB) view(fn func(*Tx) error) error {
	return db.bolt.View(func(btx *bolt.Tx) error { return fn(newTx(btx, db.cache)) })
}

func (db *DB) update(fn func(*Tx) error) error {
	return db.rw(1, func(btx *bolt.Tx) error { return fn(newTx(btx, db.cache)) })
}

// Backup writes a consistent copy of the whole file to w from one read
// transaction, so writers carry on meanwhile. The copy is a store file that
// Open accepts.
func (db *DB) Backup(w io.Writer) (int64, error) {
	var n int64
	err := db.bolt.View(func(btx *bolt.Tx) error {
		var err error
		n, err = btx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store: backup %s: %w", db.path, err)
	}
	return n, nil
}

// BackupFile writes a consistent copy to path: into a new temporary file next
// to it (CreateBackupTemp: O_EXCL|O_NOFOLLOW, mode 0600),
// fsynced, then renamed over path, so path never holds a partial copy.
func (db *DB) BackupFile(path string) (err error) {
	src, err1 := filepath.Abs(db.path)
	dst, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil || path == "" {
		return fmt.Errorf("store: backup to %q: bad path", path)
	}
	if src == dst {
		return fmt.Errorf("store: backup to %s: that is the live file", path)
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	f, tmp, err := CreateBackupTemp(dst)
	if err != nil {
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = db.Backup(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	if err = os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync %s: %w", dir, err)
	}
	return nil
}

// SchemaVersion reads the file's schema version.
func (db *DB) SchemaVersion() (int, error) {
	var v int
	err := db.bolt.View(func(btx *bolt.Tx) error {
		meta := btx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("no bucket meta")
		}
		var err error
		v, err = readSchema(meta)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: schema version of %s: %w", db.path, err)
	}
	return v, nil
}

// Check verifies the file: bbolt's page-level consistency check (tx.Check),
// the schema version, and that every index, counter and due entry agrees with
// the records it is derived from. It reads everything in one read
// transaction, so it is an admin and test tool, not something to run per
// request.
func (db *DB) Check() error {
	err := db.bolt.View(func(btx *bolt.Tx) error {
		var errs []error
		for err := range btx.Check() {
			if len(errs) < maxCheckErrors {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		meta := btx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("no bucket meta")
		}
		v, err := readSchema(meta)
		if err != nil {
			return err
		}
		if v != SchemaVersion {
			return fmt.Errorf("schema version %d, want %d", v, SchemaVersion)
		}
		if meta.Get(keyMigration) != nil {
			return errors.New("a migration is unfinished")
		}
		return checkIndexes(newTx(btx, caches{}))
	})
	if err != nil {
		return fmt.Errorf("store: check %s: %w", db.path, err)
	}
	return nil
}

// CreateBackupTemp creates a new file next to dst for a backup to be written
// into: a random name, O_EXCL|O_NOFOLLOW and mode 0600, so neither a file
// nor a symlink left there by someone else (a pre-created 0644 file gave a
// 0644 backup) is ever written through.
func CreateBackupTemp(dst string) (*os.File, string, error) {
	for range 5 {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, "", err
		}
		tmp := dst + ".tmp-" + hex.EncodeToString(b[:])
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		return f, tmp, err
	}
	return nil, "", fmt.Errorf("store: create a temporary file next to %s: names taken", dst)
}
