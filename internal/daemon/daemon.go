// Package daemon is hppd's wiring: it builds the store, the Klarna clients,
// the flows, the job runner, the poller, the HTTP server and, when asked,
// the metrics and the admin API, and hands each package the small
// interfaces or values it needs. Main.Run returns once hppd listens;
// Main.Close shuts down in reverse order: stop accepting and finish in-flight
// requests, stop the cron and wait for a running poll, stop the job runner
// and wait for running jobs, close the store.
//
// The wiring points one way. It imports the adapters; no adapter imports it
// (metrics gets Observe calls and a metrics.State, admin a Local), and
// nothing registers itself from an init function. cmd/hppd decides which
// parts a daemon has (newMain) and is the only production code that builds a
// Main. Outside cmd/ (the binaries and the benchmarks, cmd/internal/bench),
// only the test environment (internal/testenv) imports it, and only tests
// import that: the daemon-level tests of several packages build the daemon
// exactly as hppd serve does. The package stays under internal/ rather than
// under cmd/ because Go's internal rule would hide it there from the tests of
// metrics and webhook. cmd/hppd's TestWiringPointsOneWay fails when any other
// package imports it, or when production code imports the test environment.
//
// Each listener's routes are declared in one place: the public listener's
// (HPPD_LISTEN: callbacks, shopper redirects, the storefront API, health and
// the OpenAPI document) in webhook.New, the metrics listener's (GET /metrics
// on HPPD_METRICS_LISTEN) in serveMetrics, the admin socket's in
// admin.NewHandler. Nothing adds routes from outside.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/metrics"
	"github.com/hppd/hppd/poller"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
	"github.com/hppd/hppd/store/pgstore"
	"github.com/hppd/hppd/webhook"
)

// Version is stamped at build time (-ldflags "-X github.com/hppd/hppd/internal/daemon.Version=…").
var Version = "dev"

// Main is a running hppd.
type Main struct {
	Config *config.Config
	Logger *slog.Logger
	// Now overrides the clock (tests).
	Now func() time.Time
	// HTTPClient for Klarna calls (tests); nil uses the client's default.
	HTTPClient *http.Client
	// Emitter for storefront events (nil: none).
	Emitter hpp.Emitter
	// Hooks observe Klarna calls, HTTP requests and poll runs (metrics).
	Hooks Hooks
	// Timeouts of the HTTP server; zero fields take the configuration's
	// (HPPD_READ_HEADER_TIMEOUT, HPPD_IDLE_TIMEOUT) or the defaults
	// (read header 5s, read 15s, write 60s, idle 30s).
	Timeouts Timeouts
	// Admin serves the admin API (package admin) on a Unix socket next to
	// the data file (the admin CLI's way in while the daemon holds the
	// file).
	Admin bool
	// Metrics, when set, is fed by the hooks and the running parts
	// (parts.go) and served on its own listener at HPPD_METRICS_LISTEN,
	// never on the public one.
	Metrics *metrics.Metrics
	// ReplicaHeartbeat is how often a replica on PostgreSQL heartbeats
	// (default DefaultReplicaHeartbeat; tests shorten it).
	ReplicaHeartbeat time.Duration

	// Store is what the flows use: DB, or PG when HPPD_DATABASE_URL is set
	// (the other one is nil).
	Store   store.Store
	DB      *boltstore.DB
	PG      *pgstore.DB
	Klarna  *klarna.Client
	Service *hpp.Service
	Poller  *poller.Poller

	// Klarna above is the client of the default account: the HPPD_KLARNA_*
	// one, else the first of HPPD_CONFIG_FILE's klarna_accounts.
	// KlarnaAccounts are the clients of every account, in configuration
	// order (accounts.go).
	KlarnaAccounts []*KlarnaAccount

	replicaID    string
	replicaStart time.Time
	replicas     atomic.Int64

	auth     *webhook.Authenticator
	ln       net.Listener
	srv      *http.Server
	adminLn  net.Listener
	adminSrv *http.Server
	metrLn   net.Listener
	metrSrv  *http.Server
	// conns counts the public listener's open connections; connPeak is
	// the most there have been at once.
	conns, connPeak atomic.Int64
	limiter         *connLimiter // HPPD_MAX_CONNECTIONS; nil without a cap
	// abortRequests cancels the contexts of the public listener's
	// requests (shutdown past its grace); unstarted holds the
	// connections of every listener that have not delivered a request
	// yet, closed then.
	abortRequests context.CancelFunc
	unstarted     unstartedConns
	cancel        context.CancelFunc
	wg            sync.WaitGroup
	closeErr      error
	once          sync.Once
}

// Hooks are optional observers, each called synchronously: keep them cheap.
type Hooks struct {
	Klarna func(op string, status int, d time.Duration, err error)
	HTTP   func(route string, status int, d time.Duration)
	Poll   func(r poller.Result)

	// KlarnaAccount is Klarna with the name of the account called.
	KlarnaAccount func(account, op string, status int, d time.Duration, err error)

	// Commit is each committed write transaction of the bbolt file, on
	// the store's writer goroutine (boltstore.Options.OnCommit).
	Commit func(boltstore.CommitInfo)
}

// Timeouts of the HTTP server.
type Timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Addr is the address hppd listens on (useful with port 0).
func (m *Main) Addr() string { return m.ln.Addr().String() }

// Run opens everything and starts serving; it returns once hppd listens.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.Config
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	if m.Now == nil {
		m.Now = time.Now
	}
	m.Hooks = m.hooks()
	db, pruner, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	accounts, err := m.klarnaClients()
	if err != nil {
		db.Close()
		return err
	}
	auth, err := newAuthenticator(cfg, m.Now)
	if err != nil {
		db.Close()
		return err
	}
	m.auth = auth
	// Listen before anything runs, so a taken port fails start-up cleanly.
	m.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		db.Close()
		return fmt.Errorf("HPPD_LISTEN: %w", err)
	}
	if m.Metrics != nil && cfg.MetricsListen != "" {
		if m.metrLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			m.ln.Close()
			db.Close()
			return fmt.Errorf("HPPD_METRICS_LISTEN: %w", err)
		}
	}
	if cfg.PublicURL == "http://"+cfg.Listen {
		cfg.PublicURL = "http://" + m.ln.Addr().String()
	}
	m.Service = hpp.New(db, m.Klarna, hpp.Config{
		PublicURL: cfg.PublicURL, DefaultMode: cfg.PlaceOrderMode,
		Policy:              core.Policy{StaleAfter: cfg.StaleAfter, Schedule: cfg.StaleSchedule, ExpiryMargin: cfg.ExpiryMargin},
		ChargeRetrySchedule: cfg.ChargeRetrySchedule,
		RereadRate:          rereadRate(cfg),
		Now:                 m.Now, Logger: m.Logger, Emitter: m.Emitter,
		Accounts: accounts, StorefrontAccounts: cfg.StorefrontAccounts(),
		TokenSharing: cfg.TokenSharing(), StorefrontShares: cfg.StorefrontShares(),
		LeaseTTL: cfg.LeaseTTL,
	})
	m.Poller, err = poller.New(m.Service, db, poller.Config{Schedule: cfg.PollSchedule, Now: m.Now, Logger: m.Logger, Observe: m.Hooks.Poll, Pruner: pruner})
	if err != nil {
		m.ln.Close()
		if m.metrLn != nil {
			m.metrLn.Close()
		}
		db.Close()
		return fmt.Errorf("HPPD_POLL_SCHEDULE: %w", err)
	}
	m.watch()
	handler := webhook.New(webhook.Config{
		Service: m.Service, Auth: auth, Logger: m.Logger, Now: m.Now,
		Ready: m.ready, Observe: m.Hooks.HTTP, IdempotencyTTL: cfg.IdempotencyTTL,
		KlarnaStatus: m.KlarnaStatus,
	})
	m.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: orDefault(m.Timeouts.ReadHeader, orDefault(cfg.ReadHeaderTimeout, 5*time.Second)),
		ReadTimeout:       orDefault(m.Timeouts.Read, 15*time.Second),
		WriteTimeout:      orDefault(m.Timeouts.Write, 60*time.Second),
		IdleTimeout:       orDefault(m.Timeouts.Idle, orDefault(cfg.IdleTimeout, 30*time.Second)),
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
		ConnState:         m.countConn,
		BaseContext:       m.requestContext(),
	}
	// At the cap, the connection that has waited longest for a request
	// makes room for a new one; only when every connection is in a request
	// do further ones queue in the kernel's backlog (connlimit.go).
	serveLn := m.ln
	if cfg.MaxConnections > 0 {
		m.limiter = newConnLimiter(m.ln, cfg.MaxConnections)
		serveLn = m.limiter
	}
	if m.PG != nil {
		if err := m.joinReplicas(ctx); err != nil {
			m.ln.Close()
			if m.metrLn != nil {
				m.metrLn.Close()
			}
			db.Close()
			return fmt.Errorf("HPPD_DATABASE_URL: joining the replicas: %w", err)
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	if m.PG != nil {
		m.runReplicas(runCtx)
	}
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		m.Service.Run(runCtx) // jobs left by an earlier run (or crash) run now
	}()
	go func() {
		defer m.wg.Done()
		if err := m.srv.Serve(serveLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("http server", "err", err)
		}
	}()
	if m.metrLn != nil {
		m.serveMetrics()
	}
	// On PostgreSQL the admin CLI connects to the database itself, and
	// replicas on one host would share the socket's default path.
	if m.Admin && cfg.AdminSocket != "" && m.PG == nil {
		if err := m.serveAdmin(); err != nil {
			m.Logger.Error("admin socket not available", "path", cfg.AdminSocket, "err", err)
		}
	}
	m.Poller.Start()
	m.Service.Wake()
	where := cfg.DB
	if m.PG != nil {
		where = m.PG.Name()
	}
	m.Logger.Info("hppd listening", "addr", m.Addr(), "public_url", cfg.PublicURL, "db", where, "version", Version)
	return nil
}

// openStore opens the store the configuration names: PostgreSQL at
// HPPD_DATABASE_URL (migrated first) when it is set, else the bbolt file
// HPPD_DB; and the pruner of its retention.
func (m *Main) openStore(ctx context.Context) (interface {
	store.Store
	Close() error
}, poller.Pruner, error) {
	cfg := m.Config
	prune := store.PruneConfig{Retention: cfg.Retention, IdempotencyTTL: cfg.IdempotencyTTL}
	if cfg.Database != "" {
		pg, err := pgstore.Open(ctx, cfg.Database, pgstore.Options{
			MaxConns:         int32(cfg.DatabaseMaxConns),
			ConnectTimeout:   cfg.DatabaseConnectTimeout,
			StatementTimeout: cfg.DatabaseStatementTimeout,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("HPPD_DATABASE_URL: %w", err)
		}
		m.PG, m.Store = pg, pg
		return pg, pg.NewPruner(prune), nil
	}
	db, err := boltstore.Open(cfg.DB, boltstore.Options{OnCommit: m.Hooks.Commit})
	if err != nil {
		return nil, nil, err
	}
	m.DB, m.Store = db, db
	return db, db.NewPruner(prune), nil
}

// rereadRate is the routine re-reads' share of Klarna's "other" rate in
// requests/s (HPPD_REREAD_SHARE of HPPD_KLARNA_OTHER_RATE); 0: no cap of its
// own (no share configured, as in tests that build a Config by hand).
func rereadRate(cfg *config.Config) float64 {
	if cfg.RereadShare <= 0 || cfg.KlarnaOtherRate <= 0 {
		return 0
	}
	return cfg.RereadShare * cfg.KlarnaOtherRate
}

// serveAdmin listens on the admin socket (listenAdmin: mode 0600 from the
// start, peers of another uid refused). A socket file left by a crashed run
// is removed: holding the data file's lock proves no other hppd uses it.
func (m *Main) serveAdmin() error {
	path := m.Config.AdminSocket
	if len(path) >= 108 { // sun_path
		return fmt.Errorf("socket path is %d bytes, longer than a Unix socket allows; set HPPD_ADMIN_SOCKET to a shorter path", len(path))
	}
	_ = os.Remove(path)
	ln, err := listenAdmin(path, m.Logger.With("component", "admin"))
	if err != nil {
		return err
	}
	m.adminLn = ln
	// Admin requests (a streaming backup) end when hppd shuts down, so they
	// cannot hold the data file open past Close.
	actx, cancel := context.WithCancel(context.Background())
	m.adminSrv = &http.Server{Handler: m.adminHandler(), ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return actx },
		ConnState:   m.unstarted.track}
	m.adminSrv.RegisterOnShutdown(cancel)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.adminSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("admin server", "err", err)
		}
	}()
	return nil
}

// MetricsAddr is the address of the /metrics listener ("" when there is
// none).
func (m *Main) MetricsAddr() string {
	if m.metrLn == nil {
		return ""
	}
	return m.metrLn.Addr().String()
}

// serveMetrics serves m.Metrics at GET /metrics on its own listener: a
// scrape never competes with the public listener's connection cap, and the
// public listener does not show it.
func (m *Main) serveMetrics() {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Metrics.Handler())
	m.metrSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn), ConnState: m.unstarted.track}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.metrSrv.Serve(m.metrLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("metrics server", "err", err)
		}
	}()
}

// countConn keeps the open-connection count of the public listener.
func (m *Main) countConn(c net.Conn, st http.ConnState) {
	if m.limiter != nil {
		m.limiter.track(c, st)
	}
	m.unstarted.track(c, st)
	switch st {
	case http.StateNew:
		n := m.conns.Add(1)
		for {
			p := m.connPeak.Load()
			if n <= p || m.connPeak.CompareAndSwap(p, n) {
				break
			}
		}
	case http.StateClosed, http.StateHijacked:
		m.conns.Add(-1)
	}
}

// Connections reports the public listener's open connections and the most
// there have been at once since Run (under HPPD_MAX_CONNECTIONS, as the cap
// counts them: a connection closed to make room is gone before the new one
// counts).
func (m *Main) Connections() (open, peak int64) {
	if m.limiter != nil {
		open, peak, _ = m.limiter.Connections()
		return open, peak
	}
	return m.conns.Load(), m.connPeak.Load()
}

// ConnectionsShed is how many connections waiting for a request were closed
// to make room under HPPD_MAX_CONNECTIONS since Run.
func (m *Main) ConnectionsShed() int64 {
	if m.limiter == nil {
		return 0
	}
	_, _, shed := m.limiter.Connections()
	return shed
}

// MaxHeaderBytes bounds a request's headers (net/http adds 4 KiB of slack).
const MaxHeaderBytes = 8 << 10

func (m *Main) ready() error {
	if m.PG != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := m.PG.Ping(ctx); err != nil {
			return errors.New("database unreachable")
		}
	} else if err := m.DB.View(func(tx store.Tx) error { _, _, _, err := tx.Counts(); return err }); err != nil {
		return errors.New("store not readable")
	}
	if !m.Poller.Scheduled() {
		return errors.New("poller not scheduled")
	}
	return nil
}

// Close shuts hppd down in order (shutdown.go), within ctx's deadline; it is
// safe to call more than once.
func (m *Main) Close(ctx context.Context) error {
	m.once.Do(func() { m.closeErr = m.shutdown(ctx) })
	return m.closeErr
}
