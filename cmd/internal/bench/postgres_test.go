package bench

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/pgtest"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/pgstore"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// BuildStore loads a PostgreSQL database through the store contract with
// the same plan as a bbolt file: the same pending sessions, every one
// taking a callback of the durability check's kind, and a database that
// passes pgstore's check.
func TestBuildStorePostgres(t *testing.T) {
	url := pgtest.DB(t)
	db, err := pgstore.Open(context.Background(), url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	plan := callbackPlan(1500, 300)
	plan.TxSize = 400
	targets, err := BuildStore(db, plan)
	if err != nil {
		t.Fatal(err)
	}
	fileTargets, err := BuildFile(t.TempDir()+"/hppd.db", plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 300 || len(fileTargets) != 300 {
		t.Fatalf("%d targets in the database, %d in the file, want 300", len(targets), len(fileTargets))
	}
	for i := range targets {
		if targets[i].Index != fileTargets[i].Index || targets[i].Secret != fileTargets[i].Secret {
			t.Fatalf("target %d differs between the backends: %+v, %+v", i, targets[i], fileTargets[i])
		}
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx store.Tx) error {
		sessions, _, _, err := tx.Counts()
		if err != nil {
			return err
		}
		if sessions[core.SessionPending] != 300 || sessions[core.SessionOrderPlaced] != 1200 {
			t.Errorf("counts %v", sessions)
		}
		s, err := tx.Session(targets[7].ID)
		if err != nil {
			return err
		}
		if s.HPPSessionID != targets[7].HPPID || s.Status != core.SessionPending {
			t.Errorf("target 7 is %+v", s)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The durability check finds an acknowledged callback that is not in
	// the database.
	g := newCallbackGen(targets, 2, 0)
	g.next(0)
	g.answered(0, nil, 200)
	if n, err := g.verifyIn(db, "database", db.Check); n != 1 || err == nil || !strings.Contains(err.Error(), "not in the database") {
		t.Fatalf("verify: %d, %v", n, err)
	}
}

// Benchmark 7's machinery on a small database: one and three replicas of
// the real binary on a durable throwaway cluster, every 2xx callback found
// after the SIGKILL of every replica, and the CPU of hppd and of the server
// read from /proc.
func TestPostgresMachinery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the hppd binary on PostgreSQL")
	}
	if err := pgtest.Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	bin := buildHPPD(t, t.TempDir())
	res, err := RunPostgres(context.Background(), PostgresConfig{
		Bin: bin, Dir: t.TempDir(), Sessions: 2000, Targets: 600, Conns: 12,
		Warmup: 200 * time.Millisecond, Duration: time.Second, Runs: 1, Check: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 2 || res.Runs[0].Replicas != 1 || res.Runs[1].Replicas != 3 {
		t.Fatalf("runs %+v", res.Runs)
	}
	for _, r := range res.Runs {
		if r.Verified != nil || r.Acked == 0 || r.Acked < r.HPPD.OK {
			t.Errorf("%d replicas: %d acked, %d 2xx in the window: %v", r.Replicas, r.Acked, r.HPPD.OK, r.Verified)
		}
		if r.HPPDCPU <= 0 || (res.Throwaway && r.ServerCPU <= 0) || r.LoadCPU <= 0 {
			t.Errorf("%d replicas: CPU hppd %.2f, server %.2f, load %.2f", r.Replicas, r.HPPDCPU, r.ServerCPU, r.LoadCPU)
		}
	}
	settings := map[string]string{}
	for _, s := range res.Settings {
		settings[s[0]] = s[1]
	}
	if res.Throwaway && (settings["fsync"] != "on" || settings["synchronous_commit"] != "on" || settings["shared_buffers"] != "128MB") {
		t.Errorf("settings %v", settings)
	}
	if res.DBSize <= 0 || res.Build <= 0 {
		t.Errorf("seed database %d bytes in %v", res.DBSize, res.Build)
	}
}

func TestParseStat(t *testing.T) {
	line := "4242 (postgres: a) b) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 30 12 20 0 1 0 100 1000 10 18446744073709551615\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.comm != "postgres: a) b" || st.ppid != 17 || st.utime != 2.5 || st.stime != 0.75 || st.cutime != 0.3 || st.cstime != 0.12 || st.own() != 3.25 {
		t.Fatalf("%+v", st)
	}
	for _, bad := range []string{"", "4242 postgres S 1", "1 (x) S 1 2 3"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	// This process: its own times, and a tree whose root it is.
	self, err := procCPU(os.Getpid())
	if err != nil || self.ppid != os.Getppid() {
		t.Fatalf("own stat: %+v, %v", self, err)
	}
	tree, err := treeCPU(os.Getpid())
	if err != nil || tree < self.own() {
		t.Fatalf("tree %.2f s, own %.2f s, %v", tree, self.own(), err)
	}
}

func TestParseProcStat(t *testing.T) {
	busy, err := parseProcStat([]byte("cpu  100 20 30 400 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"))
	if err != nil || busy != 1.71 {
		t.Fatalf("%v, %v", busy, err)
	}
	if _, err := parseProcStat([]byte("intr 1 2 3\n")); err == nil {
		t.Fatal("a line without cpu parsed")
	}
	if b, err := machineBusy(); err != nil || b <= 0 {
		t.Fatalf("this machine: %v, %v", b, err)
	}
}

func postgresResultForReport() *PostgresResult {
	lat := NewLatencies([]time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 90 * time.Millisecond})
	p := &PostgresResult{
		Config:    PostgresConfig{Sessions: 200000, Targets: 50000, Conns: 64, Warmup: 2 * time.Second, Duration: 8 * time.Second, Replicas: []int{1, 3}},
		Throwaway: true, Settings: [][2]string{{"fsync", "on"}, {"shared_buffers", "128MB"}},
		Build: 70 * time.Second, DBSize: 500 << 20,
	}
	for i := 0; i < 3; i++ {
		for _, n := range []int{1, 3} {
			p.Runs = append(p.Runs, PostgresRun{Replicas: n, HPPD: &LoadResult{Requests: 8000 / n, OK: 8000 / n, Elapsed: 8 * time.Second, Latencies: lat},
				Acked: 8100 / n, HPPDCPU: 4, ServerCPU: 6, LoadCPU: 0.5, MachineCPU: 12})
		}
	}
	return p
}

// Benchmark 7's section: a table and a Summary row per replica count, the
// settings, where the time goes, and bbolt's figure beside it.
func TestWritePostgres(t *testing.T) {
	p := postgresResultForReport()
	cb := &CallbackResult{Config: CallbackConfig{Sessions: 200000}, Runs: []CallbackRun{{HPPD: &LoadResult{OK: 40000, Elapsed: 10 * time.Second, Latencies: NewLatencies([]time.Duration{time.Millisecond, 30 * time.Millisecond})}}}}
	var buf bytes.Buffer
	writePostgres(&buf, p, cb)
	out := buf.String()
	for _, want := range []string{
		"## 7. Callback ingest on PostgreSQL",
		"| `fsync` | on |", "| `shared_buffers` | 128MB |",
		"**1 replica.**", "**3 replicas.**",
		"| 1 | 1000 | 20.00 | 90.00 | 90.0 | 0 | all 8,100 present | 4.00 | 6.00 | 0.50 |",
		"| Summary | 1000 (1000–1000, 3 runs) | 20.00 (20.00–20.00, 3 runs) | 90.00 (90.00–90.00, 3 runs) | 90.0 (90.0–90.0, 3 runs) | 0 | 24,300 of 24,300, 3 runs |",
		"| Summary | 333 (333–333, 3 runs) |",
		"PostgreSQL's processes used 0.75 of the 2 cores (750 µs of CPU per callback), hppd 0.50 (500 µs per callback), the load generator 0.06, other work on the machine 0.19; 0.50 stayed idle.",
		"Benchmark 1 in this run: 4000 (1 run) callbacks/s", "PostgreSQL with 1 replica: 0.25 of bbolt's rate.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q\n%s", want, out)
		}
	}
	vs := postgresVerdicts(p, cb)
	if len(vs) != 3 || vs[0].measured != "1000 (1000–1000, 3 runs); p99 90.0 (90.0–90.0, 3 runs) ms; bbolt (benchmark 1): 4000/s, p99 30.0 ms" || vs[0].target != "" || !vs[2].met {
		t.Fatalf("verdicts %+v", vs)
	}
	// A database smaller than benchmark 1's file is said so.
	p.Config.Sessions = 100000
	buf.Reset()
	writePostgres(&buf, p, cb)
	if !strings.Contains(buf.String(), "(100,000; not benchmark 1's 200,000, set by `-postgres-sessions`; 50,000 of them pending") {
		t.Errorf("a smaller database is not said:\n%s", buf.String())
	}
	// A lost callback is a missed verdict; an unknown server CPU is said so.
	p.Runs[1].Verified = errors.New("lost")
	p.Runs[0].ServerCPU = -1
	p.CPUNote = "the server's processes are not visible on this machine"
	buf.Reset()
	writePostgres(&buf, p, nil)
	out = buf.String()
	for _, want := range []string{"**lost**", "| unknown |", "the server's share is not known", "Benchmark 1 did not run", "not visible on this machine"} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q", want)
		}
	}
	if vs := postgresVerdicts(p, nil); vs[2].met || !strings.Contains(vs[0].measured, "benchmark 1 did not run") {
		t.Fatalf("verdicts %+v", vs)
	}
	if strings.Contains(out, "NaN") || strings.Contains(out, "%!") {
		t.Fatalf("bad formatting:\n%s", out)
	}
	if math.IsNaN(serverCPU(p.Runs[1])) || !math.IsNaN(serverCPU(p.Runs[0])) {
		t.Fatal("serverCPU")
	}
}

// The CPU sentence tells idle cores (waiting) from busy ones (the bound).
func TestWhereTimeGoes(t *testing.T) {
	run := func(machine float64) []PostgresRun {
		return []PostgresRun{{Replicas: 1, HPPD: &LoadResult{OK: 800, Elapsed: time.Second}, HPPDCPU: 0.3, ServerCPU: 0.4, LoadCPU: 0.05, MachineCPU: machine}}
	}
	for machine, want := range map[float64]string{
		0.75: "other work on the machine 0.00; 1.25 of the cores stayed idle, so the callbacks spent much of their time waiting",
		1.95: "other work on the machine 1.20; 0.05 stayed idle: the cores were the bound.",
		1.6:  "other work on the machine 0.85; 0.40 stayed idle.",
		-1:   "the load generator 0.05; 1.25 of the cores stayed idle",
	} {
		if got := whereTimeGoes(run(machine), 2, 1); !strings.Contains(got, want) {
			t.Errorf("machine %.2f s: %q lacks %q", machine, got, want)
		}
	}
	if got := whereTimeGoes(run(1), 2, 1); !strings.Contains(got, "PostgreSQL's processes used 0.40 of the 2 cores (500 µs of CPU per callback), hppd 0.30 (375 µs per callback)") {
		t.Errorf("%q", got)
	}
}
