// Package daemon wires hppd together: the store, the Klarna client, the flows,
// the job runner, the poller and the HTTP server. Main.Run returns once hppd
// listens; Main.Close shuts down in reverse order: stop accepting and finish
// in-flight requests, stop the cron and wait for a running poll, stop the job
// runner and wait for running jobs, close the store.
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

	"github.com/gin-gonic/gin"
	"golang.org/x/net/netutil"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/poller"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
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
	// Extra registers more HTTP routes (metrics, OpenAPI, demo).
	Extra func(r *gin.Engine, m *Main)
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
	// Admin, when set, serves the admin API on a Unix socket next to the
	// data file (the admin CLI's way in while the daemon holds the file).
	Admin func(m *Main) http.Handler
	// Metrics, when set, is served on its own listener at
	// HPPD_METRICS_LISTEN (metrics.Install sets it), never on the public one.
	Metrics http.Handler

	DB      *boltstore.DB
	Klarna  *klarna.Client
	Service *hpp.Service
	Poller  *poller.Poller

	// Klarna above is the client of the default account: the HPPD_KLARNA_*
	// one, else the first of HPPD_CONFIG_FILE's klarna_accounts.
	// KlarnaAccounts are the clients of every account, in configuration
	// order (accounts.go).
	KlarnaAccounts []*KlarnaAccount

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
	cancel          context.CancelFunc
	wg              sync.WaitGroup
	closeErr        error
	once            sync.Once
}

// Hooks are optional observers, each called synchronously: keep them cheap.
type Hooks struct {
	Klarna func(op string, status int, d time.Duration, err error)
	HTTP   func(route string, status int, d time.Duration)
	Poll   func(r poller.Result)

	// KlarnaAccount is Klarna with the name of the account called.
	KlarnaAccount func(account, op string, status int, d time.Duration, err error)
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
	db, err := boltstore.Open(cfg.DB, boltstore.Options{})
	if err != nil {
		return err
	}
	m.DB = db
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
	pruner := db.NewPruner(store.PruneConfig{Retention: cfg.Retention, IdempotencyTTL: cfg.IdempotencyTTL})
	m.Poller, err = poller.New(m.Service, db, poller.Config{Schedule: cfg.PollSchedule, Now: m.Now, Logger: m.Logger, Observe: m.Hooks.Poll, Pruner: pruner})
	if err != nil {
		m.ln.Close()
		if m.metrLn != nil {
			m.metrLn.Close()
		}
		db.Close()
		return fmt.Errorf("HPPD_POLL_SCHEDULE: %w", err)
	}
	handler := webhook.New(webhook.Config{
		Service: m.Service, Auth: auth, Logger: m.Logger, Now: m.Now,
		Ready: m.ready, Observe: m.Hooks.HTTP, IdempotencyTTL: cfg.IdempotencyTTL,
		KlarnaStatus: m.KlarnaStatus,
		Extra: func(r *gin.Engine) {
			if m.Extra != nil {
				m.Extra(r, m)
			}
		},
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
	}
	// Past the cap, Accept waits: further connections queue in the
	// kernel's backlog and hold no goroutine or buffer of hppd's.
	serveLn := m.ln
	if cfg.MaxConnections > 0 {
		serveLn = netutil.LimitListener(m.ln, cfg.MaxConnections)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
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
	if m.Admin != nil && cfg.AdminSocket != "" {
		if err := m.serveAdmin(); err != nil {
			m.Logger.Error("admin socket not available", "path", cfg.AdminSocket, "err", err)
		}
	}
	m.Poller.Start()
	m.Service.Wake()
	m.Logger.Info("hppd listening", "addr", m.Addr(), "public_url", cfg.PublicURL, "db", cfg.DB, "version", Version)
	return nil
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
	m.adminSrv = &http.Server{Handler: m.Admin(m), ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return actx }}
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
	mux.Handle("GET /metrics", m.Metrics)
	m.metrSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn)}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.metrSrv.Serve(m.metrLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("metrics server", "err", err)
		}
	}()
}

// countConn keeps the open-connection count of the public listener.
func (m *Main) countConn(_ net.Conn, st http.ConnState) {
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
// there have been at once since Run.
func (m *Main) Connections() (open, peak int64) { return m.conns.Load(), m.connPeak.Load() }

// MaxHeaderBytes bounds a request's headers (net/http adds 4 KiB of slack).
const MaxHeaderBytes = 8 << 10

func (m *Main) ready() error {
	if err := m.DB.View(func(tx store.Tx) error { _, _, _, err := tx.Counts(); return err }); err != nil {
		return errors.New("store not readable")
	}
	if !m.Poller.Scheduled() {
		return errors.New("poller not scheduled")
	}
	return nil
}

// Close shuts hppd down in order; it is safe to call more than once.
func (m *Main) Close(ctx context.Context) error {
	m.once.Do(func() {
		var errs []error
		if m.srv != nil {
			if err := m.srv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			}
		}
		if m.metrSrv != nil {
			if err := m.metrSrv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("metrics shutdown: %w", err))
			}
		}
		if m.adminSrv != nil {
			if err := m.adminSrv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("admin shutdown: %w", err))
			}
			_ = os.Remove(m.Config.AdminSocket)
		}
		if m.Poller != nil {
			if err := m.Poller.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("poller stop: %w", err))
			}
		}
		if m.cancel != nil {
			m.cancel()
		}
		// Running jobs finish within the shutdown deadline; past it their
		// Klarna calls and deliveries are cancelled (each is a recorded,
		// retried attempt), so Close stays within HPPD_SHUTDOWN_TIMEOUT.
		waited := make(chan struct{})
		go func() { m.wg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
			if m.Service != nil {
				m.Service.AbortJobs()
			}
			<-waited
		}
		if m.DB != nil {
			if err := m.DB.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close store: %w", err))
			}
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}
