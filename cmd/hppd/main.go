// Command hppd is the daemon between a merchant's storefronts and Klarna, and
// its tools:
//
//	hppd serve      run the daemon (configured by HPPD_* environment variables)
//	hppd sim        run the Klarna simulator
//	hppd token      print a storefront JWT signed with HPPD_JWT_HS256_KEY
//	hppd version    print the version
//
// and the admin commands (sessions, charges, jobs, backup, check, config;
// admin.go) and compact (compact.go). The table of commands (commands) and
// the daemon's parts (newMain) are each declared once, here; no file of
// this command registers anything from an init function. main only parses
// the command line and wires; everything else lives in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hppd/hppd/events"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/gctune"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/metrics"
	"github.com/hppd/hppd/store/boltstore"
	"github.com/hppd/hppd/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "hppd:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: hppd <command> [flags]

commands:
  serve     run the daemon (configured by HPPD_* environment variables)
  sim       run the Klarna simulator
  token     print a storefront JWT signed with HPPD_JWT_HS256_KEY
  version   print the version
`

// command is a subcommand beyond serve, sim, token and version.
type command struct {
	usage string
	run   func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error
}

// commands are the admin and maintenance subcommands.
func commands() map[string]command {
	return map[string]command{
		"sessions": {usage: "list [--status S] [--storefront N] [--limit N] [--json] | show ID [--json]", run: sessionsCmd},
		"charges":  {usage: "list [--status S] [--storefront N] [--limit N] [--json] | show ID [--json]", run: chargesCmd},
		"jobs":     {usage: "list [--json] | retry ID|--all   (make jobs due now)", run: jobsCmd},
		"backup":   {usage: "FILE [--force]   write a consistent copy of the data file, also while hppd runs", run: backupCmd},
		"check":    {usage: "[--json]   check the configuration, the data file and the Klarna credentials", run: checkCmd},
		"migrate":  {usage: "   bring the PostgreSQL database at HPPD_DATABASE_URL to this binary's schema", run: migrateCmd},
		"config":   {usage: "[--json]   print the effective configuration, secrets <redacted>", run: configCmd},
		"compact":  {usage: "rewrite the data file without its free pages (hppd stopped)", run: compactCmd},
	}
}

func usageText() string {
	commands := commands()
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(usage)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-9s %s\n", n, commands[n].usage)
	}
	return b.String()
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText())
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		// serve takes no flags (its configuration is the environment), so
		// anything after it is a mistake, not something to ignore: a
		// "--help" must never start a daemon.
		if len(args) > 1 {
			if args[1] == "-h" || args[1] == "--help" || args[1] == "-help" {
				fmt.Fprint(stdout, serveUsage)
				return nil
			}
			fmt.Fprint(stderr, serveUsage)
			return fmt.Errorf("serve: unexpected argument %q (configuration comes from HPPD_* variables; see hppd config)", args[1])
		}
		return serve(ctx, getenv, stderr)
	case "sim":
		return sim(ctx, args[1:], stderr)
	case "token":
		return token(args[1:], getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "hppd", daemon.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText())
		return nil
	}
	if cmd, ok := commands()[args[0]]; ok {
		return cmd.run(ctx, args[1:], getenv, stdout, stderr)
	}
	fmt.Fprint(stderr, usageText())
	return fmt.Errorf("unknown command %q", args[0])
}

const serveUsage = `usage: hppd serve

Runs the daemon. It takes no flags: its configuration comes from the HPPD_*
environment variables (hppd config shows the effective values; the README's
configuration table lists them all). SIGTERM or SIGINT stops it gracefully.
`

// newLogger builds the one logger of the process. Attributes whose names say
// they hold a secret are redacted as a last line of defence.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		switch strings.ToLower(a.Key) {
		case "secret", "password", "authorization_token", "customer_token", "token", "authorization":
			return slog.String(a.Key, "<redacted>")
		}
		return a
	}}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func serve(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	applyMemoryLimit(getenv, ownCgroupMemoryMax(), log)
	gc := gctune.Start(getenv)
	defer gc.Stop()
	ec, err := eventsConfig(cfg, log)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	m := newMain(cfg, log, ec)
	if err := m.Run(ctx); err != nil {
		var le *boltstore.LockedError
		if errors.As(err, &le) {
			return err
		}
		return fmt.Errorf("start: %w", err)
	}
	// SIGHUP re-reads the JWT key files, global and per storefront (key
	// rotation); a file that does not read or parse keeps the keys in use.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			waiting = false
		case <-hup:
			if err := m.ReloadKeys(); err != nil {
				log.Error("SIGHUP: keys not reloaded; the old keys stay in use", "err", err)
			}
		}
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := m.Close(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// newMain is the daemon as hppd serve runs it: the flows, the storefront
// API and the poller (daemon.Main), with Prometheus metrics, the admin API on
// its socket, and storefront events when ec configures any.
func newMain(cfg *config.Config, log *slog.Logger, ec *events.Config) *daemon.Main {
	m := &daemon.Main{Config: cfg, Logger: log, Metrics: metrics.New(daemon.Version), Admin: true}
	if ec != nil {
		m.Emitter = events.New(ec, events.Options{Logger: log.With("component", "events")})
	}
	return m
}

func sim(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8081", "address to listen on")
	user := fs.String("username", "sim", "Basic auth username")
	pass := fs.String("password", "sim", "Basic auth password")
	passFile := fs.String("password-file", "", "read the Basic auth password from this file (keeps it out of ps)")
	seed := fs.Int64("seed", 0, "seed for ids and fault dice (0: random)")
	public := fs.String("public-url", "", "base URL shoppers reach the simulator at (default http://<listen>)")
	insecure := fs.Bool("allow-insecure-callbacks", false, "accept http:// status_update URLs on non-loopback hosts")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	env := fs.String("env", "production", "Klarna environment whose rate limits apply: production (40 creations/s, 200 other/s) or playground (5, 50)")
	replay := fs.String("replay", klarnasim.ReplayIdentical, "answer to a repeated place-order: identical (the original order), consumed (403 INVALID_OPERATION) or session_completed (404 SESSION_COMPLETED)")
	pmString := fs.Bool("payment-method-string", false, "answer authorized_payment_method as a bare string, as Klarna's guides show")
	hideOrderID := fs.Bool("hpp-order-id-hidden", false, "leave the order id of a KP order out of the HPP session read")
	var accounts simAccounts
	fs.Var(&accounts, "account", "simulate this Klarna account, as name:username:password-file (repeat for several; the credentials pick the account; replaces --username/--password)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *env != "production" && *env != "playground" {
		return fmt.Errorf("sim: --env %q: want production or playground", *env)
	}
	behaviour := klarnasim.Behaviour{Replay: *replay, PaymentMethodString: *pmString, HPPOrderIDHidden: *hideOrderID}
	if err := behaviour.Check(); err != nil {
		return fmt.Errorf("sim: -replay: %w", err)
	}
	if *passFile != "" {
		b, err := os.ReadFile(*passFile)
		if err != nil {
			return fmt.Errorf("sim: --password-file: %w", errors.Unwrap(err))
		}
		*pass = strings.TrimRight(string(b), "\r\n")
	}
	log := newLogger(stderr, *level, "text")
	if *public == "" {
		*public = "http://" + *listen
	}
	log.Info("klarna simulator listening", "addr", *listen, "public_url", *public, "seed", *seed, "env", *env, "replay", behaviour.Replay)
	opts := klarnasim.Options{
		Username: *user, Password: *pass, Seed: *seed, PublicURL: *public,
		AllowInsecureCallbacks: *insecure, Logger: log, Environment: *env, Behaviour: behaviour,
	}
	if len(accounts) > 0 {
		return klarnasim.ListenAndServeMulti(ctx, *listen, opts, accounts...)
	}
	return klarnasim.ListenAndServe(ctx, *listen, opts)
}

func token(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	issuer := fs.String("issuer", "", "storefront name (the iss claim)")
	ttl := fs.Duration("ttl", 10*time.Minute, "lifetime of the token (hppd refuses one longer than HPPD_JWT_MAX_LIFETIME, 24h by default)")
	aud := fs.String("audience", "", "aud claim (default HPPD_JWT_AUDIENCE or hppd)")
	keyFile := fs.String("key-file", "", "sign with the first key of this file (a storefront's jwt_hs256_key_file) instead of HPPD_JWT_HS256_KEY")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *issuer == "" {
		return errors.New("token: --issuer is required")
	}
	key := getenv("HPPD_JWT_HS256_KEY")
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("token: --key-file: %w", errors.Unwrap(err))
		}
		key, _, _ = strings.Cut(strings.ReplaceAll(string(b), "\r", ""), "\n")
	}
	if f := getenv("HPPD_JWT_HS256_KEY_FILE"); key == "" && *keyFile == "" && f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("HPPD_JWT_HS256_KEY_FILE: %w", errors.Unwrap(err))
		}
		key = strings.TrimRight(string(b), "\r\n")
	}
	if len(key) < 32 {
		return errors.New("HPPD_JWT_HS256_KEY (or _FILE) must hold a key of at least 32 bytes")
	}
	if *aud == "" {
		*aud = getenv("HPPD_JWT_AUDIENCE")
		if *aud == "" {
			*aud = "hppd"
		}
	}
	tok, err := webhook.IssueToken([]byte(key), *issuer, *aud, *ttl, time.Now())
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
