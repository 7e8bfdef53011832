package pgtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// Two databases are two: a table made in one is not in the other, and each
// accepts writes.
func TestDatabasesAreSeparate(t *testing.T) {
	ctx := context.Background()
	a, b := DB(t), DB(t)
	if a == b {
		t.Fatalf("same URL twice: %s", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	if _, err := ca.Exec(ctx, "CREATE TABLE t (n int); INSERT INTO t VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := ca.QueryRow(ctx, "SELECT n FROM t").Scan(&n); err != nil || n != 7 {
		t.Fatalf("read back %d, %v", n, err)
	}
	var exists bool
	if err := cb.QueryRow(ctx, "SELECT to_regclass('t') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatal("table of one database visible in the other")
	}
	var sc string
	if err := ca.QueryRow(ctx, "SHOW synchronous_commit").Scan(&sc); err != nil || sc != "on" {
		t.Fatalf("synchronous_commit = %q, %v", sc, err)
	}
}

// A cluster directory left by a test binary that died is removed by the
// next start; one whose owner runs is left alone.
func TestSweepRemovesOrphans(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("no true command")
	}
	orphan, err := os.MkdirTemp("", "hppd-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	live, err := os.MkdirTemp("", "hppd-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(live)
	os.WriteFile(filepath.Join(orphan, "owner.pid"), []byte(strconv.Itoa(dead.Process.Pid)), 0o644)
	os.WriteFile(filepath.Join(live, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	bin, err := binDir()
	if err != nil {
		t.Skip(err)
	}
	sweep(bin)
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan kept: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live owner's directory removed: %v", err)
	}
}

// A server outside a test makes databases that take writes, and Stop
// drops them (with HPPD_TEST_DATABASE_URL) or stops its cluster.
func TestServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second PostgreSQL cluster; skipped with -short")
	}
	ctx := context.Background()
	s, err := Start(ServerOptions{})
	if errors.Is(err, errNoPostgres) && os.Getenv("CI") == "" {
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.Database(ctx, "hppd_server_test")
	if err != nil {
		s.Stop()
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		s.Stop()
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
	c.Close(ctx)
	if err != nil {
		s.Stop()
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := pgx.Connect(ctx, u); err == nil {
		c.Close(ctx)
		t.Fatalf("database %s still reachable after Close", u)
	}
}
