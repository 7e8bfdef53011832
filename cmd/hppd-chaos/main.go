// Command hppd-chaos runs hppd's chaos test (package internal/chaos) against
// a built hppd binary: the simulator and `hppd serve` as separate
// processes, faults on every Klarna operation, SIGKILLs of hppd, and a
// table of checks at the end. It exits 1 when a check fails.
//
//	hppd-chaos -bin bin/hppd -sessions 2000 -charges 1000 -kills 20 [-seed N] [-replicas 3]
//
// The seed is printed first; -seed N replays a run's workload. -replicas N
// (N > 1) runs N replicas on PostgreSQL behind a balancer instead of one
// process on a bbolt file.

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

	"github.com/hppd/hppd/internal/chaos"
	"github.com/hppd/hppd/klarna/klarnasim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "hppd-chaos:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hppd-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o chaos.Options
	fs.StringVar(&o.Bin, "bin", "bin/hppd", "the hppd binary to test")
	fs.IntVar(&o.Sessions, "sessions", 2000, "purchases to make")
	fs.IntVar(&o.Charges, "charges", 1000, "token charges to make")
	fs.IntVar(&o.Kills, "kills", 20, "SIGKILLs of hppd (at least)")
	fs.Int64Var(&o.Seed, "seed", 0, "seed of the run (0: from the clock); printed first, replays a run")
	fs.IntVar(&o.Workers, "workers", 16, "purchases and charges at once")
	fs.StringVar(&o.WorkDir, "dir", "", "work directory for the data file and logs (default: a temporary one, kept when a check fails)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary work directory after a passing run")
	fs.IntVar(&o.Replicas, "replicas", 1, "hppd processes at once; more than 1 runs replicas on PostgreSQL (HPPD_TEST_DATABASE_URL's server, or a throwaway cluster) behind a balancer")
	fs.DurationVar(&o.Settle, "settle", 0, fmt.Sprintf("how long hppd may take to settle once the faults are off (default %s, the poller's bound; %s with replicas)", chaos.Bound(), chaos.ReplicaBound()))
	fs.StringVar(&o.Replay, "replay", klarnasim.ReplayIdentical, "the simulator's answer to a repeated place-order: identical (the original order), consumed (403 INVALID_OPERATION) or session_completed (404 SESSION_COMPLETED)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.Out = stdout
	start := time.Now()
	rep, err := chaos.Run(ctx, o)
	if err != nil {
		return err
	}
	if !rep.OK() {
		h, s := rep.Logs()
		return fmt.Errorf("checks failed after %s (logs: %s, %s)", time.Since(start).Round(time.Second), strings.Join(h, ", "), s)
	}
	return nil
}
