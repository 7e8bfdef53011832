package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migrations are the files migrations/NNNN_name.sql, embedded in the binary
// and applied in order. Each is an expand step: it adds (tables, columns with
// defaults, indexes) and never removes or renames what a running older
// binary reads, so replicas of the previous release keep working while a
// rolling deploy replaces them. A contract step (dropping what no release in
// service reads any more) ships one release after the code stopped using it.
// For the same reason a database migrated further than this binary knows is
// accepted, not refused: the binary uses what it knows, which later steps
// left in place.
//
// Migrate runs in one transaction that first takes an exclusive lock on
// hppd_schema_migrations. A transaction-scoped table lock, unlike a session
// advisory lock, holds through a connection pooler in transaction mode
// (PgBouncer), and PostgreSQL's DDL is transactional, so a migrator that
// dies leaves nothing half applied and the next one starts over. Replicas
// starting at once queue on the lock; the later ones find nothing to do.
// (goose's table locker would do the same with a dependency and a second
// table; the embedded files and these few statements are all hppd needs.)

//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: strings.TrimSuffix(e.Name(), ".sql"), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := range out {
		if i > 0 && out[i].version == out[i-1].version {
			return nil, fmt.Errorf("two migrations numbered %d", out[i].version)
		}
	}
	return out, nil
}

// SchemaVersion is the newest migration this binary has.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// Migrate brings the database at pool to this binary's schema and returns
// the names of the migrations it applied (none when another process did).
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	ms, err := migrations()
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	// Two processes creating the bookkeeping table at once: one fails on
	// the catalog's unique index, and its second try finds the table.
	for attempt := 0; ; attempt++ {
		applied, err := migrateOnce(ctx, pool, ms)
		var pe *pgconn.PgError
		if err != nil && attempt < 3 && errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07" || pe.Code == "42710") {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: migrate: %w", err)
		}
		return applied, nil
	}
}

func migrateOnce(ctx context.Context, pool *pgxpool.Pool, ms []migration) (applied []string, err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx)
		}
	}()
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS hppd_schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE hppd_schema_migrations IN EXCLUSIVE MODE`); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT version FROM hppd_schema_migrations`)
	if err != nil {
		return nil, err
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	have := map[int]bool{}
	for _, v := range done {
		have[int(v)] = true
	}
	for _, m := range ms {
		if have[m.version] {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO hppd_schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		applied = append(applied, m.name)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	return applied, nil
}

// Version returns the newest migration applied to the database (0: none).
func Version(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var v int32
	err := pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM hppd_schema_migrations`).Scan(&v)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" {
		return 0, nil // undefined table: never migrated
	}
	if err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return int(v), nil
}
