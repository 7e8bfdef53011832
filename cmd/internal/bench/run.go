package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Options configures a `make bench` run.
type Options struct {
	// Bin is the hppd binary (make build); Self the hppd-bench binary.
	Bin, Self string
	// Out is the report to (re)write.
	Out string
	// Go is the go command (pprof summaries, version).
	Go string
	// Dir is the work directory; empty means a temporary one, removed at
	// the end.
	Dir string
	// Command is what the report names as the command that made it.
	Command string
	// ProfileDir keeps benchmark 1's CPU and allocation profiles (default:
	// in the work directory, removed with it).
	ProfileDir string
	// Which benchmarks run; a report is written only when all seven do.
	Callbacks, Poller, E2E, Footprint bool
	Month, Outsiders, Postgres        bool
	// MonthPerDay is benchmark 5's sampled sessions per simulated day (0:
	// the default of MonthConfig).
	MonthPerDay int
	// Runs of each measurement (at least 3 for the report).
	Runs int
	// CallbackDuration is the measured window of each load of benchmark 1.
	CallbackDuration time.Duration
	// CallbackSessions and CallbackTargets size benchmark 1's file (0:
	// the defaults of CallbackConfig).
	CallbackSessions, CallbackTargets int
	// PostgresSessions sizes benchmark 7's database (0: CallbackSessions,
	// so that both backends hold the same sessions).
	PostgresSessions int
	// PollSessions is the size of the big file (benchmarks 2 and 4).
	PollSessions int
	Log          io.Writer
}

// Results are everything a run measured.
type Results struct {
	Machine   Machine
	Started   time.Time
	Elapsed   time.Duration
	Callbacks *CallbackResult
	Poller    *PollerResult
	E2E       *E2EResult
	Footprint *FootprintResult
	Month     *MonthResult
	Outsiders *OutsiderResult
	Postgres  *PostgresResult
	// LoadAfter is the 1-minute load average at the end.
	LoadAfter string
}

// Run runs the selected benchmarks and, when all seven ran, writes the
// report.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Runs < 1 {
		o.Runs = 3
	}
	if _, err := os.Stat(o.Bin); err != nil {
		return fmt.Errorf("hppd binary: %w (run make build)", err)
	}
	bin, err := filepath.Abs(o.Bin)
	if err != nil {
		return err
	}
	o.Bin = bin
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "hppd-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Measure a private copy: bin/hppd may be rebuilt by anyone meanwhile.
	binCopy := filepath.Join(dir, "hppd")
	if err := copyFile(o.Bin, binCopy); err != nil {
		return fmt.Errorf("copy %s: %w", o.Bin, err)
	}
	if err := os.Chmod(binCopy, 0o700); err != nil {
		return err
	}
	binSize := int64(0)
	if fi, err := os.Stat(o.Bin); err == nil {
		binSize = fi.Size()
	}
	o.Bin = binCopy
	res := &Results{Started: time.Now()}
	res.Machine = ReadMachine(ctx, o.Go, o.Bin, o.Command)
	fmt.Fprintf(o.Log, "hppd-bench: %s, %d cores, load average %s; work dir %s\n", res.Machine.CPU, res.Machine.Cores, res.Machine.LoadBefore, dir)

	var big *BigFile
	if o.Poller || o.Footprint {
		if big, err = BuildBigFile(ctx, filepath.Join(dir, "big"), o.PollSessions, o.Log); err != nil {
			return fmt.Errorf("benchmark 2/4 data file: %w", err)
		}
		defer big.Close()
	}
	if o.Footprint {
		// Before benchmark 2, which writes into the big file.
		if res.Footprint, err = RunFootprint(ctx, FootprintConfig{Bin: o.Bin, Dir: filepath.Join(dir, "footprint"), Big: big, Runs: max(o.Runs, 5), Log: o.Log}); err != nil {
			return fmt.Errorf("benchmark 4: %w", err)
		}
		res.Footprint.BinarySize = binSize
	}
	if o.Callbacks {
		if res.Callbacks, err = RunCallbacks(ctx, CallbackConfig{
			Bin: o.Bin, Self: o.Self, Dir: filepath.Join(dir, "callbacks"), Runs: o.Runs,
			Sessions: o.CallbackSessions, Targets: o.CallbackTargets,
			Duration: o.CallbackDuration, Profile: true, Go: o.Go, Log: o.Log, ProfileDir: o.ProfileDir, MemDir: MemoryDir(),
		}); err != nil {
			return fmt.Errorf("benchmark 1: %w", err)
		}
		if res.Footprint != nil {
			res.Footprint.addLoadRSS(res.Callbacks)
		}
	}
	if o.Poller {
		if res.Poller, err = RunPoller(ctx, PollerConfig{Big: big, Runs: o.Runs, Log: o.Log}); err != nil {
			return fmt.Errorf("benchmark 2: %w", err)
		}
	}
	if o.E2E {
		if res.E2E, err = RunE2E(ctx, E2EConfig{Dir: filepath.Join(dir, "e2e"), MemDir: MemoryDir(), Runs: o.Runs, Log: o.Log}); err != nil {
			return fmt.Errorf("benchmark 3: %w", err)
		}
	}
	if o.Month {
		if res.Month, err = RunMonth(ctx, MonthConfig{Dir: filepath.Join(dir, "month"), PerDay: o.MonthPerDay, Log: o.Log}); err != nil {
			return fmt.Errorf("benchmark 5: %w", err)
		}
	}
	if o.Outsiders {
		if res.Outsiders, err = RunOutsiders(ctx, OutsiderConfig{Bin: o.Bin, Dir: filepath.Join(dir, "outsiders"), Runs: o.Runs, Log: o.Log}); err != nil {
			return fmt.Errorf("benchmark 6: %w", err)
		}
	}
	if o.Postgres {
		if res.Postgres, err = RunPostgres(ctx, PostgresConfig{
			Bin: o.Bin, Dir: filepath.Join(dir, "postgres"), Runs: o.Runs,
			Sessions: cmp.Or(o.PostgresSessions, o.CallbackSessions), Targets: o.CallbackTargets, Duration: o.CallbackDuration, Log: o.Log,
		}); err != nil {
			return fmt.Errorf("benchmark 7: %w", err)
		}
	}
	res.Elapsed = time.Since(res.Started)
	res.LoadAfter = loadAverage()
	if !(o.Callbacks && o.Poller && o.E2E && o.Footprint && o.Month && o.Outsiders && o.Postgres) {
		fmt.Fprintln(o.Log, "hppd-bench: not every benchmark ran; the report is not rewritten")
		if res.Postgres != nil {
			// Its section as the report would have it (tables and the
			// CPU split), which the per-run lines above do not give.
			var b bytes.Buffer
			writePostgres(&b, res.Postgres, res.Callbacks)
			fmt.Fprintf(o.Log, "\n%s", b.String())
		}
		return nil
	}
	if o.Out == "" {
		return errors.New("no report path")
	}
	if err := WriteReport(o.Out, res); err != nil {
		return err
	}
	fmt.Fprintf(o.Log, "hppd-bench: wrote %s in %v\n", o.Out, res.Elapsed.Round(time.Second))
	return nil
}
