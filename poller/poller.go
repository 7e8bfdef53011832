// Package poller runs hppd's periodic reconciliation on a cron schedule
// (robfig/cron/v3, with panic recovery and skip-if-still-running). Callbacks
// can be lost, so every run:
//
//  1. finds the non-final sessions whose next check has come (through the
//     store's time index, not a scan) and schedules a routine re-read of each,
//     the next one a step further along the re-read schedule
//     (HPPD_STALE_AFTER), or, for a session still pending near its expiry,
//     disables it at Klarna;
//  2. hands every due job to the job runner (hpp.Service.Run), whose lanes
//     keep order placement, charges and confirming re-reads ahead of routine
//     re-reads and event deliveries; without a running job runner it runs
//     them itself, order placement first; failed jobs come due again on their
//     backoff;
//  3. prunes callback de-duplication entries older than three days and, with
//     a Pruner, applies retention (the store's pruner): final sessions and charges
//     past HPPD_RETENTION, idempotency records past HPPD_IDEMPOTENCY_TTL. The
//     Pruner does a bounded amount per run in small transactions, so a large
//     backlog is worked off over several runs and callbacks never wait long.
//     A run cancelled before this step (a shutdown) leaves pruning to the
//     next run, so that the stop does not wait for it.
//
// Stop ends a run in progress the way hppd's shutdown ends a job: it gets
// the grace, is then cancelled, and a run that ends when cancelled has
// stopped cleanly; only one still running at the deadline is an error.
//
// Klarna's rate limits are kept by the Klarna client's token buckets, so a
// large backlog is worked off at the configured pace, never above it; routine
// re-reads take at most HPPD_REREAD_SHARE of the "other" budget.
package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/hppd/hppd/store"
)

// Service is what the poller needs of the flows (*hpp.Service).
type Service interface {
	ScheduleDue(limit int) (synced, expiring int, err error)
	RunDue(ctx context.Context) int
}

// Config configures the poller.
type Config struct {
	// Schedule is a cron spec (5 fields, or descriptors such as "@every 30s").
	Schedule string
	// Batch bounds the sessions scheduled in one run (default 10000).
	Batch int
	// EventRetention: callback de-duplication entries older than this are pruned (default 72h).
	EventRetention time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
	// Observe is called after every run (metrics).
	Observe func(r Result)
	// Pruner, when set, prunes on every run (callback marks included, by
	// its own Events setting) instead of the EventRetention pruning.
	Pruner Pruner
}

// Pruner applies retention in bounded steps (the store's pruner has it).
type Pruner interface {
	Run(now time.Time) (store.PruneResult, error)
}

// Result is what one run did.
type Result struct {
	Started  time.Time
	Duration time.Duration
	// Lag is how late the run started against its schedule.
	Lag      time.Duration
	Synced   int
	Expiring int
	Jobs     int
	Pruned   int
	// Retention is what the Pruner deleted (Pruned counts its Events too).
	Retention store.PruneResult
	Err       error
}

// Poller owns the cron scheduler.
type Poller struct {
	svc   Service
	db    store.Store
	cfg   Config
	log   *slog.Logger
	cron  *cron.Cron
	sched cron.Schedule

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	// started: the schedule runs; run: closed when the scheduled run in
	// progress returns, nil while none is in progress. A run begins only
	// while started, both under mu, so Stop knows exactly which run it
	// waits for.
	started bool
	run     chan struct{}
	last    atomic.Pointer[Result]
	next    atomic.Int64 // unix nanos of the next planned run
}

// ParseSchedule checks a cron spec the way the poller reads it.
func ParseSchedule(spec string) (cron.Schedule, error) {
	return cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor).Parse(spec)
}

// New returns a poller; the schedule is checked here.
func New(svc Service, db store.Store, cfg Config) (*Poller, error) {
	if cfg.Schedule == "" {
		cfg.Schedule = "@every 30s"
	}
	sched, err := ParseSchedule(cfg.Schedule)
	if err != nil {
		return nil, fmt.Errorf("poll schedule %q: %w", cfg.Schedule, err)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 10000
	}
	if cfg.EventRetention <= 0 {
		cfg.EventRetention = 72 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Poller{svc: svc, db: db, cfg: cfg, log: cfg.Logger.With("component", "poller"), sched: sched}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	logger := cronLogger{p.log}
	p.cron = cron.New(
		cron.WithParser(cron.NewParser(cron.Minute|cron.Hour|cron.Dom|cron.Month|cron.Dow|cron.Descriptor)),
		cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(logger)),
		cron.WithLogger(logger),
	)
	if _, err := p.cron.AddFunc(cfg.Schedule, p.scheduled); err != nil {
		return nil, fmt.Errorf("poll schedule %q: %w", cfg.Schedule, err)
	}
	return p, nil
}

// Start starts the schedule; the first run comes at the first tick.
func (p *Poller) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return
	}
	p.started = true
	p.next.Store(p.sched.Next(p.cfg.Now()).UnixNano())
	p.cron.Start()
}

// ErrRunOutlived is Stop's error when the scheduled run in progress was still
// running when Stop's ctx ended, after its context had been cancelled. The
// run goes on alone.
var ErrRunOutlived = errors.New("a poll run was still running at the deadline")

// Stop stops the schedule and ends the scheduled run in progress, if any:
//
//   - the run has until grace ends to finish on its own;
//   - then its context is cancelled, which ends what the run waits for that
//     honours it (Service.RunDue stops handing out jobs and waiting for a
//     worker), and Stop waits for the run to return. A run that returns
//     after the cancellation has stopped cleanly, as a job whose Klarna call
//     a shutdown cancels has: Stop returns nil. That holds also when grace
//     had ended before Stop was called (the caller spent it on other
//     parts): the run had that time too, it ran all along;
//   - a run still running when ctx ends is reported (ErrRunOutlived) and
//     goes on alone.
//
// With no run in progress Stop returns nil at once, whatever the contexts.
// No run starts after Stop. A RunOnce called directly is its caller's to
// end.
func (p *Poller) Stop(grace, ctx context.Context) error {
	p.mu.Lock()
	started, run := p.started, p.run
	p.started = false
	p.mu.Unlock()
	if started {
		p.cron.Stop()
	}
	defer p.cancel()
	if run == nil {
		return nil
	}
	select {
	case <-run:
		return nil
	case <-grace.Done():
	}
	p.cancel()
	select {
	case <-run:
		return nil
	case <-ctx.Done():
		select {
		case <-run: // it ended as ctx did: it ended
			return nil
		default:
			return fmt.Errorf("%w: %w", ErrRunOutlived, ctx.Err())
		}
	}
}

// scheduled is the cron's job: one run, known to Stop, unless the schedule
// was stopped since the tick fired.
func (p *Poller) scheduled() {
	p.mu.Lock()
	if !p.started {
		p.mu.Unlock()
		return
	}
	done := make(chan struct{})
	p.run = done
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.run = nil
		p.mu.Unlock()
		close(done)
	}()
	p.RunOnce(p.ctx)
}

// Scheduled reports whether the schedule is running (readiness).
func (p *Poller) Scheduled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// Last returns the last run's result, if any.
func (p *Poller) Last() (Result, bool) {
	r := p.last.Load()
	if r == nil {
		return Result{}, false
	}
	return *r, true
}

// RunOnce does one reconciliation run now.
func (p *Poller) RunOnce(ctx context.Context) Result {
	start := p.cfg.Now()
	r := Result{Started: start}
	if planned := p.next.Load(); planned != 0 {
		if lag := start.Sub(time.Unix(0, planned)); lag > 0 {
			r.Lag = lag
		}
	}
	p.next.Store(p.sched.Next(start).UnixNano())
	r.Synced, r.Expiring, r.Err = p.svc.ScheduleDue(p.cfg.Batch)
	if r.Err != nil {
		p.log.Error("schedule due sessions", "err", r.Err)
	}
	r.Jobs = p.svc.RunDue(ctx)
	switch {
	case ctx.Err() != nil:
		p.log.Debug("poll run cancelled; pruning is left to the next run")
	case p.cfg.Pruner != nil:
		res, err := p.cfg.Pruner.Run(start)
		r.Retention, r.Pruned = res, res.Events
		if err != nil {
			p.log.Error("prune", "err", err)
		}
		if res.Total() > 0 {
			p.log.Info("pruned", "sessions", res.Sessions, "charges", res.Charges, "tokens", res.Tokens,
				"idempotency_keys", res.Idempotency, "callback_events", res.Events, "transactions", res.Txs)
		}
	case p.db != nil:
		err := p.db.Update(func(tx store.Tx) error {
			n, err := tx.PruneEvents(start.Add(-p.cfg.EventRetention), 10000)
			r.Pruned = n
			return err
		})
		if err != nil {
			p.log.Error("prune callback events", "err", err)
		}
	}
	r.Duration = p.cfg.Now().Sub(start)
	p.last.Store(&r)
	if p.cfg.Observe != nil {
		p.cfg.Observe(r)
	}
	p.log.Debug("poll run", "synced", r.Synced, "expiring", r.Expiring, "jobs", r.Jobs, "pruned", r.Pruned, "duration_ms", r.Duration.Milliseconds())
	return r
}

// cronLogger adapts slog to cron's logger.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(kv, "err", err)...)
}
