package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	json "github.com/go-json-experiment/json/v1"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pageSize is how many records All* read per statement.
const pageSize = 500

// Tx is a store transaction on PostgreSQL. Every getter decodes a fresh value.
// A Tx is valid only inside the function it was passed to.
//
// Round trips: the transaction's BEGIN is not sent on its own but in front
// of its first statement, and a statement's key locks in front of it
// (locks.go), as one pipelined batch; the commit carries the wake-up
// NOTIFY. A callback's transaction thus costs a round trip per statement it
// needs and one for the commit.
type Tx struct {
	ctx  context.Context
	conn *pgx.Conn
	// begin is the BEGIN not sent yet (it goes with the first statement);
	// begun: it was sent, so the transaction must end with COMMIT or
	// ROLLBACK.
	begin string
	begun bool
	fail  error // the first database error: the transaction is aborted
	// jobs: a job was added or rewritten; the commit wakes the replicas'
	// job runners (NOTIFY, replicas.go).
	jobs bool
	// rw: a read-write transaction, whose keyed reads and writes take key
	// locks (locks.go); held are the keys it holds.
	rw   bool
	held map[int64]struct{}
}

var _ store.Tx = (*Tx)(nil)

// note remembers the first database error of the transaction.
func (tx *Tx) note(err error) error {
	var pe *pgconn.PgError
	if err != nil && tx.fail == nil && errors.As(err, &pe) {
		tx.fail = err
	}
	return err
}

// send sends, in one round trip, the pending BEGIN, the lock statement
// (nil: none) and sql, and reads the results up to sql's, which the
// caller reads from the returned batch and then closes it.
func (tx *Tx) send(lock *lockStmt, sql string, args []any) (pgx.BatchResults, error) {
	var b pgx.Batch
	begin := tx.begin != ""
	if begin {
		b.Queue(tx.begin)
		tx.begin, tx.begun = "", true
	}
	if lock != nil {
		b.Queue(lock.sql, lock.args...)
	}
	b.Queue(sql, args...)
	br := tx.conn.SendBatch(tx.ctx, &b)
	if begin {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, tx.note(err)
		}
	}
	if lock != nil {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, tx.note(err)
		}
		lock.taken()
	}
	return br, nil
}

func (tx *Tx) exec(sql string, args ...any) (pgconn.CommandTag, error) {
	return tx.lockedExec(nil, sql, args...)
}

// row scans the one row of sql into dst; no row is core.ErrNotFound.
func (tx *Tx) row(sql string, args []any, dst ...any) error {
	return tx.lockedRow(nil, sql, args, dst...)
}

// lockedRow is row after the key locks of keys (locks.go), sent with it in
// one round trip; in a View it is row.
func (tx *Tx) lockedRow(keys []lockKey, sql string, args []any, dst ...any) error {
	lock := tx.lockStatement(keys)
	if lock == nil && tx.begin == "" {
		err := tx.conn.QueryRow(tx.ctx, sql, args...).Scan(dst...)
		if errors.Is(err, pgx.ErrNoRows) {
			return core.ErrNotFound
		}
		return tx.note(err)
	}
	br, err := tx.send(lock, sql, args)
	if err != nil {
		return err
	}
	err = br.QueryRow().Scan(dst...)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return core.ErrNotFound
	}
	return tx.note(err)
}

// lockedExec is exec after the key locks of keys, in one round trip.
func (tx *Tx) lockedExec(keys []lockKey, sql string, args ...any) (pgconn.CommandTag, error) {
	lock := tx.lockStatement(keys)
	if lock == nil && tx.begin == "" {
		tag, err := tx.conn.Exec(tx.ctx, sql, args...)
		return tag, tx.note(err)
	}
	br, err := tx.send(lock, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, tx.note(err)
}

// rows calls scan for every row of sql; scan must not use the Tx.
func (tx *Tx) rows(sql string, args []any, scan func(pgx.Rows) error) error {
	var rs pgx.Rows
	var br pgx.BatchResults
	if tx.begin == "" {
		var err error
		if rs, err = tx.conn.Query(tx.ctx, sql, args...); err != nil {
			return tx.note(err)
		}
	} else {
		var err error
		if br, err = tx.send(nil, sql, args); err != nil {
			return err
		}
		defer br.Close()
		if rs, err = br.Query(); err != nil {
			return tx.note(err)
		}
	}
	defer rs.Close()
	for rs.Next() {
		if err := scan(rs); err != nil {
			return err
		}
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return tx.note(err)
	}
	if br != nil {
		return tx.note(br.Close())
	}
	return nil
}

// commit ends the transaction: COMMIT, after the NOTIFY that wakes the
// replicas' job runners when a job was written (delivered at commit, and
// only if the commit succeeds), in one round trip. A transaction that sent
// nothing has nothing to commit.
func (tx *Tx) commit() error {
	if !tx.begun {
		return nil
	}
	var b pgx.Batch
	if tx.jobs {
		b.Queue(`SELECT pg_notify('` + notifyChannel + `', '')`)
	}
	b.Queue("COMMIT")
	br := tx.conn.SendBatch(tx.ctx, &b)
	defer br.Close()
	if tx.jobs {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("store: notify: %w", err)
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	tx.begun = false
	if err := br.Close(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	// COMMIT of a failed transaction rolls it back, and says so only in
	// its tag.
	if tag.String() == "ROLLBACK" {
		return errors.New("store: commit: the transaction was rolled back")
	}
	return nil
}

// rollback ends a transaction that did not commit. A failure leaves the
// connection inside the transaction, and the pool drops it when released.
func (tx *Tx) rollback() {
	if tx.begun {
		_, _ = tx.conn.Exec(tx.ctx, "ROLLBACK")
		tx.begun = false
	}
}

// ns is t in unix nanoseconds, 0 for the zero time (and anything before
// 1970), as boltstore keys times.
func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if n := t.UnixNano(); n > 0 {
		return n
	}
	return 0
}

func timeOf(n int64) time.Time { return time.Unix(0, n).UTC() }

// leaseTime is a lease's expiry column back as a time: 0 is no time.
func leaseTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return timeOf(n)
}

func nullNS(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := ns(t)
	return &n
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func encode(what, id string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("store: encode %s %s: %w", what, id, err)
	}
	return b, nil
}

// Counts returns how many sessions are in each status, charges in each
// status and jobs of each kind, counted by the status and kind indexes.
func (tx *Tx) Counts() (sessions map[core.SessionStatus]int, charges map[core.ChargeStatus]int, jobs map[core.JobKind]int, err error) {
	sessions, charges, jobs = store.ZeroCounts()
	err = tx.rows(`SELECT 's', status, count(*) FROM sessions GROUP BY status
		UNION ALL SELECT 'c', status, count(*) FROM charges GROUP BY status
		UNION ALL SELECT 'j', kind, count(*) FROM jobs GROUP BY kind`, nil, func(r pgx.Rows) error {
		var what, name string
		var n int64
		if err := r.Scan(&what, &name, &n); err != nil {
			return err
		}
		switch what {
		case "s":
			sessions[core.SessionStatus(name)] = int(n)
		case "c":
			charges[core.ChargeStatus(name)] = int(n)
		default:
			jobs[core.JobKind(name)] = int(n)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("store: counts: %w", err)
	}
	return sessions, charges, jobs, nil
}

// RereadBacklog counts sessions whose CheckAt has come and reread_session
// jobs due at now, with the earliest due time among them.
func (tx *Tx) RereadBacklog(now time.Time) (n int, oldest time.Time, err error) {
	var cnt int64
	var min *int64
	err = tx.row(`SELECT count(*), min(t) FROM (
			SELECT check_at AS t FROM sessions WHERE check_at <= $1
			UNION ALL SELECT due FROM jobs WHERE kind = $2 AND due <= $1) b`,
		[]any{ns(now), string(core.JobRereadSession)}, &cnt, &min)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("store: reread backlog: %w", err)
	}
	if cnt == 0 || min == nil {
		return 0, time.Time{}, nil
	}
	return int(cnt), timeOf(*min), nil
}
