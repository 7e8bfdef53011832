package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/gctune"
	"github.com/hppd/hppd/metrics"
)

// ServeProfiled runs hppd's daemon exactly as `hppd serve` wires it
// (config.Load from the environment, daemon.Main), with the CPU and
// allocation profilers driven by signals: SIGUSR1 writes the allocation
// baseline and starts the CPU profile, SIGUSR2 stops it and writes the
// allocations since start; SIGTERM (or ctx) shuts the daemon down. It is
// `hppd-bench profiled-serve`, the daemon of benchmark 1's profile run: the
// real binary is built stripped and without a profiling endpoint.
func ServeProfiled(ctx context.Context, getenv func(string) string, cpuPath, allocsBase, allocsPath string, stderr io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv}))
	// As `hppd serve` wires it (cmd/hppd): metrics, the admin socket and
	// the collector's pacing included, so that the profile holds their
	// cost (and saving) too.
	gc := gctune.Start(getenv)
	defer gc.Stop()
	m := &daemon.Main{Config: cfg, Logger: log, Metrics: metrics.New(daemon.Version), Admin: true}
	if err := m.Run(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	var cpu *os.File
	var perr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case s := <-sigs:
			switch s {
			case syscall.SIGUSR1:
				if cpu == nil {
					perr = errors.Join(perr, writeProfile("allocs", allocsBase))
					if cpu, err = os.Create(cpuPath); err != nil {
						perr = errors.Join(perr, err)
						continue
					}
					perr = errors.Join(perr, pprof.StartCPUProfile(cpu))
				}
			case syscall.SIGUSR2:
				if cpu != nil {
					pprof.StopCPUProfile()
					perr = errors.Join(perr, cpu.Close(), writeProfile("allocs", allocsPath))
					cpu = nil
				}
			default:
				break loop
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return errors.Join(perr, m.Close(sctx))
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type profileFiles struct{ dir string }

func (p *profileFiles) cpu() string        { return filepath.Join(p.dir, "cpu.pprof") }
func (p *profileFiles) allocsBase() string { return filepath.Join(p.dir, "allocs-base.pprof") }
func (p *profileFiles) allocs() string     { return filepath.Join(p.dir, "allocs.pprof") }

// ProfileSummary is what benchmark 1's profiles say, as pprof prints it.
type ProfileSummary struct {
	Dir string
	// Kept: Dir outlives the run.
	Kept bool
	// RPS under the profiler, for CPU per callback.
	RPS float64
	// CPUSeconds sampled over WallSeconds of the window; WriterSeconds of
	// them in the store's single writer goroutine (store.(*DB).writer and
	// below: the batch functions, bbolt's commit), which runs one batch
	// after the other.
	CPUSeconds, WallSeconds, WriterSeconds float64
	CPUAreas, AllocAreas                   []Area
	CPUTop, AllocTop                       []string // pprof -top lines (flat, flat%, sum%, cum, cum%, function)
	AllocTotal                             string
	Err                                    string
}

// Area is a share of the profile (flat time or allocated bytes) by where the
// code lives.
type Area struct {
	Name    string
	Percent float64
}

// summarise runs `go tool pprof -top` on the profiles of the profile run.
func summarise(ctx context.Context, goCmd string, pf *profileFiles, rps float64) *ProfileSummary {
	s := &ProfileSummary{Dir: pf.dir, RPS: rps}
	cpuOut, err := pprofTop(ctx, goCmd, "-top", "-nodecount=100000", pf.cpu())
	if err != nil {
		s.Err = err.Error()
		return s
	}
	s.CPUAreas, s.CPUTop = parseTop(cpuOut, 15)
	for _, line := range strings.Split(cpuOut, "\n") {
		// "Duration: 8.12s, Total samples = 15.61s (192.31%)"
		if d, ok := strings.CutPrefix(strings.TrimSpace(line), "Duration: "); ok {
			dur, rest, _ := strings.Cut(d, ",")
			if v, err := time.ParseDuration(strings.TrimSpace(dur)); err == nil {
				s.WallSeconds = v.Seconds()
			}
			if _, tot, ok := strings.Cut(rest, "= "); ok {
				tot, _, _ = strings.Cut(tot, " ")
				if v, err := time.ParseDuration(tot); err == nil {
					s.CPUSeconds = v.Seconds()
				}
			}
		}
	}
	if cumOut, err := pprofTop(ctx, goCmd, "-top", "-cum", "-nodecount=100000", pf.cpu()); err == nil {
		s.WriterSeconds = cumOf(cumOut, "github.com/hppd/hppd/store/boltstore.(*DB).writer")
	}
	allocOut, err := pprofTop(ctx, goCmd, "-top", "-nodecount=100000", "-sample_index=alloc_space", "-base", pf.allocsBase(), pf.allocs())
	if err != nil {
		s.Err = err.Error()
		return s
	}
	s.AllocAreas, s.AllocTop = parseTop(allocOut, 12)
	for _, line := range strings.Split(allocOut, "\n") {
		// "Showing nodes accounting for 1.2GB, 99% of 1.21GB total"
		if _, tot, ok := strings.Cut(line, "% of "); ok {
			s.AllocTotal = strings.TrimSuffix(strings.TrimSpace(tot), " total")
			break
		}
	}
	return s
}

func pprofTop(ctx context.Context, goCmd string, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, goCmd, append([]string{"tool", "pprof"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go tool pprof %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("go tool pprof: %w", err)
	}
	return string(out), nil
}

// cumOf is the cumulative seconds of function fn in `pprof -top -cum`
// output, 0 when it is not there.
func cumOf(out, fn string) float64 {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.Join(f[5:], " ") == fn {
			if d, err := time.ParseDuration(f[3]); err == nil {
				return d.Seconds()
			}
		}
	}
	return 0
}

// parseTop reads `pprof -top` output: the first n function lines, and the
// flat shares summed by area.
func parseTop(out string, n int) ([]Area, []string) {
	sums := map[string]float64{}
	var top []string
	inTable := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 5 && f[0] == "flat" && f[1] == "flat%" {
			inTable = true
			continue
		}
		if !inTable || len(f) < 6 {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		if err != nil {
			continue
		}
		fn := strings.Join(f[5:], " ")
		sums[areaOf(fn)] += pct
		if len(top) < n {
			top = append(top, line)
		}
	}
	areas := make([]Area, 0, len(sums))
	for k, v := range sums {
		areas = append(areas, Area{Name: k, Percent: v})
	}
	slices.SortFunc(areas, func(a, b Area) int {
		switch {
		case a.Percent > b.Percent:
			return -1
		case a.Percent < b.Percent:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return areas, top
}

// areaRules map a function's package to an area of the profile; the first
// matching prefix wins.
var areaRules = []struct{ prefix, area string }{
	{"internal/runtime/syscall", "system calls (socket I/O, file writes, fdatasync)"},
	{"syscall.", "system calls (socket I/O, file writes, fdatasync)"},
	{"internal/poll.", "system calls (socket I/O, file writes, fdatasync)"},
	{"runtime.gc", "Go runtime: garbage collection"},
	{"runtime.scanobject", "Go runtime: garbage collection"},
	{"runtime.scanObject", "Go runtime: garbage collection"},
	{"runtime.greyobject", "Go runtime: garbage collection"},
	{"runtime.findObject", "Go runtime: garbage collection"},
	{"runtime.markBits", "Go runtime: garbage collection"},
	{"runtime.sweep", "Go runtime: garbage collection"},
	{"runtime.(*gcWork)", "Go runtime: garbage collection"},
	{"runtime.(*mspan)", "Go runtime: garbage collection"},
	{"runtime.typePointers", "Go runtime: garbage collection"},
	{"runtime.tryDeferToSpanScan", "Go runtime: garbage collection"},
	{"runtime.scanblock", "Go runtime: garbage collection"},
	{"runtime.wbBuf", "Go runtime: garbage collection"},
	{"runtime.bulkBarrier", "Go runtime: garbage collection"},
	{"runtime.mallocgc", "Go runtime: allocation"},
	{"runtime.(*mcache)", "Go runtime: allocation"},
	{"runtime.(*mcentral)", "Go runtime: allocation"},
	{"runtime.(*mheap)", "Go runtime: allocation"},
	{"runtime.nextFreeFast", "Go runtime: allocation"},
	{"runtime.heapSetType", "Go runtime: allocation"},
	{"runtime.memclrNoHeapPointers", "Go runtime: allocation"},
	{"runtime.growslice", "Go runtime: allocation"},
	{"runtime.makeslice", "Go runtime: allocation"},
	{"runtime.newobject", "Go runtime: allocation"},
	{"runtime.", "Go runtime: scheduler, memmove, maps, other"},
	{"internal/runtime/", "Go runtime: scheduler, memmove, maps, other"},
	{"gcWriteBarrier", "Go runtime: garbage collection"},
	{"go.etcd.io/bbolt", "bbolt (B+tree, pages, commit)"},
	{"github.com/hppd/hppd/store", "hppd store (keys, indexes, codec glue)"},
	{"github.com/klauspost/compress", "value compression (S2/zstd)"},
	{"encoding/json", "JSON (encoding/json)"},
	{"github.com/bytedance/", "JSON (encoding/json)"},
	{"github.com/goccy/go-json", "JSON (encoding/json)"},
	{"encoding/base64", "JSON (encoding/json)"},
	{"github.com/gin-gonic/gin", "HTTP: gin"},
	{"net/http", "HTTP: net/http"},
	{"net/textproto", "HTTP: net/http"},
	{"net/url", "HTTP: net/http"},
	{"net.", "HTTP: net/http"},
	{"bufio.", "HTTP: net/http"},
	{"crypto/", "crypto (SHA-256 of secrets and event keys)"},
	{"log/slog", "logging (slog)"},
	{"github.com/prometheus", "metrics"},
	{"github.com/hppd/hppd/", "hppd flows (hpp, webhook, core)"},
	{"cmpbody", "bbolt (B+tree, pages, commit)"},
	{"memeqbody", "Go runtime: scheduler, memmove, maps, other"},
	{"indexbytebody", "Go runtime: scheduler, memmove, maps, other"},
	{"aeshashbody", "Go runtime: scheduler, memmove, maps, other"},
}

func areaOf(fn string) string {
	for _, r := range areaRules {
		if strings.HasPrefix(fn, r.prefix) {
			return r.area
		}
	}
	return "standard library, other"
}
