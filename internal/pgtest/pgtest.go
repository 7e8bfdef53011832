// Package pgtest gives tests a PostgreSQL database of their own on a real
// server.
//
// With HPPD_TEST_DATABASE_URL set (a role allowed to create databases), the
// databases are made on that server. Otherwise the first test that asks
// starts a throwaway cluster, once per test binary: initdb and pg_ctl from
// /usr/lib/postgresql/*/bin (the newest version there, or the ones on PATH)
// in a temporary directory, listening on a free loopback port and on a unix
// socket in that directory, with trust authentication for the postgres role.
// PostgreSQL refuses to run as root, so a root test binary runs the cluster
// as the postgres user. Main stops the cluster and removes its directory
// when the tests are done.
//
// Every call of DB creates a fresh database and drops it when the test ends,
// so tests run in parallel without seeing each other's rows.
//
// When no PostgreSQL is found, DB skips the test; with the environment
// variable CI set it fails instead, so a CI run without PostgreSQL cannot
// pass by skipping. scripts/install-test-tools.sh (make test-tools) installs
// Debian's postgresql.
//
// The throwaway cluster runs with fsync off: its tests kill hppd, never the
// server, so what they prove does not depend on the server's own durability,
// and two shared cores go further without it. synchronous_commit stays on.
// Benchmarks that measure durable commits set HPPD_PGTEST_FSYNC=on.
//
// Programs that are not tests (hppd-bench, the chaos run) get the same server through
// Start (server.go): HPPD_TEST_DATABASE_URL when set, else a throwaway
// cluster of their own, fsync as they ask.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable holding an existing server's URL.
const EnvURL = "HPPD_TEST_DATABASE_URL"

var (
	once     sync.Once
	adminURL string // a URL of the maintenance database on the server
	startErr error
	cluster  *throwaway
	seq      atomic.Int64
)

// Main runs the tests of a package whose tests use DB and stops the
// throwaway cluster after them. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		if err := cluster.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
	}
	os.Exit(code)
}

// DB returns the URL of a new, empty database that is dropped when t ends.
func DB(t testing.TB) string {
	t.Helper()
	once.Do(start)
	if startErr != nil {
		if os.Getenv("CI") != "" || !errors.Is(startErr, errNoPostgres) {
			t.Fatalf("pgtest: %v", startErr)
		}
		t.Skipf("pgtest: %v (set %s or install postgresql)", startErr, EnvURL)
	}
	name := fmt.Sprintf("hppd_test_%d_%d", os.Getpid(), seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Errorf("pgtest: connect to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := withDatabase(adminURL, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

var errNoPostgres = errors.New("no PostgreSQL server binaries (initdb, pg_ctl) found")

func start() {
	if u := os.Getenv(EnvURL); u != "" {
		adminURL = u
		return
	}
	c, err := startCluster(fsync())
	if err != nil {
		startErr = err
		return
	}
	cluster = c
	adminURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// withDatabase returns u naming database name instead of its own.
func withDatabase(u, name string) (string, error) {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "postgres" && p.Scheme != "postgresql") {
		return "", fmt.Errorf("%s must be a postgres:// URL", EnvURL)
	}
	p.Path = "/" + name
	return p.String(), nil
}

// throwaway is a cluster in a temporary directory.
type throwaway struct {
	dir  string
	bin  string
	port int
	cred *syscall.Credential
}

// binDir finds initdb and pg_ctl: the newest /usr/lib/postgresql/N/bin, or PATH.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errNoPostgres
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func startCluster(fsync string, settings ...string) (*throwaway, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	sweep(bin)
	dir, err := os.MkdirTemp("", "hppd-pgtest-")
	if err != nil {
		return nil, err
	}
	// The test binary's pid: a later run stops the cluster if this one
	// dies without Main's cleanup (a panic, a -timeout).
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &throwaway{dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := c.run("initdb", "-D", c.data(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A free port: taken from the kernel, released, and handed to the
	// server; a race with another process for it fails the start loudly.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := strings.Join([]string{
		"-c listen_addresses=127.0.0.1",
		"-c port=" + strconv.Itoa(c.port),
		"-c unix_socket_directories=" + c.dir,
		"-c fsync=" + fsync,
		"-c full_page_writes=" + fsync,
		"-c max_connections=300",
		"-c shared_buffers=64MB",
	}, " ")
	for _, s := range settings {
		opts += " -c " + s
	}
	if err := c.run("pg_ctl", "-D", c.data(), "-o", opts, "-l", filepath.Join(c.dir, "server.log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	return c, nil
}

// fsync is the throwaway cluster's fsync setting: off unless
// HPPD_PGTEST_FSYNC=on.
func fsync() string {
	if os.Getenv("HPPD_PGTEST_FSYNC") == "on" {
		return "on"
	}
	return "off"
}

// sweep stops and removes the throwaway clusters of test binaries that
// died without cleaning up: a cluster directory whose owner.pid names no
// running process.
func sweep(bin string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "hppd-pgtest-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // alive, or not ours to judge
		}
		c := &throwaway{dir: dir, bin: bin}
		if os.Geteuid() == 0 {
			if fi, err := os.Stat(dir); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					c.cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
				}
			}
		}
		_ = c.stop()
	}
}

func (c *throwaway) data() string { return filepath.Join(c.dir, "data") }

func (c *throwaway) run(tool string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.bin, tool), args...)
	cmd.Dir = c.dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
		cmd.Env = append(os.Environ(), "HOME="+c.dir)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", tool, err, out)
	}
	return nil
}

func (c *throwaway) stop() error {
	err := c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop")
	if rerr := os.RemoveAll(c.dir); err == nil {
		err = rerr
	}
	return err
}
