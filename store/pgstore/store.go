package pgstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hppd/hppd/store"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of Options.
const (
	DefaultMaxConns         = 16
	DefaultConnectTimeout   = 5 * time.Second
	DefaultStatementTimeout = 10 * time.Second
)

// maxAttempts bounds how often a transaction runs again after a deadlock
// or a serialization failure.
const maxAttempts = 30

// Options tune Open.
type Options struct {
	// MaxConns is the pool's size (default 16).
	MaxConns int32
	// ConnectTimeout bounds dialing and the start-up handshake (default 5s).
	ConnectTimeout time.Duration
	// StatementTimeout is the server's statement_timeout for every
	// statement hppd sends (default 10s): a statement stuck behind a lock
	// fails instead of holding a callback forever.
	StatementTimeout time.Duration
	// NoMigrate skips the migrations at Open (hppd migrate runs them; a
	// replica started with migrations disabled checks the schema only).
	NoMigrate bool
	// AllowOld, with NoMigrate, opens a database behind this binary's
	// schema (for hppd migrate itself).
	AllowOld bool
}

// DB is hppd's store on a PostgreSQL database. It is safe for concurrent
// use, by any number of goroutines and processes.
type DB struct {
	pool    *pgxpool.Pool
	closed  atomic.Bool
	retries atomic.Int64 // transactions run again after a serialization failure or deadlock
}

// Open connects to the database at url (a postgres:// URL or a libpq
// key=value string) and runs the migrations it lacks.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.StatementTimeout <= 0 {
		opts.StatementTimeout = DefaultStatementTimeout
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may repeat the URL, password and all.
		return nil, errors.New("store: open: the database URL does not parse")
	}
	cfg.MaxConns = opts.MaxConns
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	rp := cfg.ConnConfig.RuntimeParams
	rp["statement_timeout"] = strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)
	// A commit is durable when it returns, whatever the server's default:
	// a callback is answered 2xx only after its commit.
	rp["synchronous_commit"] = "on"
	if rp["application_name"] == "" {
		rp["application_name"] = "hppd"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	err = pool.Ping(cctx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: open: %w", err)
	}
	db := &DB{pool: pool}
	if opts.NoMigrate {
		v, err := Version(ctx, pool)
		if err == nil && v < SchemaVersion() && !opts.AllowOld {
			err = fmt.Errorf("store: open: the database is at schema %d, this binary needs %d (run hppd migrate)", v, SchemaVersion())
		}
		if err != nil {
			pool.Close()
			return nil, err
		}
		return db, nil
	}
	if _, err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the pool; later calls fail with store.ErrClosed.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	db.pool.Close()
	return nil
}

// Retries counts the transactions this handle ran again after a
// serialization failure or a deadlock: what contention between concurrent
// writers (replicas included) costs.
func (db *DB) Retries() int64 { return db.retries.Load() }

// Pool is the connection pool, for the wiring (LISTEN, health checks) and
// the admin tools.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Ping reports whether the database answers within ctx.
func (db *DB) Ping(ctx context.Context) error {
	if db.closed.Load() {
		return store.ErrClosed
	}
	return db.pool.Ping(ctx)
}

// View runs fn in a read-only REPEATABLE READ transaction: one snapshot.
func (db *DB) View(fn func(store.Tx) error) error {
	return db.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", false, fn)
}

// Update runs fn in a READ COMMITTED transaction whose keyed reads and
// writes take key locks (locks.go), so what fn read by key stays as it read
// it until the commit. When PostgreSQL picks the transaction as a deadlock
// victim, nothing of it committed, and fn runs again in a new transaction,
// up to maxAttempts times; fn must not keep state from a failed run (the flows
// reset what they report at the top of fn).
func (db *DB) Update(fn func(store.Tx) error) error {
	return db.run("BEGIN ISOLATION LEVEL READ COMMITTED", true, fn)
}

// Batch is Update: PostgreSQL groups the WAL flushes of concurrent commits
// itself, so a transaction per call costs no fsync per call.
func (db *DB) Batch(fn func(store.Tx) error) error { return db.Update(fn) }

// WritesPerTx is how many records a flow should write in one transaction at
// most: each record's key holds an advisory lock until the commit (locks.go),
// in the server's lock table, which holds max_locks_per_transaction (64 by
// default) times max_connections entries for every connection together. A
// poller writing 100 sessions (each with its ids and a job: about 400 locks)
// leaves a stock server's table (6,400 entries at 100 connections) room for
// every replica's pool.
func (db *DB) WritesPerTx() int { return 100 }

// run runs fn in a transaction begun by begin (rw: read-write, with key
// locks), again after a deadlock or a serialization failure.
func (db *DB) run(begin string, rw bool, fn func(store.Tx) error) error {
	if db.closed.Load() {
		return store.ErrClosed
	}
	ctx := context.Background()
	for attempt := 1; ; attempt++ {
		err := db.once(ctx, begin, rw, fn)
		if err == nil || !retryable(err) || attempt == maxAttempts {
			return err
		}
		db.retries.Add(1)
		// Jittered, growing pauses keep colliding transactions apart.
		d := time.Duration(attempt) * time.Millisecond
		time.Sleep(d/2 + mrand.N(d))
	}
}

// once runs fn in one transaction. A failed statement aborts a PostgreSQL
// transaction, so the first database error is remembered (Tx.fail): when it
// is a deadlock or a serialization failure, the run is retryable whatever fn
// made of it.
func (db *DB) once(ctx context.Context, begin string, rw bool, fn func(store.Tx) error) (err error) {
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		if db.closed.Load() {
			return store.ErrClosed
		}
		return fmt.Errorf("store: begin: %w", err)
	}
	// Released inside no transaction: rolled back unless committed, a
	// panic in fn included.
	defer pc.Release()
	tx := &Tx{ctx: ctx, conn: pc.Conn(), begin: begin, rw: rw}
	defer tx.rollback()
	ferr := fn(tx)
	if tx.fail != nil && retryable(tx.fail) {
		return tx.fail
	}
	if ferr != nil {
		return ferr
	}
	if tx.fail != nil {
		return fmt.Errorf("store: a statement failed and fn went on: %w", tx.fail)
	}
	return tx.commit()
}

// retryable: a serialization failure or a deadlock, after which the whole
// transaction may run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// IDSecret returns the database's id secret: 32 random bytes made once by
// whichever process asks first, the same for every replica afterwards.
func (db *DB) IDSecret() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("store: id secret: %w", err)
	}
	ctx := context.Background()
	if _, err := db.pool.Exec(ctx, `INSERT INTO hppd_meta (key, value) VALUES ('id_secret', $1) ON CONFLICT (key) DO NOTHING`, b); err != nil {
		return nil, fmt.Errorf("store: id secret: %w", err)
	}
	var out []byte
	if err := db.pool.QueryRow(ctx, `SELECT value FROM hppd_meta WHERE key = 'id_secret'`).Scan(&out); err != nil {
		return nil, fmt.Errorf("store: id secret: %w", err)
	}
	if len(out) != 32 {
		return nil, errors.New("store: id secret: hppd_meta's id_secret is not 32 bytes")
	}
	return out, nil
}

var _ store.Store = (*DB)(nil)

// Name names the database for people: host, port and database, never the
// user or the password.
func (db *DB) Name() string {
	c := db.pool.Config().ConnConfig
	return fmt.Sprintf("%s on %s:%d", c.Database, c.Host, c.Port)
}
