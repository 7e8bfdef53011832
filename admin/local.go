package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
	"github.com/hppd/hppd/store/pgstore"
)

// Local runs the admin operations directly on a store: the daemon's own (its
// admin API), a file the CLI opened because no daemon runs, or a PostgreSQL
// database (which the CLI always opens itself: any number of processes may).
type Local struct {
	db    store.Store
	bolt  *boltstore.DB // nil on PostgreSQL
	pg    *pgstore.DB   // nil on bbolt
	now   func() time.Time
	wake  func()
	owned bool
}

// NewLocal runs the operations on db, which the caller keeps (Close does not
// close it). now stamps retries (nil: time.Now); wake, if set, is called
// after a retry so that a job runner picks the job up at once.
func NewLocal(db *boltstore.DB, now func() time.Time, wake func()) *Local {
	if now == nil {
		now = time.Now
	}
	return &Local{db: db, bolt: db, now: now, wake: wake}
}

// NewLocalPG is NewLocal on a PostgreSQL store.
func NewLocalPG(db *pgstore.DB, now func() time.Time, wake func()) *Local {
	if now == nil {
		now = time.Now
	}
	return &Local{db: db, pg: db, now: now, wake: wake}
}

// OpenLocalPG connects the CLI to the PostgreSQL database at url. It never
// migrates: a database behind this binary's schema is an error that says to
// run hppd migrate.
func OpenLocalPG(ctx context.Context, url string, opts pgstore.Options) (*Local, error) {
	opts.NoMigrate = true
	if opts.MaxConns <= 0 {
		opts.MaxConns = 2
	}
	db, err := pgstore.Open(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	l := NewLocalPG(db, nil, nil)
	l.owned = true
	return l, nil
}

// LocalLockTimeout is how long OpenLocal waits for the data file's lock.
const LocalLockTimeout = 250 * time.Millisecond

// OpenLocal opens the data file at path for the CLI. It never creates one: a
// missing file is an error (a wrong HPPD_DB would otherwise leave an empty
// store behind). A file locked by a running hppd is a *boltstore.LockedError.
func OpenLocal(path string) (*Local, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no data file at %s (check HPPD_DB; hppd serve creates it)", path)
		}
		return nil, fmt.Errorf("data file: %w", err)
	}
	db, err := boltstore.Open(path, boltstore.Options{LockTimeout: LocalLockTimeout})
	if err != nil {
		return nil, err
	}
	l := NewLocal(db, nil, nil)
	l.owned = true
	return l, nil
}

// Source names the data file or the database.
func (l *Local) Source() string {
	if l.pg != nil {
		return "PostgreSQL database " + l.pg.Name()
	}
	return "data file " + l.bolt.Path()
}

// Live is false for a file the CLI opened; the daemon's own Local (behind the
// admin API) is never asked.
func (l *Local) Live() bool { return l.wake != nil }

// Close closes the store if OpenLocal opened it.
func (l *Local) Close() error {
	if !l.owned {
		return nil
	}
	if l.pg != nil {
		return l.pg.Close()
	}
	return l.bolt.Close()
}

func checkQuery(q *Query, valid func(string) bool, what string) error {
	if q.Limit == 0 {
		q.Limit = DefaultLimit
	}
	if q.Limit < 1 || q.Limit > MaxLimit {
		return core.Invalid("limit", "must be between 1 and %d", MaxLimit)
	}
	if q.Status != "" && !valid(q.Status) {
		return core.Invalid("status", "%q is not a %s status", q.Status, what)
	}
	return nil
}

// newest keeps the limit newest of the items it is offered, in a buffer of
// at most twice the limit: memory stays bounded whatever the store holds.
type newest[T any] struct {
	limit int
	items []T
	cmp   func(a, b T) int // negative when a is newer than b
}

func (n *newest[T]) add(v T) {
	n.items = append(n.items, v)
	if len(n.items) >= 2*n.limit {
		n.trim()
	}
}

func (n *newest[T]) trim() []T {
	slices.SortFunc(n.items, n.cmp)
	if len(n.items) > n.limit {
		clear(n.items[n.limit:])
		n.items = n.items[:n.limit]
	}
	return n.items
}

// newerFirst orders by creation time, newest first, then by id descending
// (the order of the store's per-storefront indexes).
func newerFirst(at1, at2 time.Time, id1, id2 string) int {
	if c := at2.Compare(at1); c != 0 {
		return c
	}
	return cmp.Compare(id2, id1)
}

// Sessions lists sessions newest first.
func (l *Local) Sessions(_ context.Context, q Query) ([]Session, error) {
	if err := checkQuery(&q, func(s string) bool { return core.SessionStatus(s).Valid() }, "session"); err != nil {
		return nil, err
	}
	out := []Session{}
	err := l.db.View(func(tx store.Tx) error {
		if q.Storefront != "" {
			list, _, err := tx.ListSessions(core.ListQuery{Storefront: q.Storefront, Status: q.Status, Limit: q.Limit})
			for _, s := range list {
				out = append(out, FromSession(s))
			}
			return err
		}
		keep := &newest[*core.Session]{limit: q.Limit, cmp: func(a, b *core.Session) int {
			return newerFirst(a.CreatedAt, b.CreatedAt, a.ID, b.ID)
		}}
		err := tx.AllSessions(func(s *core.Session) error {
			if q.Status == "" || string(s.Status) == q.Status {
				keep.add(s)
			}
			return nil
		})
		for _, s := range keep.trim() {
			out = append(out, FromSession(s))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// Session returns one session.
func (l *Local) Session(_ context.Context, id string) (*Session, error) {
	var out Session
	err := l.db.View(func(tx store.Tx) error {
		s, err := tx.Session(id)
		if err != nil {
			return err
		}
		out = FromSession(s)
		return nil
	})
	if core.IsNotFound(err) {
		return nil, core.Errorf(core.CodeNotFound, "no session %q", id)
	}
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", id, err)
	}
	return &out, nil
}

// chargeView builds a charge's view with its fallback session, read in the
// same transaction.
func chargeView(tx store.Tx, c *core.Charge) (Charge, error) {
	var sess *core.Session
	if c.SessionID != "" {
		s, err := tx.Session(c.SessionID)
		switch {
		case err == nil:
			sess = s
		case !core.IsNotFound(err):
			return Charge{}, err
		}
	}
	return FromCharge(c, sess), nil
}

// Charges lists charges newest first.
func (l *Local) Charges(_ context.Context, q Query) ([]Charge, error) {
	if err := checkQuery(&q, func(s string) bool { return core.ChargeStatus(s).Valid() }, "charge"); err != nil {
		return nil, err
	}
	out := []Charge{}
	err := l.db.View(func(tx store.Tx) error {
		var list []*core.Charge
		if q.Storefront != "" {
			var err error
			if list, _, err = tx.ListCharges(core.ListQuery{Storefront: q.Storefront, Status: q.Status, Limit: q.Limit}); err != nil {
				return err
			}
		} else {
			keep := &newest[*core.Charge]{limit: q.Limit, cmp: func(a, b *core.Charge) int {
				return newerFirst(a.CreatedAt, b.CreatedAt, a.ID, b.ID)
			}}
			if err := tx.AllCharges(func(c *core.Charge) error {
				if q.Status == "" || string(c.Status) == q.Status {
					keep.add(c)
				}
				return nil
			}); err != nil {
				return err
			}
			list = keep.trim()
		}
		for _, c := range list {
			v, err := chargeView(tx, c)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list charges: %w", err)
	}
	return out, nil
}

// Charge returns one charge.
func (l *Local) Charge(_ context.Context, id string) (*Charge, error) {
	var out Charge
	err := l.db.View(func(tx store.Tx) error {
		c, err := tx.Charge(id)
		if err != nil {
			return err
		}
		out, err = chargeView(tx, c)
		return err
	})
	if core.IsNotFound(err) {
		return nil, core.Errorf(core.CodeNotFound, "no charge %q", id)
	}
	if err != nil {
		return nil, fmt.Errorf("charge %s: %w", id, err)
	}
	return &out, nil
}

func sortJobs(jobs []Job) {
	slices.SortFunc(jobs, func(a, b Job) int {
		if c := a.DueAt.Compare(b.DueAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// Jobs lists every job, earliest due first.
func (l *Local) Jobs(_ context.Context) ([]Job, error) {
	out := []Job{}
	err := l.db.View(func(tx store.Tx) error {
		return tx.AllJobs(func(j *core.Job) error {
			out = append(out, FromJob(j))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	sortJobs(out)
	return out, nil
}

// RetryJob makes the job due now. Its attempts and last error stay as they
// are until the job runs again.
func (l *Local) RetryJob(_ context.Context, id string) (*Job, error) {
	var out Job
	err := l.db.Update(func(tx store.Tx) error {
		j, err := tx.Job(id)
		if err != nil {
			return err
		}
		j.DueAt = l.now().UTC()
		if err := tx.PutJob(j); err != nil {
			return err
		}
		out = FromJob(j)
		return nil
	})
	if core.IsNotFound(err) {
		return nil, core.Errorf(core.CodeNotFound, "no job %q (done already?)", id)
	}
	if err != nil {
		return nil, fmt.Errorf("retry job %s: %w", id, err)
	}
	if l.wake != nil {
		l.wake()
	}
	return &out, nil
}

// RetryFailingJobs makes every failing job due now, in one transaction.
func (l *Local) RetryFailingJobs(_ context.Context) ([]Job, error) {
	out := []Job{}
	err := l.db.Update(func(tx store.Tx) error {
		out = out[:0]
		var failing []*core.Job
		if err := tx.AllJobs(func(j *core.Job) error {
			if j.LastError != "" {
				failing = append(failing, j)
			}
			return nil
		}); err != nil {
			return err
		}
		now := l.now().UTC()
		for _, f := range failing {
			// Read again by id: the scan is a hint, and a runner may have
			// finished or leased the job since.
			j, err := tx.Job(f.ID)
			if core.IsNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			if j.LastError == "" {
				continue
			}
			j.DueAt = now
			if err := tx.PutJob(j); err != nil {
				return err
			}
			out = append(out, FromJob(j))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("retry failing jobs: %w", err)
	}
	if l.wake != nil && len(out) > 0 {
		l.wake()
	}
	sortJobs(out)
	return out, nil
}

// ctxWriter stops a copy once ctx is done (bbolt's copy takes no context).
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// ErrBackupPG explains that a PostgreSQL store is not backed up by hppd.
var ErrBackupPG = errors.New("the store is a PostgreSQL database: back it up with PostgreSQL's tools, " +
	"e.g. pg_dump --format=custom --file=hppd.dump \"$HPPD_DATABASE_URL\" (restore with pg_restore), " +
	"or the server's base backups with WAL archiving for point-in-time recovery")

// Backup writes a consistent copy of the store to w (one read transaction).
func (l *Local) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if l.pg != nil {
		return 0, ErrBackupPG
	}
	return l.bolt.Backup(ctxWriter{ctx, w})
}

// Check runs boltstore.DB.Check and counts the records.
func (l *Local) Check(_ context.Context) (*CheckReport, error) {
	r := &CheckReport{}
	if l.pg != nil {
		r.Path = l.pg.Name()
	} else {
		r.Path = l.bolt.Path()
	}
	err := l.db.View(func(tx store.Tx) error {
		sessions, charges, jobs, err := tx.Counts()
		if err != nil {
			return err
		}
		for _, n := range sessions {
			r.Sessions += n
		}
		for _, n := range charges {
			r.Charges += n
		}
		for _, n := range jobs {
			r.Jobs += n
		}
		return nil
	})
	if err != nil {
		r.Error = err.Error()
		return r, nil
	}
	check := func() error {
		if l.pg != nil {
			return l.pg.Check()
		}
		return l.bolt.Check()
	}
	if err := check(); err != nil {
		r.Error = err.Error()
	}
	return r, nil
}
