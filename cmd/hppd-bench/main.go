// Command hppd-bench runs hppd's performance benchmarks (package
// cmd/internal/bench) and writes BENCHMARKS.md:
//
//	hppd-bench -bin bin/hppd -out BENCHMARKS.md [-only 1,2,3,4,5,6,7] [-runs 3]
//
// -only runs some of them and then prints their figures without writing the
// report, e.g. `-only 6` for the outsiders alone, or `-only 7` for
// PostgreSQL alone, which also prints its section of the report (with
// `-only 1,7`, beside benchmark 1's bbolt figure).
//
// `make bench` runs it. Three subcommands are the helper processes of
// benchmark 1, started by hppd-bench itself:
//
//	hppd-bench ceiling -listen ADDR     the no-storage net/http JSON endpoint
//	hppd-bench durable -listen ADDR -db F  the minimal durable server on data file F
//	hppd-bench profiled-serve -cpu F …  hppd's daemon under the profiler
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hppd/hppd/cmd/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "hppd-bench:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "ceiling":
			return ceiling(ctx, args[1:], stderr)
		case "durable":
			return durable(ctx, args[1:], stderr)
		case "profiled-serve":
			return profiledServe(ctx, args[1:], stderr)
		}
	}
	fs := flag.NewFlagSet("hppd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bench.Options
	fs.StringVar(&o.Bin, "bin", "bin/hppd", "the hppd binary to measure (make build)")
	fs.StringVar(&o.Out, "out", "BENCHMARKS.md", "report to write")
	fs.StringVar(&o.Go, "go", "go", "go command, for `go tool pprof` and `go version`")
	fs.StringVar(&o.Dir, "dir", "", "work directory (default: a temporary one, removed at the end)")
	fs.StringVar(&o.Command, "command", "make bench", "the command to name in the report")
	fs.StringVar(&o.ProfileDir, "profile-dir", "bin/bench-profile", "where benchmark 1's CPU and allocation profiles are kept")
	only := fs.String("only", "1,2,3,4,5,6,7", "benchmarks to run (a report needs all seven)")
	fs.IntVar(&o.Runs, "runs", 3, "runs of each measurement")
	fs.DurationVar(&o.CallbackDuration, "duration", 8*time.Second, "measured window of each load of benchmarks 1 and 7")
	fs.IntVar(&o.PollSessions, "sessions", 1_000_000, "sessions in the file of benchmarks 2 and 4")
	fs.IntVar(&o.CallbackSessions, "callback-sessions", 200_000, "sessions in the file of benchmark 1 and the database of benchmark 7")
	fs.IntVar(&o.CallbackTargets, "callback-targets", 50_000, "pending sessions of benchmarks 1 and 7 that receive the callbacks")
	fs.IntVar(&o.PostgresSessions, "postgres-sessions", 0, "sessions in the database of benchmark 7 (0: as -callback-sessions); loading them through pgstore is most of its time")
	fs.IntVar(&o.MonthPerDay, "month-per-day", 20, "sampled sessions per simulated day of benchmark 5 (standing for 20,000)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(*only, ",") {
		switch strings.TrimSpace(s) {
		case "1":
			o.Callbacks = true
		case "2":
			o.Poller = true
		case "3":
			o.E2E = true
		case "4":
			o.Footprint = true
		case "5":
			o.Month = true
		case "6":
			o.Outsiders = true
		case "7":
			o.Postgres = true
		default:
			return fmt.Errorf("-only: %q is not a benchmark (1 to 7)", s)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	o.Self = self
	o.Log = stdout
	return bench.Run(ctx, o)
}

func ceiling(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ceiling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return bench.ServeCeiling(ctx, *listen, func(addr string) { fmt.Fprintln(stderr, "ceiling listening on", addr) })
}

func durable(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("durable", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	db := fs.String("db", "", "the data file (hppd's format) to write the callbacks to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *db == "" {
		return errors.New("durable: -db is required")
	}
	return bench.ServeDurable(ctx, *listen, *db, func(addr string) { fmt.Fprintln(stderr, "minimal durable server listening on", addr) })
}

func profiledServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("profiled-serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cpu := fs.String("cpu", "cpu.pprof", "CPU profile to write (between SIGUSR1 and SIGUSR2)")
	base := fs.String("allocs-base", "allocs-base.pprof", "allocation profile written at SIGUSR1")
	allocs := fs.String("allocs", "allocs.pprof", "allocation profile written at SIGUSR2")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The daemon's own signal handling: SIGTERM ends it (ServeProfiled
	// listens for it too); ctx here only carries SIGINT from the terminal.
	return bench.ServeProfiled(ctx, os.Getenv, *cpu, *base, *allocs, stderr)
}
