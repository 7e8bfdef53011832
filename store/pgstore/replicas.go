package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Replicas and wake-ups: what processes sharing the database tell each
// other.
//
// Each replica heartbeats a row of replicas; a replica seen within the live
// window counts. The wiring divides Klarna's rate limits by that count, so
// N replicas do not send N times the limit: a replica that joins waits two
// heartbeats before it calls Klarna (by then every other one has counted it
// and lowered its share), and one that dies is counted until its row ages
// out of the window (the others use less than they may meanwhile, never
// more). A replica that stops cleanly removes its row at once.
//
// A transaction that adds or rewrites a job sends NOTIFY hppd_jobs, which
// PostgreSQL delivers at commit and only if it commits; every replica LISTENs
// (Listen) and wakes its job runner, so a placement committed on one replica
// runs on whichever claims it first, without waiting for the next tick. A
// LISTEN needs a session of its own: through a pooler in transaction mode
// notifications do not arrive, and the runners' own ticks carry the work.

// notifyChannel is the channel of job wake-ups.
const notifyChannel = "hppd_jobs"

// Heartbeat records replica id as alive at now and returns how many
// replicas (itself included) were seen within live before now; rows older
// than ten windows are removed.
func (db *DB) Heartbeat(ctx context.Context, id string, started, now time.Time, live time.Duration) (int, error) {
	if db.closed.Load() {
		return 0, fmt.Errorf("store: heartbeat: closed")
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO replicas (id, started_at, seen_at) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET seen_at = $3`, id, ns(started), ns(now))
	b.Queue(`DELETE FROM replicas WHERE seen_at < $1`, ns(now.Add(-10*live)))
	b.Queue(`SELECT count(*) FROM replicas WHERE seen_at >= $1`, ns(now.Add(-live)))
	br := db.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return 0, fmt.Errorf("store: heartbeat: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return 0, fmt.Errorf("store: heartbeat: %w", err)
	}
	var n int64
	if err := br.QueryRow().Scan(&n); err != nil {
		return 0, fmt.Errorf("store: heartbeat: %w", err)
	}
	return max(int(n), 1), nil
}

// Leave removes replica id's row: the others take up its share at their
// next heartbeat.
func (db *DB) Leave(ctx context.Context, id string) error {
	if _, err := db.pool.Exec(ctx, `DELETE FROM replicas WHERE id = $1`, id); err != nil {
		return fmt.Errorf("store: leave: %w", err)
	}
	return nil
}

// Listen calls wake for every job wake-up any replica commits, until ctx
// ends. It holds a connection of its own (outside the pool) and reconnects
// after a failure, waiting retry between attempts; wake must not block.
func (db *DB) Listen(ctx context.Context, retry time.Duration, wake func()) {
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		_ = err // the ticks carry the work meanwhile; the next attempt may succeed
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

func (db *DB) listenOnce(ctx context.Context, wake func()) error {
	conn, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	// Work committed while this replica was not listening is found by the
	// wake-up a new connection starts with.
	wake()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		wake()
	}
}
