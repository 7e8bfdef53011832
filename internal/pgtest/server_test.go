package pgtest

import (
	"context"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Start gives a program a cluster of its own with the settings it asked
// for, and Stop removes it.
func TestStartDurableServer(t *testing.T) {
	if os.Getenv(EnvURL) != "" {
		t.Skip("Start names HPPD_TEST_DATABASE_URL's server instead of starting one")
	}
	if err := Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if _, err := Start(ServerOptions{Settings: []string{"work_mem=4MB; DROP"}}); err == nil {
		t.Fatal("a setting that is not name=value was accepted")
	}
	s, err := Start(ServerOptions{Durable: true, Settings: []string{"shared_buffers=32MB"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.c.dir
	defer s.Stop()
	if !s.Throwaway() {
		t.Fatal("not a throwaway cluster")
	}
	ctx := context.Background()
	u, err := s.URL("postgres")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on", "shared_buffers": "32MB"} {
		var got string
		if err := conn.QueryRow(ctx, "SHOW "+name).Scan(&got); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", name, got, err, want)
		}
	}
	conn.Close(ctx)
	pid, err := s.PostmasterPID()
	if err != nil || syscall.Kill(pid, 0) != nil {
		t.Fatalf("postmaster pid %d: %v", pid, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("cluster directory kept: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}
