package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hppd/hppd/admin"
	"github.com/hppd/hppd/internal/pgtest"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/pgstore"
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

// The real binary on PostgreSQL, SIGKILLed while it takes callbacks on 8
// connections: every callback it answered 2xx is in the database afterwards
// (its de-duplication mark committed with the change), as on bbolt.
func TestSIGKILLOnPostgreSQLLosesNoAnsweredCallback(t *testing.T) {
	w := newProcWorld(t)
	url := pgtest.DB(t)
	listen := procFreeAddr(t)
	env := append(append([]string(nil), w.env...), "HPPD_LISTEN="+listen, "HPPD_DATABASE_URL="+url)
	p := procStart(t, w.bin, env, "serve")
	pw := *w
	pw.hppd = "http://" + listen
	procWaitReady(t, p, pw.hppd+"/readyz")

	client := &http.Client{Timeout: 30 * time.Second}
	ids, hppOf, paths := pw.callbackTargets(t, client, 6)
	var mu sync.Mutex
	accepted := map[string]string{} // event id → HPP session id
	var answered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for k := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[(k+n)%len(ids)]
				ev := fmt.Sprintf("kill-%d-%d", k, n)
				body := fmt.Sprintf(`{"event_id":%q,"session":{"session_id":%q,"status":%q}}`, ev, hppOf[id], []string{"IN_PROGRESS", "BACK"}[n%2])
				resp, err := c.Post(pw.hppd+paths[id], "application/json", strings.NewReader(body))
				if err != nil {
					continue // cut off by the kill: not acknowledged, Klarna resends
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					answered.Add(1)
					mu.Lock()
					accepted[ev] = hppOf[id]
					mu.Unlock()
				}
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for answered.Load() < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d callbacks answered; stderr:\n%s", answered.Load(), tail(p.stderr.String()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, "hppd after SIGKILL")
	close(stop)
	wg.Wait()

	db, err := pgstore.Open(context.Background(), url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mu.Lock()
	defer mu.Unlock()
	err = db.View(func(tx store.Tx) error {
		for _, id := range ids {
			if _, err := tx.Session(id); err != nil {
				t.Errorf("session %s answered 201: %v", id, err)
			}
		}
		for ev, hpp := range accepted {
			if seen, err := tx.SeenEvent(hpp, ev); err != nil || !seen {
				t.Errorf("callback %s answered 2xx and not in the database (%v)", ev, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d callbacks answered 2xx before the SIGKILL, all in the database", len(accepted))
}
