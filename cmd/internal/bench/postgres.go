package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hppd/hppd/internal/pgtest"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/store/pgstore"
	"github.com/jackc/pgx/v5"
)

// PostgresConfig configures benchmark 7, callback ingest on PostgreSQL.
type PostgresConfig struct {
	// Bin is the hppd binary under test.
	Bin string
	// Dir is a work directory (logs, the replicas' admin sockets).
	Dir string
	// Sessions in the database, Targets of them pending and receiving the
	// callbacks (defaults: benchmark 1's, 200,000 and 50,000).
	Sessions, Targets int
	// Conns concurrent keep-alive connections, spread over the replicas
	// (default 64).
	Conns int
	// Warmup and Duration of each measured load (defaults 2s and 8s).
	Warmup, Duration time.Duration
	// Runs of each replica count (default 3).
	Runs int
	// Replicas are the replica counts measured (default 1 and 3).
	Replicas []int
	// Check adds pgstore's whole-database check (it reads and decodes every
	// row) after the first run of each replica count, besides the look-up
	// of every 2xx callback. Off in make bench: on 200,000 sessions it
	// costs more than a run.
	Check bool
	Log   io.Writer
}

// defaults fills what is unset; the load's shape takes benchmark 1's
// defaults, so that the two benchmarks compare like with like.
func (c *PostgresConfig) defaults() {
	shape := CallbackConfig{Sessions: c.Sessions, Targets: c.Targets, Conns: c.Conns, Warmup: c.Warmup, Duration: c.Duration, Runs: c.Runs}
	shape.defaults()
	c.Sessions, c.Targets, c.Conns = shape.Sessions, shape.Targets, shape.Conns
	c.Warmup, c.Duration, c.Runs = shape.Warmup, shape.Duration, shape.Runs
	if len(c.Replicas) == 0 {
		c.Replicas = []int{1, 3}
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// pgSettings are the server settings the report shows: what makes a commit
// durable, and what sizes the server.
var pgSettings = []string{"server_version", "fsync", "full_page_writes", "synchronous_commit", "wal_sync_method", "wal_level",
	"commit_delay", "shared_buffers", "wal_buffers", "max_wal_size", "checkpoint_timeout", "max_connections"}

// benchSettings are the throwaway cluster's settings beyond pgtest's own
// (fsync and full_page_writes on come from Durable): PostgreSQL's default
// shared_buffers, which pgtest halves for its tests.
var benchSettings = []string{"shared_buffers=128MB"}

// PostgresRun is one measured load on one replica count.
type PostgresRun struct {
	Replicas int
	HPPD     *LoadResult
	// Acked callbacks (2xx) before the SIGKILL of every replica, and the
	// outcome of looking every one of them up in the database afterwards.
	Acked    int
	Verified error
	// CPU in the measured window, in seconds: every hppd replica, every
	// PostgreSQL server process, the load generator (hppd-bench itself).
	// ServerCPU is negative when the server's processes cannot be read.
	HPPDCPU, ServerCPU, LoadCPU float64
	// MachineCPU is the whole machine's busy CPU in the window (seconds,
	// all cores; negative when unknown): what is not hppd's, the server's
	// or the load generator's went to other work on the machine.
	MachineCPU float64
	// Copy is the time the seed's copy took, Verify the durability check's.
	Copy, Verify time.Duration
}

// PostgresResult is benchmark 7's outcome.
type PostgresResult struct {
	Config PostgresConfig
	// Throwaway is true for the cluster the benchmark started, false for
	// HPPD_TEST_DATABASE_URL's server.
	Throwaway bool
	// Settings are the server's values of pgSettings, in that order.
	Settings [][2]string
	// Build is how long the seed database took to load; DBSize its size.
	Build  time.Duration
	DBSize int64
	// CPUNote says why the server's CPU is unknown, when it is.
	CPUNote string
	Runs    []PostgresRun
}

// Setup returns the runs with n replicas.
func (r *PostgresResult) Setup(n int) []PostgresRun {
	var out []PostgresRun
	for _, run := range r.Runs {
		if run.Replicas == n {
			out = append(out, run)
		}
	}
	return out
}

// pgDBPrefix names this process's databases, so that two benchmarks on one
// HPPD_TEST_DATABASE_URL server neither share nor drop each other's.
var pgDBPrefix = fmt.Sprintf("hppd_bench_%d_", os.Getpid())

// pgSeedDB is the database the runs copy.
var pgSeedDB = pgDBPrefix + "seed"

// RunPostgres runs benchmark 7: benchmark 1's load on hppd with
// HPPD_DATABASE_URL set. A server is started (pgtest.Start: a throwaway
// cluster with fsync on, or HPPD_TEST_DATABASE_URL's), a seed database is
// loaded with benchmark 1's sessions through pgstore (PutSession in
// transactions), and each run copies it (CREATE DATABASE … TEMPLATE), starts
// the replicas on the copy, spreads cfg.Conns connections over them, SIGKILLs
// every replica the moment the window closes and looks every 2xx callback up
// in the database. The replica counts take turns, run by run, so that the
// machine's drift is shared between them.
func RunPostgres(ctx context.Context, cfg PostgresConfig) (*PostgresResult, error) {
	cfg.defaults()
	res := &PostgresResult{Config: cfg}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	srv, err := pgtest.Start(pgtest.ServerOptions{Durable: true, Settings: benchSettings})
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL server (install postgresql, or set %s): %w", pgtest.EnvURL, err)
	}
	defer srv.Stop()
	res.Throwaway = srv.Throwaway()
	admin, err := pgx.Connect(ctx, srv.AdminURL)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer admin.Close(context.Background())
	if res.Settings, err = readSettings(ctx, admin, pgSettings); err != nil {
		return nil, err
	}
	serverPID, cpuErr := postmasterPID(ctx, srv, admin)
	if cpuErr != nil {
		res.CPUNote = cpuErr.Error()
	}

	start := time.Now()
	fmt.Fprintf(cfg.Log, "bench 7: loading %d sessions (%d pending targets) into PostgreSQL\n", cfg.Sessions, cfg.Targets)
	targets, size, err := buildPostgres(ctx, srv, admin, cfg)
	if err != nil {
		return nil, fmt.Errorf("seed database: %w", err)
	}
	res.Build, res.DBSize = time.Since(start), size
	defer dropDB(context.Background(), admin, pgSeedDB)
	fmt.Fprintf(cfg.Log, "bench 7: seed database %.0f MiB in %v\n", mib(size), res.Build.Round(time.Second))

	sim := klarnasim.New(klarnasim.Options{Seed: 11, Unlimited: true}) // measures hppd, not Klarna's limits
	simSrv := httptest.NewServer(sim.Handler())
	defer func() { simSrv.Close(); sim.Close() }()

	checked := map[int]bool{}
	for i := 0; i < cfg.Runs; i++ {
		for _, n := range cfg.Replicas {
			run, err := postgresRun(ctx, &cfg, srv, admin, serverPID, i, n, simSrv.URL, targets, cfg.Check && !checked[n])
			if err != nil {
				return nil, fmt.Errorf("run %d, %d replicas: %w", i+1, n, err)
			}
			checked[n] = true
			fmt.Fprintf(cfg.Log, "bench 7 run %d, %d replica(s): %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.1f ms, %d errors, %d acked, durable: %v; CPU s: hppd %.2f, PostgreSQL %.2f, load %.2f; copy %v, check %v\n",
				i+1, n, run.HPPD.RPS(), ms(run.HPPD.Latencies.Quantile(0.5)), ms(run.HPPD.Latencies.Quantile(0.99)), ms(run.HPPD.Latencies.Max()),
				run.HPPD.Errors+run.HPPD.Requests-run.HPPD.OK, run.Acked, errText(run.Verified), run.HPPDCPU, run.ServerCPU, run.LoadCPU,
				run.Copy.Round(time.Millisecond), run.Verify.Round(time.Millisecond))
			res.Runs = append(res.Runs, *run)
		}
	}
	return res, nil
}

// buildPostgres creates and loads the seed database and returns its
// pending sessions and its size. The plan is benchmark 1's, so both
// backends hold the same sessions (made in the same order; only the
// transactions are smaller, pgTxSize). VACUUM ANALYZE then does what autovacuum
// would have done to a database that grew over a month.
func buildPostgres(ctx context.Context, srv *pgtest.Server, admin *pgx.Conn, cfg PostgresConfig) ([]Target, int64, error) {
	dropDB(ctx, admin, pgSeedDB)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgSeedDB); err != nil {
		return nil, 0, err
	}
	url, err := srv.URL(pgSeedDB)
	if err != nil {
		return nil, 0, err
	}
	db, err := pgstore.Open(ctx, url, pgstore.Options{})
	if err != nil {
		return nil, 0, err
	}
	plan := callbackPlan(cfg.Sessions, cfg.Targets)
	plan.TxSize = pgTxSize
	targets, err := BuildStore(db, plan)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, 0, err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		return nil, 0, fmt.Errorf("vacuum: %w", err)
	}
	var size int64
	if err := conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&size); err != nil {
		return nil, 0, err
	}
	return targets, size, nil
}

// pgTxSize is the sessions per transaction of the seed's load. A store
// transaction may hold a lock per key it touches until its commit (pgstore
// takes an advisory lock on every session id, HPP and KP session id and
// event it reads or writes), and the server's lock table holds
// max_locks_per_transaction (64) × max_connections (300) of them in all: a
// transaction of bbolt's 10,000 sessions, about 50,000 keys, runs out of
// shared memory. 1,000 sessions keep a load within it.
const pgTxSize = 1_000

// postgresRun measures n replicas once on a fresh copy of the seed.
func postgresRun(ctx context.Context, cfg *PostgresConfig, srv *pgtest.Server, admin *pgx.Conn, serverPID, i, n int, simURL string, targets []Target, check bool) (*PostgresRun, error) {
	run := &PostgresRun{Replicas: n}
	name := fmt.Sprintf("%srun_%d_%d", pgDBPrefix, n, i+1)
	dir := filepath.Join(cfg.Dir, fmt.Sprintf("run%d-replicas%d", i+1, n))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	dropDB(ctx, admin, name)
	t0 := time.Now()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+pgSeedDB+copyStrategy(admin)); err != nil {
		return nil, fmt.Errorf("copy the seed: %w", err)
	}
	run.Copy = time.Since(t0)
	defer dropDB(context.Background(), admin, name)
	url, err := srv.URL(name)
	if err != nil {
		return nil, err
	}
	var procs []*Proc
	defer func() {
		for _, p := range procs {
			p.Kill()
		}
	}()
	var addrs []string
	for k := 0; k < n; k++ {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		rdir := filepath.Join(dir, fmt.Sprintf("replica%d", k+1))
		if err := os.MkdirAll(rdir, 0o700); err != nil {
			return nil, err
		}
		// HPPD_DB is unused with a database URL but names the admin socket,
		// so each replica gets its own.
		env := hppdEnv(addr, filepath.Join(rdir, "hppd.db"), simURL, map[string]string{"HPPD_DATABASE_URL": url})
		p, err := StartProc(cfg.Bin, []string{"serve"}, env, filepath.Join(rdir, "hppd.log"))
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		addrs = append(addrs, addr)
	}
	for k, p := range procs {
		if _, err := p.WaitReady("http://"+addrs[k]+"/readyz", 60*time.Second); err != nil {
			return nil, err
		}
	}
	gen := newCallbackGen(targets, cfg.Conns, i)
	var cpu0 cpuSnap
	snap := func() cpuSnap {
		s := cpuSnap{load: selfCPU(), server: -1, machine: -1}
		if busy, err := machineBusy(); err == nil {
			s.machine = busy
		}
		for _, p := range procs {
			if t, err := procCPU(p.Pid()); err == nil {
				s.hppd += t.own()
			}
		}
		if serverPID > 0 {
			if t, err := treeCPU(serverPID); err == nil {
				s.server = t
			}
		}
		return s
	}
	run.HPPD, err = Load(ctx, LoadConfig{
		Addrs: addrs, Conns: cfg.Conns, Warmup: cfg.Warmup, Duration: cfg.Duration,
		Next: gen.next, Answered: gen.answered,
		AtStart: func() { cpu0 = snap() },
		AtEnd: func() {
			cpu1 := snap()
			// SIGKILL every replica at once, connections still sending:
			// every callback answered 2xx before this must be in the
			// database.
			for _, p := range procs {
				_ = p.Signal(syscall.SIGKILL)
			}
			run.HPPDCPU, run.LoadCPU = cpu1.hppd-cpu0.hppd, cpu1.load-cpu0.load
			run.MachineCPU = -1
			if cpu0.machine >= 0 && cpu1.machine >= 0 {
				run.MachineCPU = cpu1.machine - cpu0.machine
			}
			run.ServerCPU = -1
			if cpu0.server >= 0 && cpu1.server >= 0 {
				run.ServerCPU = cpu1.server - cpu0.server
			}
		},
	})
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		p.Kill()
	}
	// The whole-database check is one long read: hppd's statement timeout
	// is for a callback's statements, not for it.
	db, err := pgstore.Open(ctx, url, pgstore.Options{NoMigrate: true, StatementTimeout: 10 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("reopen after SIGKILL: %w", err)
	}
	defer db.Close()
	var chk func() error
	if check {
		chk = db.Check
	}
	t0 = time.Now()
	run.Acked, run.Verified = gen.verifyIn(db, "database", chk)
	run.Verify = time.Since(t0)
	return run, nil
}

// callbackPlan is benchmark 1's data: sessions, targets pending among the
// newest, two de-duplication entries each for the last 72 hours, the last
// fifth written in small transactions. The clock is an hour ahead, so that
// no target falls due for the poller while the benchmark runs (a due
// session costs Klarna reads).
func callbackPlan(sessions, targets int) Plan {
	return Plan{
		Sessions: sessions, Watched: targets, EventsPerSession: 2,
		Now: time.Now().Add(time.Hour), Seed: 11, Tail: sessions / 5,
	}
}

// copyStrategy copies a template database file by file where the server
// can (PostgreSQL 15 made WAL_LOG, a copy through the WAL, the default; a
// file copy is the faster one for a large template and as durable).
func copyStrategy(admin *pgx.Conn) string {
	var v int
	if err := admin.QueryRow(context.Background(), "SHOW server_version_num").Scan(&v); err == nil && v >= 150000 {
		return " STRATEGY FILE_COPY"
	}
	return ""
}

func dropDB(ctx context.Context, admin *pgx.Conn, name string) {
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

func readSettings(ctx context.Context, conn *pgx.Conn, names []string) ([][2]string, error) {
	var out [][2]string
	for _, n := range names {
		var v string
		if err := conn.QueryRow(ctx, "SHOW "+n).Scan(&v); err != nil {
			return nil, fmt.Errorf("SHOW %s: %w", n, err)
		}
		out = append(out, [2]string{n, v})
	}
	return out, nil
}

// postmasterPID finds the server's postmaster, whose processes' CPU the
// report counts: the throwaway cluster's from its pid file; another
// server's as the parent of this connection's backend, when that server
// runs on this machine and its processes are visible here.
func postmasterPID(ctx context.Context, srv *pgtest.Server, conn *pgx.Conn) (int, error) {
	if srv.Throwaway() {
		return srv.PostmasterPID()
	}
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return 0, err
	}
	st, err := procCPU(backend)
	if err != nil || !strings.HasPrefix(st.comm, "postgres") {
		return 0, errors.New("the server's processes are not visible on this machine")
	}
	return st.ppid, nil
}

// procTimes is what /proc/<pid>/stat says of a process's CPU, in seconds.
type procTimes struct {
	comm           string
	ppid           int
	utime, stime   float64
	cutime, cstime float64 // of its children that ended and were waited for
}

func (t procTimes) own() float64 { return t.utime + t.stime }

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every
// Linux architecture Go supports.
const clockTick = 100

// parseStat parses a /proc/<pid>/stat line. The command name is in
// parentheses and may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func parseStat(b []byte) (procTimes, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procTimes{}, fmt.Errorf("bad stat line %q", b)
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return procTimes{}, fmt.Errorf("short stat line %q", b)
	}
	t := procTimes{comm: string(b[open+1 : end])}
	var err error
	if t.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procTimes{}, fmt.Errorf("bad ppid in %q", b)
	}
	for k, dst := range []*float64{&t.utime, &t.stime, &t.cutime, &t.cstime} {
		n, err := strconv.ParseInt(f[11+k], 10, 64)
		if err != nil {
			return procTimes{}, fmt.Errorf("bad time in %q", b)
		}
		*dst = float64(n) / clockTick
	}
	return t, nil
}

func procCPU(pid int) (procTimes, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procTimes{}, err
	}
	return parseStat(b)
}

// treeCPU is the CPU, in seconds, of a PostgreSQL server so far: the
// postmaster's own, that of its ended children (backends of connections
// that closed), and that of its live children (backends, checkpointer, WAL
// writer). Two readings bracket a window: a backend that ends between them
// moves from the live sum to the postmaster's children's times.
func treeCPU(postmaster int) (float64, error) {
	pm, err := procCPU(postmaster)
	if err != nil {
		return 0, err
	}
	total := pm.own() + pm.cutime + pm.cstime
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == postmaster {
			continue
		}
		t, err := procCPU(pid)
		if err != nil || t.ppid != postmaster {
			continue // gone, or not the server's
		}
		total += t.own() + t.cutime + t.cstime
	}
	return total, nil
}

// selfCPU is hppd-bench's own CPU so far (the load generator and the idle
// simulator), in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// cpuSnap is one reading of the CPU totals.
type cpuSnap struct{ hppd, server, load, machine float64 }

// machineBusy is the CPU time, in seconds over all cores, the machine has
// spent on anything but idling and waiting for I/O (the first line of
// /proc/stat: user, nice, system, irq, softirq, steal).
func machineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (float64, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat starts with %q", line)
	}
	var busy int64
	for _, k := range []int{1, 2, 3, 6, 7, 8} { // user nice system _ _ irq softirq steal
		n, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q", line)
		}
		busy += n
	}
	return float64(busy) / clockTick, nil
}
