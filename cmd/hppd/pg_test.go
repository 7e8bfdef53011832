package main

import (
	"context"
	"net/http"
	neturl "net/url"
	"strings"
	"testing"

	"github.com/hppd/hppd/admin"
	"github.com/hppd/hppd/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// hppd on PostgreSQL: migrate, serve, and the admin CLI's listings and
// check on the database, which it opens itself beside the running daemon;
// backup explains pg_dump instead of writing a file.
func TestPostgreSQLOperations(t *testing.T) {
	url := pgtest.DB(t)
	// migrate before anything: the schema, once.
	var out, errb strings.Builder
	if err := run(context.Background(), []string{"migrate"}, func(k string) string {
		if k == "HPPD_DATABASE_URL" {
			return url
		}
		return ""
	}, &out, &errb); err != nil || !strings.Contains(out.String(), "applied 0001_init") {
		t.Fatalf("migrate: %v\n%s%s", err, out.String(), errb.String())
	}
	e := newEnvWith(t, true, map[string]string{"HPPD_DATABASE_URL": url})
	if e.m.PG == nil || e.m.DB != nil {
		t.Fatal("HPPD_DATABASE_URL did not select PostgreSQL")
	}
	if again := e.mustCLI("migrate"); !strings.Contains(again, "already") {
		t.Fatalf("second migrate: %s", again)
	}
	id, _ := e.mustSession("shop-a")
	var all []admin.Session
	e.cliJSON(&all, "sessions", "list")
	if len(all) != 1 || all[0].ID != id {
		t.Fatalf("sessions list on PostgreSQL: %+v", all)
	}
	if show := e.mustCLI("sessions", "show", id); !strings.Contains(show, "shop-a") {
		t.Fatalf("sessions show:\n%s", show)
	}
	checks, raw, err := e.checks(nil)
	if err != nil || checks["data file"].Result != admin.OK {
		t.Fatalf("check: %v\n%s", err, raw)
	}
	_, _, err = e.cli(nil, "backup", t.TempDir()+"/b.db")
	if err == nil || !strings.Contains(err.Error(), "pg_dump") {
		t.Fatalf("backup on PostgreSQL: %v", err)
	}

	// /readyz follows the database: ready, then not while it is gone.
	ready := func() int {
		resp, err := e.hc.Get(e.base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := ready(); st != http.StatusOK {
		t.Fatalf("readyz %d on a reachable database", st)
	}
	ctx := context.Background()
	var dbname string
	if c, err := pgx.ParseConfig(url); err == nil {
		dbname = c.Database
	}
	maint, _ := neturl.Parse(url)
	maint.Path = "/postgres"
	conn, err := pgx.Connect(ctx, maint.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// No new connection gets in, and the daemon's are ended.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+dbname+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = $1`, dbname); err != nil {
		t.Fatal(err)
	}
	if st := ready(); st != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d with the database unreachable", st)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+dbname+" ALLOW_CONNECTIONS true"); err != nil {
		t.Fatal(err)
	}
	e.eventually("readyz back with the database", func() bool { return ready() == http.StatusOK })
}
