// Package testenv is the one test environment of hppd's daemon-level tests:
// the Klarna simulator (klarnasim) on a loopback port and hppd wired as
// daemon.Main wires it, on port 0, with a fresh data file, both on one clock
// the test moves. Every package whose tests start the daemon (internal/daemon,
// metrics, webhook, cmd/hppd, internal/demo) starts it here, so a change to
// how hppd is built or configured is made once.
//
// New starts both and stops them when the test ends. What a test varies
// (HPPD_* settings, the simulator's accounts and seed, the clock, the logger,
// metrics, the admin API, how hppd reaches Klarna) is an Option; what it
// sends and checks stays in its own package.
//
// The clock is the wall clock plus what the test adds (testutil.Clock), so
// hppd's backoffs also pass by themselves: a test waits for an outcome and
// does not count on a retry not having run yet. Everything an Env holds is
// its own (ports, data file, simulator, clock), so tests may run in
// parallel.
//
// The tests run the poller by hand: HPPD_POLL_SCHEDULE is @every 1h unless
// a test sets it. The data file and the admin socket live in a short
// temporary directory (a Unix socket's path must fit in 108 bytes).
package testenv

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/testutil"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/metrics"
	"github.com/hppd/hppd/webhook"
)

// Key is the storefronts' HS256 key (HPPD_JWT_HS256_KEY) unless a test sets
// its own.
const Key = "0123456789abcdef0123456789abcdef-test-key"

// Options vary the environment; the zero value is the common one.
type Options struct {
	// Vars override the HPPD_* settings ("" removes one).
	Vars map[string]string
	// Logger is hppd's (default: discard).
	Logger *slog.Logger
	// SimUser and SimPass are the Klarna credentials (default sim/sim).
	SimUser, SimPass string
	// Seed is the simulator's (default 7).
	Seed int64
	// Sim changes the simulator's options before it starts (callback
	// timing, behaviour).
	Sim func(*klarnasim.Options)
	// Accounts, when set, make the simulator serve these Klarna accounts
	// (klarnasim.NewMulti): Env.Multi is it, Env.Sim its first account.
	Accounts []klarnasim.Account
	// BeforeStart runs once the simulator listens and before hppd starts
	// (e.g. to write a configuration file naming Env.SimURL into Vars).
	BeforeStart func(e *Env)
	// Now is the clock of hppd and the simulator (default: Env.Clock).
	Now func() time.Time
	// Emitter sends storefront events (default: none).
	Emitter hpp.Emitter
	// KlarnaHTTP carries hppd's Klarna calls (default: the client's own).
	KlarnaHTTP *http.Client
	// Timeouts of hppd's HTTP server (default: the configuration's).
	Timeouts daemon.Timeouts
	// Metrics gives hppd its metrics, served on a port of their own
	// (Env.MetricsBase).
	Metrics bool
	// Admin serves the admin API on hppd's admin socket.
	Admin bool
	// Main builds the daemon from its configuration (default: a plain
	// daemon.Main); the options above are set on what it returns. cmd/hppd's
	// tests pass the command's own.
	Main func(cfg *config.Config) *daemon.Main
}

// Env is a running simulator and a running hppd.
type Env struct {
	T     testing.TB
	Clock *testutil.Clock
	Sim   *klarnasim.Sim
	// Multi is the simulator of Options.Accounts (nil without).
	Multi *klarnasim.Multi
	// SimURL is the simulator's base URL (HPPD_KLARNA_BASE_URL).
	SimURL string
	// Dir holds the data file (DBPath) and the admin socket.
	Dir, DBPath string
	// Vars are the HPPD_* settings Start loads; a test may change them
	// before Restart.
	Vars map[string]string
	// Main is the running hppd; Base its public URL, MetricsBase its
	// metrics listener's ("" without Options.Metrics).
	Main              *daemon.Main
	Base, MetricsBase string
	// Metrics are hppd's metrics (nil without Options.Metrics).
	Metrics *metrics.Metrics
	// Opts are the options; a test may change them before Restart.
	Opts Options
}

// New starts the simulator and hppd; both stop when the test ends.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	if o.SimUser == "" {
		o.SimUser, o.SimPass = "sim", "sim"
	}
	if o.Seed == 0 {
		o.Seed = 7
	}
	e := &Env{T: t, Clock: &testutil.Clock{}, Opts: o}
	if o.Now == nil {
		e.Opts.Now = e.Clock.Now
	}
	so := klarnasim.Options{
		Seed: o.Seed, Now: e.Opts.Now, Username: o.SimUser, Password: o.SimPass,
		CallbackTimeout: time.Second, CallbackRetryDelay: 50 * time.Millisecond,
	}
	if o.Sim != nil {
		o.Sim(&so)
	}
	var srv *httptest.Server
	if len(o.Accounts) > 0 {
		e.Multi = klarnasim.NewMulti(so, o.Accounts...)
		e.Sim = e.Multi.Account(o.Accounts[0].Name)
		srv = httptest.NewServer(e.Multi.Handler())
		e.Multi.SetPublicURL(srv.URL)
		t.Cleanup(func() { e.Multi.Close(); srv.Close() })
	} else {
		e.Sim = klarnasim.New(so)
		srv = httptest.NewServer(e.Sim.Handler())
		e.Sim.SetPublicURL(srv.URL)
		t.Cleanup(func() { e.Sim.Close(); srv.Close() })
	}
	e.SimURL = srv.URL

	dir, err := os.MkdirTemp("", "hppd-env-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.Dir, e.DBPath = dir, filepath.Join(dir, "hppd.db")
	e.Vars = map[string]string{
		"HPPD_LISTEN":          "127.0.0.1:0",
		"HPPD_METRICS_LISTEN":  "127.0.0.1:0",
		"HPPD_DB":              e.DBPath,
		"HPPD_KLARNA_BASE_URL": srv.URL,
		"HPPD_KLARNA_USERNAME": o.SimUser,
		"HPPD_KLARNA_PASSWORD": o.SimPass,
		"HPPD_JWT_HS256_KEY":   Key,
		"HPPD_POLL_SCHEDULE":   "@every 1h", // tests run the poller by hand
		"HPPD_STALE_AFTER":     "2m",
		"HPPD_KLARNA_TIMEOUT":  "5s",
		// Tests move the clock by minutes while a job runs; that is not a
		// process dying, so no lease may expire by it.
		"HPPD_LEASE_TTL": "87600h",
	}
	for k, v := range o.Vars {
		if v == "" {
			delete(e.Vars, k)
		} else {
			e.Vars[k] = v
		}
	}
	if o.BeforeStart != nil {
		o.BeforeStart(e)
	}
	e.Start()
	return e
}

// Config loads the configuration from Vars, failing the test on an error.
func (e *Env) Config() *config.Config {
	e.T.Helper()
	cfg, err := config.Load(func(k string) string { return e.Vars[k] })
	if err != nil {
		e.T.Fatal(err)
	}
	return cfg
}

// Start runs hppd on Vars; it stops when the test ends.
func (e *Env) Start() {
	e.T.Helper()
	cfg := e.Config()
	m := &daemon.Main{Config: cfg}
	if e.Opts.Main != nil {
		m = e.Opts.Main(cfg)
	}
	m.Now = e.Opts.Now
	if e.Opts.Logger != nil {
		m.Logger = e.Opts.Logger
	}
	if e.Opts.Emitter != nil {
		m.Emitter = e.Opts.Emitter
	}
	if e.Opts.KlarnaHTTP != nil {
		m.HTTPClient = e.Opts.KlarnaHTTP
	}
	if e.Opts.Timeouts != (daemon.Timeouts{}) {
		m.Timeouts = e.Opts.Timeouts
	}
	m.Admin = m.Admin || e.Opts.Admin
	if m.ReplicaHeartbeat == 0 {
		m.ReplicaHeartbeat = 50 * time.Millisecond // on PostgreSQL a replica joins in two beats
	}
	if e.Opts.Metrics && m.Metrics == nil {
		m.Metrics = metrics.New(daemon.Version)
	}
	if err := m.Run(context.Background()); err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { _ = m.Close(context.Background()) })
	if cfg.Database != "" && m.PG == nil {
		e.T.Fatal("HPPD_DATABASE_URL is set and hppd runs on no PostgreSQL store")
	}
	e.Main, e.Metrics = m, m.Metrics
	e.Base = "http://" + m.Addr()
	e.MetricsBase = ""
	if a := m.MetricsAddr(); a != "" {
		e.MetricsBase = "http://" + a
	}
}

// Restart stops hppd and starts it again on the same data file and
// address, so the URLs Klarna holds stay valid.
func (e *Env) Restart() {
	e.T.Helper()
	if err := e.Main.Close(context.Background()); err != nil {
		e.T.Fatal(err)
	}
	e.Vars["HPPD_LISTEN"] = e.Main.Addr()
	e.Start()
}

// Token is a storefront JWT signed with Key, fresh on the environment's
// clock (tests move it).
func (e *Env) Token(storefront string) string {
	e.T.Helper()
	tok, err := webhook.IssueToken([]byte(Key), storefront, "hppd", time.Hour, e.Opts.Now())
	if err != nil {
		e.T.Fatal(err)
	}
	return tok
}

// Eventually waits, bounded, for cond; it is a wait for something to
// happen, not an assertion of how fast it does.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
