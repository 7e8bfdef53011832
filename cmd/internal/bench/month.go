package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/webhook"
)

// MonthConfig configures benchmark 5: Klarna's budget and the data file over
// an abandoned session's life and over a simulated month.
type MonthConfig struct {
	Dir string
	// PerDay is the sampled sessions per simulated day (default 20); FullPerDay
	// the volume they stand for (default 20,000). Rates are scaled up by
	// FullPerDay/PerDay.
	PerDay, FullPerDay int
	// Days simulated (default 30).
	Days int
	// Retention is HPPD_RETENTION for the month (default 7d, so that
	// deletion starts inside the month).
	Retention string
	// LifeSessions abandoned sessions are followed over their life
	// (default 5).
	LifeSessions int
	Log          io.Writer
}

// MonthResult is benchmark 5's outcome.
type MonthResult struct {
	// StaleAfter is the daemon's default HPPD_STALE_AFTER, as `hppd config`
	// shows it; PollSchedule its default HPPD_POLL_SCHEDULE.
	StaleAfter, PollSchedule string

	// One abandoned session's life.
	LifeSessions int
	LifeOps      map[string]float64 // Klarna requests per session, by operation
	LifeTotal    float64
	LifeReads    float64
	LifeWall     time.Duration

	// The month.
	PerDay, FullPerDay, Days   int
	Abandoned, Paid, Cancelled int
	Retention, IdempotencyTTL  string
	Requests, Refused          int
	Ops                        map[string]int
	MeanPerSec, PeakHourPerSec float64 // scaled to FullPerDay, per simulated second
	// PeakCreatePerSec is the busiest simulated hour of session creations
	// (KP or HPP, the busier), scaled like PeakHourPerSec.
	PeakCreatePerSec                float64
	PeakSecond                      int // busiest calendar second at the simulator as run
	Limits                          klarnasim.RateLimits
	Placement                       []time.Duration // payment completed → order placed
	PlacedP50, PlacedP99, PlacedMax float64         // ms
	Weeks                           []MonthWeek
	Wall                            time.Duration
}

// MonthWeek is the data file at the end of a simulated week (or of the
// month).
type MonthWeek struct {
	Day         int
	FileBytes   int64
	Sessions    int // sessions on file
	Idempotency int // Idempotency-Key records on file, of those the run sent
	Pending     int
}

// simClock is the simulated time: it is set forward by the benchmark and
// runs with the wall clock in between, so timeouts and job backoffs inside
// one step behave as they do in hppd.
type simClock struct {
	mu     sync.Mutex
	t      time.Time
	wallAt time.Time
}

func newSimClock(t time.Time) *simClock { return &simClock{t: t, wallAt: time.Now()} }

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t.Add(time.Since(c.wallAt))
}

// Set moves the clock to t, unless it is already past it.
func (c *simClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.t.Add(time.Since(c.wallAt)); t.After(now) {
		c.t, c.wallAt = t, time.Now()
	}
}

// world is the simulator and the daemon, as daemon.Main wires it with its
// defaults, on one simulated clock.
type world struct {
	clock  *simClock
	sim    *klarnasim.Sim
	srv    *httptest.Server
	m      *daemon.Main
	cfg    *config.Config
	base   string
	client *http.Client
	dbPath string
}

const monthStorefront = "shop-month"

func newWorld(ctx context.Context, dir string, start time.Time, over map[string]string) (*world, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	w := &world{clock: newSimClock(start), dbPath: filepath.Join(dir, "hppd.db")}
	w.sim = klarnasim.New(klarnasim.Options{
		Seed: 55, Now: w.clock.Now, Username: "sim", Password: "sim",
		CallbackTimeout: 2 * time.Second, CallbackRetryDelay: 100 * time.Millisecond,
		Unlimited: true, // the sample is a fraction of the volume: its own rate says nothing about Klarna's limits
	})
	w.srv = httptest.NewServer(w.sim.Handler())
	w.sim.SetPublicURL(w.srv.URL)
	// Only what a test rig must set, and the client's rate limits lifted
	// (they would pace the compressed clock's requests in wall time; the
	// figures scale the sample's count to the full volume instead): every
	// other setting (HPPD_STALE_AFTER, HPPD_IDEMPOTENCY_TTL, ...) is the
	// daemon's default.
	vars := map[string]string{
		"HPPD_KLARNA_CREATE_RATE":      "1000000",
		"HPPD_KLARNA_OTHER_RATE":       "1000000",
		"HPPD_KLARNA_TOKEN_ORDER_RATE": "1000000",
		"HPPD_LISTEN":                  "127.0.0.1:0",
		"HPPD_DB":                      w.dbPath,
		"HPPD_KLARNA_BASE_URL":         w.srv.URL,
		"HPPD_KLARNA_USERNAME":         "sim",
		"HPPD_KLARNA_PASSWORD":         "sim",
		"HPPD_JWT_HS256_KEY":           benchJWTKey,
		"HPPD_POLL_SCHEDULE":           "@every 1000h", // the benchmark runs the poller at each simulated tick
		// Simulated time jumps while jobs run; that is not a process
		// dying, so no lease may expire by it.
		"HPPD_LEASE_TTL": "87600h",
	}
	for k, v := range over {
		vars[k] = v
	}
	var err error
	if w.cfg, err = config.Load(func(k string) string { return vars[k] }); err != nil {
		w.close()
		return nil, err
	}
	w.m = &daemon.Main{Config: w.cfg, Now: w.clock.Now, Logger: slog.New(slog.DiscardHandler)}
	if err := w.m.Run(ctx); err != nil {
		w.m = nil
		w.close()
		return nil, err
	}
	w.base = "http://" + w.m.Addr()
	w.client = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return w, nil
}

func (w *world) close() {
	if w.m != nil {
		_ = w.m.Close(context.Background())
	}
	w.sim.Close()
	w.srv.Close()
}

// createSession is a storefront's POST /v1/sessions with an Idempotency-Key;
// it returns hppd's session id and the HPP session id.
func (w *world) createSession(ctx context.Context, key string) (id, hppID string, err error) {
	body, _ := json.Marshal(map[string]any{
		"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
		"order_amount": 10000, "order_tax_amount": 2000,
		"order_lines": []any{map[string]any{
			"type": "physical", "name": "Espresso cups", "quantity": 2, "unit_price": 5000,
			"tax_rate": 2500, "total_amount": 10000, "total_tax_amount": 2000,
		}},
		"return_urls": map[string]any{
			"success": "https://shop.example/ok", "failure": "https://shop.example/fail",
			"back": "https://shop.example/back", "cancel": "https://shop.example/cancel",
		},
	})
	tok, err := webhook.IssueToken([]byte(benchJWTKey), monthStorefront, "hppd", time.Hour, w.clock.Now())
	if err != nil {
		return "", "", err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", w.base+"/v1/sessions", bytes.NewReader(body))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Idempotency-Key", key)
	resp, err := w.client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		ID     string `json:"id"`
		Klarna struct {
			HPPSessionID string `json:"hpp_session_id"`
		} `json:"klarna"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(raw, &out) != nil || out.Klarna.HPPSessionID == "" {
		return "", "", fmt.Errorf("create session: HTTP %d %.300s", resp.StatusCode, raw)
	}
	return out.ID, out.Klarna.HPPSessionID, nil
}

// shopper presses a button on the payment page and follows the redirect
// back to hppd.
func (w *world) shopper(ctx context.Context, hppID, action string) error {
	_, to, err := w.sim.Act(hppID, action)
	if err != nil {
		return fmt.Errorf("shopper %s: %w", action, err)
	}
	if to == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, "GET", to, nil)
	if err != nil {
		return err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("shopper redirect after %s: HTTP %d", action, resp.StatusCode)
	}
	return nil
}

// tick runs the poller once at the clock's time and then every job that is
// due, as the daemon's poller and job runner do between two ticks.
func (w *world) tick(ctx context.Context) {
	w.m.Poller.RunOnce(ctx)
	for w.m.Service.RunDue(ctx) > 0 && ctx.Err() == nil {
	}
}

// idle reports whether nothing is due at the clock's time: no session to
// re-read or expire and no job.
func (w *world) idle() bool {
	now := w.clock.Now()
	idle := true
	_ = w.m.DB.View(func(tx store.Tx) error {
		if t, ok := tx.NextJobDue(); ok && !t.After(now) {
			idle = false
			return nil
		}
		ids, err := tx.SessionsDue(now, 1)
		idle = err == nil && len(ids) == 0
		if !idle || err != nil {
			return err
		}
		// A running job is leased, not due: it is work in progress too.
		return tx.AllJobs(func(j *core.Job) error {
			if j.Lease.Owner != "" {
				idle = false
			}
			return nil
		})
	})
	return idle
}

func (w *world) status(id string) (core.SessionStatus, error) {
	var st core.SessionStatus
	err := w.m.DB.View(func(tx store.Tx) error {
		s, err := tx.Session(id)
		if err == nil {
			st = s.Status
		}
		return err
	})
	return st, err
}

// RunMonth runs benchmark 5: first LifeSessions abandoned sessions followed
// over their whole life, then the month.
func RunMonth(ctx context.Context, cfg MonthConfig) (*MonthResult, error) {
	if cfg.PerDay <= 0 {
		cfg.PerDay = 20
	}
	if cfg.FullPerDay <= 0 {
		cfg.FullPerDay = 20_000
	}
	if cfg.Days <= 0 {
		cfg.Days = 30
	}
	if cfg.Retention == "" {
		cfg.Retention = "7d"
	}
	if cfg.LifeSessions <= 0 {
		cfg.LifeSessions = 5
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	res := &MonthResult{LifeSessions: cfg.LifeSessions, PerDay: cfg.PerDay, FullPerDay: cfg.FullPerDay, Days: cfg.Days, Retention: cfg.Retention}
	if err := lifetime(ctx, cfg, res); err != nil {
		return nil, fmt.Errorf("abandoned session's life: %w", err)
	}
	fmt.Fprintf(cfg.Log, "bench 5 life: %.1f Klarna requests per abandoned session (%.1f reads) with HPPD_STALE_AFTER=%s, in %v\n",
		res.LifeTotal, res.LifeReads, res.StaleAfter, res.LifeWall.Round(time.Millisecond))
	if err := month(ctx, cfg, res); err != nil {
		return nil, fmt.Errorf("month: %w", err)
	}
	return res, nil
}

// monthTick is the simulated step: the default poll schedule's period.
const monthTick = 30 * time.Second

// monthStart is the simulated first day (any date: nothing depends on it).
var monthStart = time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC)

func lifetime(ctx context.Context, cfg MonthConfig, res *MonthResult) error {
	start := time.Now()
	w, err := newWorld(ctx, filepath.Join(cfg.Dir, "life"), monthStart, nil)
	if err != nil {
		return err
	}
	defer w.close()
	red := w.cfg.Redacted()
	res.StaleAfter = red["HPPD_STALE_AFTER"]
	res.PollSchedule = defaultPollSchedule(w)
	ids := make([]string, cfg.LifeSessions)
	for i := range ids {
		if ids[i], _, err = w.createSession(ctx, "life-"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	// Step the clock a poll period at a time until every session is over
	// (hppd disables it before Klarna's 48 h expiry).
	end := monthStart.Add(49 * time.Hour)
	for t := monthStart; t.Before(end) && ctx.Err() == nil; t = t.Add(monthTick) {
		w.clock.Set(t)
		if !w.idle() {
			w.tick(ctx)
		}
	}
	for _, id := range ids {
		st, err := w.status(id)
		if err != nil {
			return err
		}
		if !st.Final() {
			return fmt.Errorf("session %s still %s after 49 h", id, st)
		}
	}
	res.LifeOps = map[string]float64{}
	for _, r := range w.sim.Requests() {
		res.LifeOps[r.Operation] += 1 / float64(cfg.LifeSessions)
		res.LifeTotal += 1 / float64(cfg.LifeSessions)
	}
	res.LifeReads = res.LifeOps[klarnasim.OpReadHPPSession]
	res.LifeWall = time.Since(start)
	return ctx.Err()
}

// defaultPollSchedule is HPPD_POLL_SCHEDULE's default (the benchmark sets
// its own to step the poller by hand).
func defaultPollSchedule(w *world) string {
	c, err := config.Load(func(k string) string {
		return map[string]string{"HPPD_DB": w.dbPath, "HPPD_KLARNA_BASE_URL": w.srv.URL, "HPPD_KLARNA_USERNAME": "sim", "HPPD_KLARNA_PASSWORD": "sim", "HPPD_JWT_HS256_KEY": benchJWTKey}[k]
	})
	if err != nil {
		return "?"
	}
	return c.PollSchedule
}

// Session kinds of the month, in a repeating cycle of 20: 14 abandoned, 5
// paid, 1 cancelled (70%, 25%, 5%), interleaved.
const (
	kindAbandoned = iota
	kindPaid
	kindCancelled
)

var monthCycle = [20]int{0, 1, 0, 0, 1, 0, 0, 2, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0}

// The shopper's delays after the session is created.
const (
	payAfter    = 4 * time.Minute
	cancelAfter = 2 * time.Minute
)

type monthAction struct {
	at    time.Time
	kind  int
	id    string
	hppID string
}

func month(ctx context.Context, cfg MonthConfig, res *MonthResult) error {
	start := time.Now()
	w, err := newWorld(ctx, filepath.Join(cfg.Dir, "month"), monthStart, map[string]string{"HPPD_RETENTION": cfg.Retention})
	if err != nil {
		return err
	}
	defer w.close()
	res.IdempotencyTTL = w.cfg.Redacted()["HPPD_IDEMPOTENCY_TTL"]
	res.Limits = klarnasim.LimitsFor("production") // a large merchant's
	every := 24 * time.Hour / time.Duration(cfg.PerDay)
	total := cfg.PerDay * cfg.Days
	end := monthStart.Add(time.Duration(cfg.Days) * 24 * time.Hour)
	var keys []string
	var actions []monthAction
	next := 0 // next session to create
	lastTick := time.Time{}
	for t := monthStart; !t.After(end) && ctx.Err() == nil; t = t.Add(monthTick) {
		w.clock.Set(t)
		busy := false
		for next < total && !monthStart.Add(time.Duration(next)*every).After(t) {
			key := "month-" + strconv.Itoa(next)
			id, hppID, err := w.createSession(ctx, key)
			if err != nil {
				return err
			}
			keys = append(keys, key)
			switch k := monthCycle[next%len(monthCycle)]; k {
			case kindPaid:
				res.Paid++
				actions = append(actions, monthAction{at: t.Add(payAfter), kind: k, id: id, hppID: hppID})
			case kindCancelled:
				res.Cancelled++
				actions = append(actions, monthAction{at: t.Add(cancelAfter), kind: k, id: id, hppID: hppID})
			default:
				res.Abandoned++
			}
			next++
			busy = true
		}
		for len(actions) > 0 && !actions[0].at.After(t) {
			a := actions[0]
			actions = actions[1:]
			busy = true
			if err := w.act(ctx, a, res); err != nil {
				return err
			}
		}
		// The poller runs every tick in hppd; a tick with nothing due does
		// nothing but prune, which one run an hour here covers.
		if busy || !w.idle() || t.Sub(lastTick) >= time.Hour {
			w.tick(ctx)
			lastTick = t
		}
		if day := int(t.Sub(monthStart) / (24 * time.Hour)); t.Sub(monthStart)%(24*time.Hour) == 0 && day > 0 && (day%7 == 0 || day == cfg.Days) {
			wk, err := w.week(day, keys)
			if err != nil {
				return err
			}
			res.Weeks = append(res.Weeks, wk)
			fmt.Fprintf(cfg.Log, "bench 5 month: day %d, file %.1f MiB, %d sessions (%d pending), %d idempotency records, %v so far\n",
				day, mib(wk.FileBytes), wk.Sessions, wk.Pending, wk.Idempotency, time.Since(start).Round(time.Second))
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	reqs := w.sim.Requests()
	res.Requests = len(reqs)
	res.Ops = map[string]int{}
	perHour := map[int64]int{}
	creates := map[string]map[int64]int{klarnasim.OpCreateKPSession: {}, klarnasim.OpCreateHPPSession: {}}
	for _, r := range reqs {
		res.Ops[r.Operation]++
		if r.Status/100 != 2 && r.Status != 0 {
			res.Refused++
		}
		if c, ok := creates[r.Operation]; ok {
			c[r.Time.Unix()/3600]++
		} else {
			perHour[r.Time.Unix()/3600]++
		}
	}
	scale := float64(cfg.FullPerDay) / float64(cfg.PerDay)
	peak := 0
	for _, n := range perHour {
		peak = max(peak, n)
	}
	res.PeakHourPerSec = float64(peak) * scale / 3600
	for _, c := range creates {
		for _, n := range c {
			res.PeakCreatePerSec = max(res.PeakCreatePerSec, float64(n)*scale/3600)
		}
	}
	res.MeanPerSec = float64(len(reqs)) * scale / end.Sub(monthStart).Seconds()
	res.PeakSecond = maxPerSecond(reqs)
	if len(res.Placement) > 0 {
		l := NewLatencies(res.Placement)
		res.PlacedP50, res.PlacedP99, res.PlacedMax = ms(l.Quantile(0.5)), ms(l.Quantile(0.99)), ms(l.Max())
	}
	res.Wall = time.Since(start)
	return nil
}

// act is the shopper of a paid or cancelled session. For a payment it
// measures the time from the shopper's payment to the order being placed
// in hppd (the clock is not stepped meanwhile, so simulated and wall time
// are the same here), while the poller's routine work of the tick runs
// beside it.
func (w *world) act(ctx context.Context, a monthAction, res *MonthResult) error {
	if a.kind == kindCancelled {
		return w.shopper(ctx, a.hppID, klarnasim.ActionCancel)
	}
	paid := w.clock.Now()
	done := make(chan struct{})
	go func() { defer close(done); w.tick(ctx) }()
	// The shopper's redirect back runs beside the wait: hppd may hold it
	// (a read of the session just before), and the order does not wait
	// for it.
	back := make(chan error, 1)
	go func() { back <- w.shopper(ctx, a.hppID, klarnasim.ActionPay) }()
	err := w.waitPlaced(ctx, a.id, paid, res)
	if berr := <-back; err == nil {
		err = berr
	}
	<-done
	return err
}

func (w *world) waitPlaced(ctx context.Context, id string, paid time.Time, res *MonthResult) error {
	deadline := time.Now().Add(time.Minute)
	for ctx.Err() == nil {
		st, err := w.status(id)
		if err != nil {
			return err
		}
		if st == core.SessionOrderPlaced {
			res.Placement = append(res.Placement, w.clock.Now().Sub(paid))
			return nil
		}
		if st.Final() {
			return fmt.Errorf("paid session %s ended %s", id, st)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("paid session %s: no order a minute after the payment (%s)", id, st)
		}
		time.Sleep(time.Millisecond)
	}
	return ctx.Err()
}

// week measures the data file and what is on file.
func (w *world) week(day int, keys []string) (MonthWeek, error) {
	wk := MonthWeek{Day: day}
	err := w.m.DB.View(func(tx store.Tx) error {
		sessions, _, _, err := tx.Counts()
		if err != nil {
			return err
		}
		for st, n := range sessions {
			wk.Sessions += n
			if st == core.SessionPending {
				wk.Pending += n
			}
		}
		for _, k := range keys {
			_, err := tx.Idempotency(monthStorefront, k)
			switch {
			case err == nil:
				wk.Idempotency++
			case !core.IsNotFound(err):
				return err
			}
		}
		return nil
	})
	if err != nil {
		return wk, err
	}
	fi, err := os.Stat(w.dbPath)
	if err != nil {
		return wk, err
	}
	wk.FileBytes = fi.Size()
	return wk, nil
}

// sortedOps lists operations by count, largest first.
func sortedOps[V int | float64](m map[string]V) []string {
	ops := make([]string, 0, len(m))
	for op := range m {
		ops = append(ops, op)
	}
	slices.SortFunc(ops, func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		if a < b {
			return -1
		}
		return 1
	})
	return ops
}
