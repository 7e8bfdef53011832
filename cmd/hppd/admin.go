// The admin CLI: sessions, charges, jobs, backup, check, config and migrate. Each
// command parses its flags and runs one code path over an admin.Backend: the
// running daemon's admin socket when one answers, else the data file itself;
// with HPPD_DATABASE_URL set, the PostgreSQL database (any number of processes
// may use it at once). Where the store is comes from the same loading as
// hppd serve's (config.LoadStore): the environment, the _FILE variants and
// HPPD_CONFIG_FILE's env section.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/hppd/hppd/admin"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/store/pgstore"
)

// parseArgs parses flags wherever they stand among the positional arguments
// ("sessions show ID --json" as well as "sessions show --json ID").
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil // everything after "--" is positional
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// storeConfig is where the store is, read as hppd serve reads it
// (config.LoadStore): HPPD_DB and HPPD_ADMIN_SOCKET, or HPPD_DATABASE_URL
// (or HPPD_DATABASE_URL_FILE), from the environment or HPPD_CONFIG_FILE's
// env section. The rest of the configuration is not needed, nor checked:
// listing sessions needs no Klarna credentials.
func storeConfig(getenv func(string) string) (*config.Config, error) {
	cfg, err := config.LoadStore(getenv)
	if err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

// pgOptions are the CLI's connection settings: the configured timeouts, and
// the admin package's small pool.
func pgOptions(cfg *config.Config) pgstore.Options {
	return pgstore.Options{ConnectTimeout: cfg.DatabaseConnectTimeout, StatementTimeout: cfg.DatabaseStatementTimeout}
}

// openBackend opens the configured store for the CLI: the PostgreSQL
// database when HPPD_DATABASE_URL is set, else the running daemon's admin
// socket or the data file.
func openBackend(ctx context.Context, cfg *config.Config) (admin.Backend, error) {
	if cfg.Database != "" {
		return admin.OpenLocalPG(ctx, cfg.Database, pgOptions(cfg))
	}
	return admin.Open(ctx, cfg.AdminSocket, cfg.DB)
}

// withBackend runs fn on the backend for the configured store.
func withBackend(ctx context.Context, getenv func(string) string, fn func(admin.Backend) error) error {
	cfg, err := storeConfig(getenv)
	if err != nil {
		return err
	}
	b, err := openBackend(ctx, cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	return fn(b)
}

// listFlags are the flags of "sessions list" and "charges list".
type listFlags struct {
	q      admin.Query
	asJSON bool
}

func (l *listFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.q.Status, "status", "", "only this status")
	fs.StringVar(&l.q.Storefront, "storefront", "", "only this storefront (default: all)")
	fs.IntVar(&l.q.Limit, "limit", admin.DefaultLimit, fmt.Sprintf("at most this many, newest first (1..%d)", admin.MaxLimit))
	fs.BoolVar(&l.asJSON, "json", false, "print JSON")
}

// listShow runs "<what> list" and "<what> show ID".
func listShow(ctx context.Context, what string, args []string, getenv func(string) string, stdout, stderr io.Writer,
	list func(admin.Backend, admin.Query, bool) error, show func(admin.Backend, string, bool) error) error {
	if len(args) == 0 {
		return fmt.Errorf("%s: want list or show", what)
	}
	switch args[0] {
	case "list":
		fs := newFlags(what+" list", stderr)
		var lf listFlags
		lf.register(fs)
		pos, err := parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return fmt.Errorf("%s list: unexpected argument %q", what, pos[0])
		}
		return withBackend(ctx, getenv, func(b admin.Backend) error { return list(b, lf.q, lf.asJSON) })
	case "show":
		fs := newFlags(what+" show", stderr)
		asJSON := fs.Bool("json", false, "print JSON")
		pos, err := parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("%s show: want one id", what)
		}
		return withBackend(ctx, getenv, func(b admin.Backend) error { return show(b, pos[0], *asJSON) })
	}
	return fmt.Errorf("%s: unknown subcommand %q (want list or show)", what, args[0])
}

func sessionsCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return listShow(ctx, "sessions", args, getenv, stdout, stderr,
		func(b admin.Backend, q admin.Query, asJSON bool) error {
			list, err := b.Sessions(ctx, q)
			if err != nil {
				return err
			}
			if asJSON {
				return admin.WriteJSON(stdout, list)
			}
			return admin.WriteSessions(stdout, list)
		},
		func(b admin.Backend, id string, asJSON bool) error {
			s, err := b.Session(ctx, id)
			if err != nil {
				return err
			}
			if asJSON {
				return admin.WriteJSON(stdout, s)
			}
			return admin.WriteSession(stdout, s)
		})
}

func chargesCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return listShow(ctx, "charges", args, getenv, stdout, stderr,
		func(b admin.Backend, q admin.Query, asJSON bool) error {
			list, err := b.Charges(ctx, q)
			if err != nil {
				return err
			}
			if asJSON {
				return admin.WriteJSON(stdout, list)
			}
			return admin.WriteCharges(stdout, list)
		},
		func(b admin.Backend, id string, asJSON bool) error {
			c, err := b.Charge(ctx, id)
			if err != nil {
				return err
			}
			if asJSON {
				return admin.WriteJSON(stdout, c)
			}
			return admin.WriteCharge(stdout, c)
		})
}

func jobsCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("jobs: want list or retry")
	}
	switch args[0] {
	case "list":
		fs := newFlags("jobs list", stderr)
		asJSON := fs.Bool("json", false, "print JSON")
		pos, err := parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return fmt.Errorf("jobs list: unexpected argument %q", pos[0])
		}
		return withBackend(ctx, getenv, func(b admin.Backend) error {
			list, err := b.Jobs(ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return admin.WriteJSON(stdout, list)
			}
			return admin.WriteJobs(stdout, list)
		})
	case "retry":
		fs := newFlags("jobs retry", stderr)
		all := fs.Bool("all", false, "every failing job (its last attempt failed)")
		asJSON := fs.Bool("json", false, "print the jobs as JSON")
		pos, err := parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if *all == (len(pos) == 1) || len(pos) > 1 {
			return errors.New("jobs retry: want one job id or --all")
		}
		return withBackend(ctx, getenv, func(b admin.Backend) error {
			var list []admin.Job
			if *all {
				if list, err = b.RetryFailingJobs(ctx); err != nil {
					return err
				}
			} else {
				j, err := b.RetryJob(ctx, pos[0])
				if err != nil {
					return err
				}
				list = []admin.Job{*j}
			}
			if *asJSON {
				return admin.WriteJSON(stdout, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(stdout, "no failing jobs")
				return nil
			}
			fmt.Fprintf(stdout, "made due now (%d):\n", len(list))
			if err := admin.WriteJobs(stdout, list); err != nil {
				return err
			}
			if !b.Live() {
				fmt.Fprintln(stdout, "hppd is not running: these jobs run when it starts")
			}
			return nil
		})
	}
	return fmt.Errorf("jobs: unknown subcommand %q (want list or retry)", args[0])
}

func backupCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("backup", stderr)
	force := fs.Bool("force", false, "replace FILE if it exists")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("backup: want one FILE")
	}
	cfg, err := storeConfig(getenv)
	if err != nil {
		return err
	}
	if cfg.Database != "" {
		return fmt.Errorf("backup: %w", admin.ErrBackupPG)
	}
	return withBackend(ctx, getenv, func(b admin.Backend) error {
		n, err := admin.BackupFile(ctx, b, pos[0], cfg.DB, *force)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "backup: wrote %s (%d bytes) from the %s\n", pos[0], n, b.Source())
		return nil
	})
}

func checkCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("check: unexpected argument %q", pos[0])
	}
	cfg, cerr := config.Load(getenv)
	checks := []admin.Check{admin.CheckConfig(cerr)}
	if scfg, err := storeConfig(getenv); err != nil {
		checks = append(checks, admin.Check{Name: "data file", Result: admin.Fail, Detail: err.Error()})
	} else if b, err := openBackend(ctx, scfg); err != nil {
		checks = append(checks, admin.Check{Name: "data file", Result: admin.Fail, Detail: err.Error()})
	} else {
		checks = append(checks, admin.CheckData(ctx, b))
		b.Close()
	}
	if cfg != nil {
		checks = append(checks, admin.CheckKlarnaAccounts(ctx, cfg, daemon.Version, nil)...)
	} else {
		checks = append(checks, admin.Check{Name: "klarna credentials", Result: admin.Skip, Detail: "the configuration is invalid"})
	}
	if *asJSON {
		err = admin.WriteJSON(stdout, checks)
	} else {
		err = admin.WriteChecks(stdout, checks)
	}
	if err != nil {
		return err
	}
	if admin.Failed(checks) {
		return errors.New("check failed")
	}
	return nil
}

func configCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("config", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("config: unexpected argument %q", pos[0])
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	c := admin.ConfigOf(cfg, getenv)
	if *asJSON {
		return admin.WriteJSON(stdout, c)
	}
	return admin.WriteConfiguration(stdout, c)
}

func migrateCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", stderr)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("migrate: unexpected argument %q", pos[0])
	}
	cfg, err := storeConfig(getenv)
	if err != nil {
		return err
	}
	if cfg.Database == "" {
		return errors.New("migrate: HPPD_DATABASE_URL is not set, in the environment or HPPD_CONFIG_FILE (hppd serve migrates a bbolt file when it opens it)")
	}
	opts := pgOptions(cfg)
	opts.MaxConns, opts.NoMigrate, opts.AllowOld = 2, true, true
	db, err := pgstore.Open(ctx, cfg.Database, opts)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer db.Close()
	applied, err := pgstore.Migrate(ctx, db.Pool())
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "migrate: %s is at schema %d already\n", db.Name(), pgstore.SchemaVersion())
		return nil
	}
	for _, name := range applied {
		fmt.Fprintf(stdout, "migrate: applied %s\n", name)
	}
	fmt.Fprintf(stdout, "migrate: %s is at schema %d\n", db.Name(), pgstore.SchemaVersion())
	return nil
}
