package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// CallbackConfig configures benchmark 1, callback ingest.
type CallbackConfig struct {
	// Bin is the hppd binary under test; Self is the hppd-bench binary, whose
	// subcommands serve the no-storage ceiling and the profiled daemon.
	Bin, Self string
	// Dir is a work directory (data files, logs, profiles).
	Dir string
	// Sessions in the data file, Targets of them pending and receiving the
	// callbacks (defaults 200,000 and 50,000).
	Sessions, Targets int
	// Conns concurrent keep-alive connections (default 64).
	Conns int
	// Warmup and Duration of each measured load (defaults 2s and 8s).
	Warmup, Duration time.Duration
	// Runs of the pair (ceiling, hppd) (default 3).
	Runs int
	// Profile adds one run against the profiled daemon and summarises its
	// CPU and allocation profiles with Go's pprof.
	Profile bool
	// Go is the go command used for `go tool pprof` (default "go").
	Go string
	// ProfileDir keeps the profiles of the profile run (default: in Dir).
	ProfileDir string
	// MemDir, when set, is a directory in memory (tmpfs, MemoryDir) for one
	// more run with the data file there: the same load without the disk.
	MemDir string
	Log    io.Writer
}

func (c *CallbackConfig) defaults() {
	if c.Sessions <= 0 {
		c.Sessions = 200_000
	}
	if c.Targets <= 0 {
		c.Targets = 50_000
	}
	if c.Conns <= 0 {
		c.Conns = 64
	}
	if c.Warmup <= 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Duration <= 0 {
		c.Duration = 8 * time.Second
	}
	if c.Runs <= 0 {
		c.Runs = 3
	}
	if c.Go == "" {
		c.Go = "go"
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// CallbackRun is one measured run: the ceiling, the minimal durable server,
// then hppd.
type CallbackRun struct {
	Ceiling *LoadResult
	// Reference is the minimal durable server (reference.go) under the same
	// load on its own copy of the data file, SIGKILLed at the window's end
	// like hppd; RefAcked and RefVerified are its callbacks answered 2xx and
	// their check in its file, RefWriter what its writer did in the window.
	Reference    *LoadResult
	RefAcked     int
	RefVerified  error
	RefWriter    *WriterStats
	RefWriterErr error
	// RefCPU and CPU are the CPU seconds (user and system, /proc/<pid>/stat)
	// the minimal durable server and hppd used in the window.
	RefCPU, CPU float64
	HPPD        *LoadResult
	// Peak memory of hppd during the load (sampled every 50 ms).
	Peak Mem
	// Acked callbacks (2xx) before the SIGKILL that ended the run, and the
	// outcome of checking every one of them in the data file afterwards.
	Acked    int
	Verified error
	// IO is hppd's storage I/O during the window (/proc/<pid>/io deltas).
	IO IO
	// Writer is what hppd's single writer did during the window, from its
	// metrics (nil when they could not be scraped: WriterErr says why).
	Writer    *WriterStats
	WriterErr error
	// Floor is the floor (writer.go) measured right after the run, at the
	// sizes of CallbackResult.Floor: the disk's speed moves within minutes,
	// so each run is set against a floor of its own time.
	Floor []FloorCommit
}

// FloorShare is the run's durable rate as a percentage of the floor
// measured right after it at the first size (0 without one).
func (r *CallbackRun) FloorShare() float64 {
	if len(r.Floor) == 0 || r.HPPD == nil || r.Floor[0].Rate() <= 0 {
		return 0
	}
	return 100 * r.HPPD.RPS() / r.Floor[0].Rate()
}

// RefShare is hppd's durable rate as a percentage of the minimal durable
// server's in the same run (0 without one).
func (r *CallbackRun) RefShare() float64 {
	if r.Reference == nil || r.HPPD == nil || r.Reference.RPS() <= 0 {
		return 0
	}
	return 100 * r.HPPD.RPS() / r.Reference.RPS()
}

// CPUPerCallback is hppd's CPU per 2xx callback in the window, µs (0
// when not measured).
func (r *CallbackRun) CPUPerCallback() float64 { return cpuPer(r.CPU, r.HPPD) }

// RefCPUPerCallback is the minimal durable server's, µs.
func (r *CallbackRun) RefCPUPerCallback() float64 { return cpuPer(r.RefCPU, r.Reference) }

func cpuPer(seconds float64, l *LoadResult) float64 {
	if l == nil || l.OK == 0 {
		return 0
	}
	return 1e6 * seconds / float64(l.OK)
}

// WritePerCallback is the bytes hppd wrote to storage per 2xx callback in
// the window.
func (r *CallbackRun) WritePerCallback() float64 {
	if r.HPPD == nil || r.HPPD.OK == 0 {
		return 0
	}
	return float64(r.IO.WriteBytes) / float64(r.HPPD.OK)
}

// Ratio is hppd's durable rate over the ceiling's.
func (r *CallbackRun) Ratio() float64 {
	if r.Ceiling.RPS() == 0 {
		return 0
	}
	return r.HPPD.RPS() / r.Ceiling.RPS()
}

// RefRatio is the minimal durable server's rate over the ceiling's (0
// without either).
func (r *CallbackRun) RefRatio() float64 {
	if r.Reference == nil || r.Ceiling.RPS() == 0 {
		return 0
	}
	return r.Reference.RPS() / r.Ceiling.RPS()
}

// CallbackResult is benchmark 1's outcome.
type CallbackResult struct {
	Config   CallbackConfig
	FileSize int64
	// FreePages of the file as built.
	FreePages int64
	Runs      []CallbackRun
	Profile   *ProfileSummary
	// Disk is the cost of commits on the data file's disk, the scattered
	// commit sized like one batch of cfg.Conns callbacks of the runs.
	Disk *DiskResult
	// Memory is the run with the data file in memory (CallbackConfig.MemDir;
	// nil without one); its ceiling is not measured.
	Memory *CallbackRun
	// Floor is the floor of the disk and bbolt (writer.go): transactions
	// rewriting k random target sessions of the file, at the first run's
	// batch size, half the connections and one callback per connection;
	// the tries made after every run, together.
	Floor    []FloorCommit
	FloorErr error
}

// FloorShares are the runs' FloorShare, for the runs that have one.
func (cb *CallbackResult) FloorShares() []float64 {
	var out []float64
	for i := range cb.Runs {
		if x := cb.Runs[i].FloorShare(); x > 0 {
			out = append(out, x)
		}
	}
	return out
}

// callbackStatuses is the cycle of statuses each session's callbacks go
// through: a shopper opening the page, going back, failing, erring, coming
// back. Every callback changes the session's Klarna status, so every one is
// a real write (history entry, CheckAt pushed back, index moved). Final
// statuses are left out: Klarna's callback for one is an unsigned hint that
// hppd answers with a sync job and a Klarna read (benchmarks 2 and 3 cover
// that part), and a session that is final takes later callbacks on a path
// that writes nothing.
var callbackStatuses = []string{core.KlarnaInProgress, core.KlarnaBack, core.KlarnaInProgress, core.KlarnaFailed, core.KlarnaInProgress, core.KlarnaErrorStatus}

// RunCallbacks runs benchmark 1: a data file of cfg.Sessions sessions is
// built, and each run starts hppd (the real binary) on a fresh copy of it,
// loads it with valid status_update callbacks at cfg.Conns connections,
// SIGKILLs it the moment the window closes (connections still sending), and
// then checks in the file that every callback answered 2xx was committed.
// Before each hppd load the no-storage ceiling takes the same load.
func RunCallbacks(ctx context.Context, cfg CallbackConfig) (*CallbackResult, error) {
	cfg.defaults()
	res := &CallbackResult{Config: cfg}
	seed := filepath.Join(cfg.Dir, "callbacks-seed.db")
	fmt.Fprintf(cfg.Log, "bench 1: building a file of %d sessions (%d pending targets)\n", cfg.Sessions, cfg.Targets)
	targets, err := BuildFile(seed, callbackPlan(cfg.Sessions, cfg.Targets))
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(seed); err == nil {
		res.FileSize = fi.Size()
	}
	if st, err := ReadFileStats(seed); err == nil {
		res.FreePages = st.Free / 4096
	}
	sim := klarnasim.New(klarnasim.Options{Seed: 11, Unlimited: true}) // measures hppd, not Klarna's limits
	simSrv := httptest.NewServer(sim.Handler())
	defer func() { simSrv.Close(); sim.Close() }()

	var ks []int // the floor's sizes, from the first run's batch
	for i := 0; i < cfg.Runs; i++ {
		run, err := callbackRun(ctx, &cfg, i, filepath.Join(cfg.Dir, fmt.Sprintf("callbacks-run%d", i+1)), seed, simSrv.URL, targets, nil, true)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Fprintf(cfg.Log, "bench 1 run %d: ceiling %.0f/s; minimal durable server %.0f/s, p99 %.2f ms, CPU %.0f µs per callback, %d acked, durable: %v; writer: %s\n",
			i+1, run.Ceiling.RPS(), run.Reference.RPS(), ms(run.Reference.Latencies.Quantile(0.99)), run.RefCPUPerCallback(), run.RefAcked, errText(run.RefVerified), writerStatsText(run.RefWriter, run.RefWriterErr))
		fmt.Fprintf(cfg.Log, "bench 1 run %d: hppd %.0f/s (%.2f of the ceiling, %.0f%% of the minimal durable server), p50 %.2f ms, p99 %.2f ms, max %.1f ms, CPU %.0f µs per callback, %d acked, durable: %v; writer: %s\n",
			i+1, run.HPPD.RPS(), run.Ratio(), run.RefShare(), ms(run.HPPD.Latencies.Quantile(0.5)),
			ms(run.HPPD.Latencies.Quantile(0.99)), ms(run.HPPD.Latencies.Max()), run.CPUPerCallback(), run.Acked, errText(run.Verified), writerText(run))
		if res.FloorErr == nil {
			if ks == nil {
				var ws []WriterStats
				if run.Writer != nil {
					ws = []WriterStats{*run.Writer}
				}
				ks = floorSizes(ws, cfg.Conns)
			}
			run.Floor, res.FloorErr = MeasureFloor(seed, cfg.Dir, targets, ks, floorTries)
			for _, f := range run.Floor {
				fmt.Fprintf(cfg.Log, "bench 1 run %d floor: %d sessions per transaction: %s pages, puts %s ms, commit %s ms: %.0f/s\n",
					i+1, f.K, SpreadOf(f.Writes).Format("%.0f"), SpreadOf(f.Work).Format("%.2f"), SpreadOf(f.MS).Format("%.2f"), f.Rate())
			}
			if res.FloorErr != nil {
				fmt.Fprintf(cfg.Log, "bench 1 floor: %v\n", res.FloorErr)
			}
			res.Floor = mergeFloors(res.Floor, run.Floor)
		}
		res.Runs = append(res.Runs, *run)
	}
	// The disk: a commit of as many scattered pages as one batch of
	// cfg.Conns callbacks wrote in the runs.
	var per []float64
	for _, r := range res.Runs {
		per = append(per, r.WritePerCallback())
	}
	pages := int(SpreadOf(per).Median*float64(cfg.Conns)/4096 + 0.5)
	if pages < 1 {
		pages = 300
	}
	if res.Disk, err = MeasureDisk(cfg.Dir, pages, 30); err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	fmt.Fprintf(cfg.Log, "bench 1 disk: commit of 1 page %s ms, of %d scattered pages %s ms\n",
		SpreadOf(res.Disk.OnePage).Format("%.2f"), pages, SpreadOf(res.Disk.Scatter).Format("%.1f"))
	if cfg.MemDir != "" {
		memDir, err := os.MkdirTemp(cfg.MemDir, "hppd-bench-callbacks-")
		if err != nil {
			return nil, err
		}
		run, err := callbackRun(ctx, &cfg, cfg.Runs, memDir, seed, simSrv.URL, targets, nil, false)
		os.RemoveAll(memDir)
		if err != nil {
			return nil, fmt.Errorf("run in memory: %w", err)
		}
		fmt.Fprintf(cfg.Log, "bench 1, data file in memory: hppd %.0f/s, p50 %.2f ms, p99 %.2f ms, %d acked, durable: %v; writer: %s\n",
			run.HPPD.RPS(), ms(run.HPPD.Latencies.Quantile(0.5)), ms(run.HPPD.Latencies.Quantile(0.99)), run.Acked, errText(run.Verified), writerText(run))
		res.Memory = run
	}
	if cfg.Profile {
		prof := &profileFiles{dir: cfg.ProfileDir}
		if prof.dir == "" {
			prof.dir = filepath.Join(cfg.Dir, "profile")
		}
		if err := os.MkdirAll(prof.dir, 0o700); err != nil {
			return nil, err
		}
		run, err := callbackRun(ctx, &cfg, cfg.Runs, filepath.Join(cfg.Dir, fmt.Sprintf("callbacks-run%d", cfg.Runs+1)), seed, simSrv.URL, targets, prof, false)
		if err != nil {
			return nil, fmt.Errorf("profile run: %w", err)
		}
		fmt.Fprintf(cfg.Log, "bench 1 profile run: hppd %.0f/s under the profiler; writer: %s\n", run.HPPD.RPS(), writerText(run))
		res.Profile = summarise(ctx, cfg.Go, prof, run.HPPD.RPS())
		res.Profile.Kept = cfg.ProfileDir != ""
	}
	return res, nil
}

// floorTries is how many transactions the floor times at each size after
// each run.
const floorTries = 20

// mergeFloors adds the tries of fl, measured at the same sizes, to acc.
func mergeFloors(acc, fl []FloorCommit) []FloorCommit {
	if acc == nil {
		for _, f := range fl {
			acc = append(acc, FloorCommit{K: f.K, Writes: slices.Clone(f.Writes), Work: slices.Clone(f.Work), MS: slices.Clone(f.MS)})
		}
		return acc
	}
	for i := range min(len(acc), len(fl)) {
		acc[i].Writes = append(acc[i].Writes, fl[i].Writes...)
		acc[i].Work = append(acc[i].Work, fl[i].Work...)
		acc[i].MS = append(acc[i].MS, fl[i].MS...)
	}
	return acc
}

// halfConns is the largest batch a writer that never waits gets on average
// from conns connections: a connection answered when one commit ends sends
// its next callback while the next commit runs, so it is in every other
// commit at most. The floor is measured at it, and the report reads it back.
func halfConns(conns int) int { return max(conns/2, 1) }

// floorSizes are the batch sizes the floor is measured at, in this order:
// the runs' median callbacks per commit, half the connections (the most a
// writer that never waits gets on average) and one callback per connection.
func floorSizes(ws []WriterStats, conns int) []int {
	var ks []int
	if len(ws) > 0 {
		ks = append(ks, max(int(writerOf(ws, WriterStats.CallsPerCommit).Median+0.5), 1))
	}
	for _, k := range []int{halfConns(conns), conns} {
		if !slices.Contains(ks, k) {
			ks = append(ks, k)
		}
	}
	return ks
}

// writerText is a run's writer figures for the log.
func writerText(run *CallbackRun) string { return writerStatsText(run.Writer, run.WriterErr) }

// writerStatsText is a writer's figures for the log, or why there are none.
func writerStatsText(w *WriterStats, err error) string {
	if w == nil {
		return errText(err)
	}
	return fmt.Sprintf("busy %.0f%%, %.1f callbacks and %.0f pages per commit, commit %.2f ms, work %.2f ms; %.1f garbage collections/s, GOGC %.0f",
		100*w.Busy(), w.CallsPerCommit(), w.WritesPerCommit(), w.CommitMS(), w.WorkMS(), w.GCsPerSecond(), w.GOGC)
}

// ack is a callback and its answer.
type ack struct {
	target int // index into targets
	event  string
	status string
}

// callbackRun measures the ceiling (with ceiling set) and then hppd once,
// with its data file in dir. With prof set, hppd runs under the profiler
// (hppd-bench profiled-serve) and is stopped with SIGTERM instead of killed.
func callbackRun(ctx context.Context, cfg *CallbackConfig, n int, dir, seed, simURL string, targets []Target, prof *profileFiles, ceiling bool) (*CallbackRun, error) {
	run := &CallbackRun{}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	gen := newCallbackGen(targets, cfg.Conns, n)

	if ceiling {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		ceil, err := StartProc(cfg.Self, []string{"ceiling", "-listen", addr}, nil, filepath.Join(dir, "ceiling.log"))
		if err != nil {
			return nil, err
		}
		if _, err := ceil.WaitReady("http://"+addr+"/ready", 10*time.Second); err != nil {
			ceil.Kill()
			return nil, err
		}
		run.Ceiling, err = Load(ctx, LoadConfig{Addr: addr, Conns: cfg.Conns, Warmup: cfg.Warmup, Duration: cfg.Duration, Next: gen.next})
		ceil.Kill()
		if err != nil {
			return nil, err
		}
		gen = newCallbackGen(targets, cfg.Conns, n) // the next server gets the same callbacks, with fresh event ids
		if err := referenceRun(ctx, cfg, run, dir, seed, targets, gen); err != nil {
			return nil, fmt.Errorf("minimal durable server: %w", err)
		}
		gen = newCallbackGen(targets, cfg.Conns, n)
	}

	dbPath := filepath.Join(dir, "hppd.db")
	if err := copyFile(seed, dbPath); err != nil {
		return nil, err
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	maddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	env := hppdEnv(addr, dbPath, simURL, map[string]string{"HPPD_METRICS_LISTEN": maddr})
	var p *Proc
	if prof == nil {
		p, err = StartProc(cfg.Bin, []string{"serve"}, env, filepath.Join(dir, "hppd.log"))
	} else {
		p, err = StartProc(cfg.Self, []string{"profiled-serve", "-cpu", prof.cpu(), "-allocs-base", prof.allocsBase(), "-allocs", prof.allocs()}, env, filepath.Join(dir, "hppd.log"))
	}
	if err != nil {
		return nil, err
	}
	defer p.Kill()
	if _, err := p.WaitReady("http://"+addr+"/readyz", 30*time.Second); err != nil {
		return nil, err
	}
	sampler := SampleMem(p.Pid(), 50*time.Millisecond)
	var io0 IO
	var cpu cpuWindow
	// The writer's figures over the window, from hppd's metrics.
	var w0 *writerCounters
	var werr0 error
	writerStart := func() { w0, werr0 = scrapeWriter(ctx, maddr) }
	writerEnd := func() {
		w1, err := scrapeWriter(ctx, maddr)
		run.Writer, run.WriterErr = writerBetween(w0, w1), errors.Join(werr0, err)
	}
	lc := LoadConfig{
		Addr: addr, Conns: cfg.Conns, Warmup: cfg.Warmup, Duration: cfg.Duration,
		Next: gen.next, Answered: gen.answered,
		AtStart: func() {
			cpu.start(p.Pid())
			writerStart()
			io0, _ = ReadIO(p.Pid())
		},
		AtEnd: func() {
			run.CPU = cpu.end()
			if io1, err := ReadIO(p.Pid()); err == nil {
				run.IO = IO{WriteBytes: io1.WriteBytes - io0.WriteBytes, Syscw: io1.Syscw - io0.Syscw}
			}
			writerEnd()
			// SIGKILL at once, connections still sending: every callback
			// answered 2xx before this must be in the file.
			_ = p.Signal(syscall.SIGKILL)
		},
	}
	if prof != nil {
		lc.AtStart = func() {
			writerStart()
			_ = p.Signal(syscall.SIGUSR1)
		}
		lc.AtEnd = func() {
			_ = p.Signal(syscall.SIGUSR2)
			writerEnd()
		}
	}
	run.HPPD, err = Load(ctx, lc)
	run.Peak, _ = sampler.Stop()
	if err != nil {
		return nil, err
	}
	if prof != nil {
		if err := p.Stop(30 * time.Second); err != nil {
			return nil, fmt.Errorf("profiled daemon: %w", err)
		}
		return run, nil
	}
	p.Kill()
	run.Acked, run.Verified = gen.verify(dbPath, n == 0)
	return run, nil
}

// referenceRun loads the minimal durable server (hppd-bench durable) on a
// copy of seed with gen's callbacks, SIGKILLs it the moment the window
// closes, as hppd is, and checks its file for every callback it answered
// 2xx.
func referenceRun(ctx context.Context, cfg *CallbackConfig, run *CallbackRun, dir, seed string, targets []Target, gen *callbackGen) error {
	dbPath := filepath.Join(dir, "reference.db")
	if err := copyFile(seed, dbPath); err != nil {
		return err
	}
	defer os.Remove(dbPath)
	addr, err := FreeAddr()
	if err != nil {
		return err
	}
	p, err := StartProc(cfg.Self, []string{"durable", "-listen", addr, "-db", dbPath}, nil, filepath.Join(dir, "reference.log"))
	if err != nil {
		return err
	}
	defer p.Kill()
	if _, err := p.WaitReady("http://"+addr+"/ready", 30*time.Second); err != nil {
		return err
	}
	var w0 *writerCounters
	var werr0 error
	var cpu cpuWindow
	run.Reference, err = Load(ctx, LoadConfig{
		Addr: addr, Conns: cfg.Conns, Warmup: cfg.Warmup, Duration: cfg.Duration,
		Next: gen.next, Answered: gen.answered,
		AtStart: func() {
			cpu.start(p.Pid())
			w0, werr0 = scrapeReference(ctx, addr)
		},
		AtEnd: func() {
			run.RefCPU = cpu.end()
			w1, err := scrapeReference(ctx, addr)
			run.RefWriter, run.RefWriterErr = writerBetween(w0, w1), errors.Join(werr0, err)
			_ = p.Signal(syscall.SIGKILL)
		},
	})
	if err != nil {
		return err
	}
	p.Kill()
	run.RefAcked, run.RefVerified = gen.verify(dbPath, false)
	return nil
}

// cpuWindow is the CPU a process used between start and end, from
// /proc/<pid>/stat (0 if either reading failed).
type cpuWindow struct {
	pid int
	at  float64
	ok  bool
}

func (c *cpuWindow) start(pid int) {
	t, err := procCPU(pid)
	c.pid, c.at, c.ok = pid, t.own(), err == nil
}

func (c *cpuWindow) end() float64 {
	t, err := procCPU(c.pid)
	if !c.ok || err != nil {
		return 0
	}
	return t.own() - c.at
}

// callbackGen makes the callbacks of one load: connection c sends to the
// targets c, c+conns, c+2·conns, … in turn, so a session's callbacks are
// sequential (as Klarna sends them) and each has a fresh event id.
type callbackGen struct {
	targets []Target
	conns   int
	prefix  string
	// Per connection (touched only by its goroutine).
	cursor  []int
	seq     []int
	current []ack
	acked   [][]ack
	round   []int // per target: callbacks sent so far
}

func newCallbackGen(targets []Target, conns, run int) *callbackGen {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &callbackGen{
		targets: targets, conns: conns,
		prefix:  hex.EncodeToString(b[:]),
		cursor:  make([]int, conns),
		seq:     make([]int, conns),
		current: make([]ack, conns),
		acked:   make([][]ack, conns),
		round:   make([]int, len(targets)),
	}
}

func (g *callbackGen) next(c int) Request {
	i := c + g.cursor[c]*g.conns
	if i >= len(g.targets) {
		g.cursor[c] = 0
		i = c
	}
	g.cursor[c]++
	t := &g.targets[i]
	status := callbackStatuses[g.round[i]%len(callbackStatuses)]
	g.round[i]++
	g.seq[c]++
	event := fmt.Sprintf("%s-%04x-%08x", g.prefix, c, g.seq[c])
	g.current[c] = ack{target: i, event: event, status: status}
	now := time.Now().UTC()
	body := make([]byte, 0, 256)
	body = append(body, `{"event_id":"`...)
	body = append(body, event...)
	body = append(body, `","session":{"session_id":"`...)
	body = append(body, t.HPPID...)
	body = append(body, `","status":"`...)
	body = append(body, status...)
	body = append(body, `","updated_at":"`...)
	body = now.AppendFormat(body, time.RFC3339Nano)
	body = append(body, `","expires_at":"`...)
	body = now.Add(47*time.Hour).AppendFormat(body, time.RFC3339Nano)
	body = append(body, `"}}`...)
	return Request{
		Method: "POST",
		Target: "/klarna/hpp/" + t.ID + "/status?secret=" + t.Secret + "&hppId=" + t.HPPID,
		Body:   body,
	}
}

func (g *callbackGen) answered(c int, _ *Request, status int) {
	if status/100 == 2 {
		g.acked[c] = append(g.acked[c], g.current[c])
		g.current[c] = ack{target: -1}
	}
}

// verify opens the file of a killed hppd and checks every acknowledged
// callback: its event is marked, and its session shows its status, or that
// of the one callback still in flight for it when the process died (which
// may have committed without its answer getting out). With check set, the
// whole file also goes through store.Check.
func (g *callbackGen) verify(path string, check bool) (int, error) {
	db, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		return 0, fmt.Errorf("reopen after SIGKILL: %w", err)
	}
	defer db.Close()
	var chk func() error
	if check {
		chk = db.Check
	}
	return g.verifyIn(db, "file", chk)
}

// Viewer is the part of store.Store the durability check reads through.
type Viewer interface {
	View(fn func(store.Tx) error) error
}

// verifyIn is verify on a store of either backend, where naming it in
// errors ("file", "database"); check, when set, is the backend's whole-store
// check, run after the callbacks are found.
func (g *callbackGen) verifyIn(db Viewer, where string, check func() error) (int, error) {
	last := make(map[int]string)
	inflight := make(map[int]string)
	n := 0
	var missing []string
	err := db.View(func(tx store.Tx) error {
		for c := range g.acked {
			for _, a := range g.acked[c] {
				n++
				seen, err := tx.SeenEvent(g.targets[a.target].HPPID, a.event)
				if err != nil {
					return err
				}
				if !seen {
					missing = append(missing, a.event)
				}
				last[a.target] = a.status
			}
			if cur := g.current[c]; cur.target >= 0 && cur.event != "" {
				inflight[cur.target] = cur.status
			}
		}
		for t, st := range last {
			s, err := tx.Session(g.targets[t].ID)
			if err != nil {
				return err
			}
			if s.KlarnaStatus != st && s.KlarnaStatus != inflight[t] {
				missing = append(missing, fmt.Sprintf("session %s is %s, acked %s", s.ID, s.KlarnaStatus, st))
			}
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if len(missing) > 0 {
		return n, fmt.Errorf("%d of %d acknowledged callbacks not in the %s after SIGKILL, e.g. %s", len(missing), n, where, missing[0])
	}
	if n == 0 {
		return 0, errors.New("no callback was acknowledged")
	}
	if check != nil {
		if err := check(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// hppdEnv is hppd's environment for a benchmark: production defaults except
// the address, the data file and Klarna (the simulator).
func hppdEnv(addr, db, klarnaURL string, extra map[string]string) []string {
	vars := map[string]string{
		"HPPD_LISTEN":          addr,
		"HPPD_METRICS_LISTEN":  "127.0.0.1:0",
		"HPPD_DB":              db,
		"HPPD_KLARNA_BASE_URL": klarnaURL,
		"HPPD_KLARNA_USERNAME": "sim",
		"HPPD_KLARNA_PASSWORD": "sim",
		"HPPD_JWT_HS256_KEY":   benchJWTKey,
	}
	for k, v := range extra {
		vars[k] = v
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// benchJWTKey signs the benchmarks' storefront tokens (HS256).
const benchJWTKey = "hppd-bench-hs256-key-0123456789abcdef"

// copyFile copies src to dst (mode 0600) and fsyncs it. It writes one 4 KiB
// page at a time, as bbolt writes its pages: the page cache then holds the
// copy in page-sized folios, as it holds a file bbolt wrote. (A copy made
// with large writes gets large folios, and each later 4 KiB page write by
// bbolt then dirties, and writes back, a whole large folio: on Linux 6.x
// that multiplied the bytes written per callback about fifteen-fold.)
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for {
		n, rerr := io.ReadFull(in, buf)
		for off := 0; off < n; off += 4096 {
			if _, err := out.Write(buf[off:min(off+4096, n)]); err != nil {
				out.Close()
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			out.Close()
			return rerr
		}
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func errText(err error) string {
	if err == nil {
		return "yes"
	}
	return strings.TrimSpace(err.Error())
}
