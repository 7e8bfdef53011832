package chaos

import (
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/pgtest"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
	"github.com/hppd/hppd/store/pgstore"
)

// Options configures a run.
type Options struct {
	// Bin is a built hppd binary (serve, sim and token are used).
	Bin string
	// Sessions and Charges are how many purchases and token charges the
	// storefront makes; Kills how many times hppd is SIGKILLed (at least).
	Sessions, Charges, Kills int
	// Seed fixes the run's choices and the simulator's dice (0: from the
	// clock). It is printed first, so a failing run can be replayed.
	Seed int64
	// Workers is how many purchases and charges run at once (default 16).
	Workers int
	// Out receives progress lines and the report table (default discard).
	Out io.Writer
	// WorkDir holds hppd's data file and the logs of both processes. Empty:
	// a new temporary directory, removed after a passing run unless Keep.
	WorkDir string
	Keep    bool
	// Settle bounds the wait for hppd to settle after the faults are
	// cleared (default: the poller's bound, see Bound).
	Settle time.Duration
	// Replicas is how many `hppd serve` processes run at once. 0 or 1: one
	// process on a bbolt file; more: replicas on one PostgreSQL database
	// (HPPD_TEST_DATABASE_URL's server, or a throwaway cluster) behind the
	// driver's balancer.
	Replicas int
	// Replay is the simulator's answer to a repeated place-order
	// (klarnasim.ReplayIdentical, the default, or ReplayConsumed or
	// ReplaySessionCompleted, FACTS 8.2). In the harsher modes the
	// simulator also answers authorized_payment_method as a string (FACTS
	// 8.1).
	Replay string
}

// hppd's settings for the run.
const (
	pollEvery     = time.Second
	staleAfter    = 2 * time.Second
	klarnaTimeout = 2 * time.Second
	storefront    = "chaos"
	simUser       = "sim"
	simPass       = "sim"
)

// rates are the Klarna rates hppd is configured with (requests/s of the
// account, for all replicas together).
type rates struct{ create, other, tokenOrder int }

// singleRates are one process's: Klarna's production limits, which the
// simulator enforces too. replicaRates are the replicas': low enough that
// the work presses on them, so the shared budget (each replica sends at 1/N
// of them) is what keeps Klarna's seconds under them, and the rate check
// can fail; the simulator's own production limits stay above them.
var (
	singleRates  = rates{create: 40, other: 200, tokenOrder: 40}
	replicaRates = rates{create: 20, other: 60, tokenOrder: 10}
)

// limits are the rate check's categories with hppd's configured limits.
func (rt rates) limits() []rateLimit {
	return []rateLimit{
		{rateCreateKP, rt.create}, {rateCreateHPP, rt.create},
		{rateTokenOrder, rt.tokenOrder}, {rateOther, rt.other},
	}
}

// replicaLeaseTTL is HPPD_LEASE_TTL of the replicas (its lower bound): work
// leased by a killed replica is taken over after it.
const replicaLeaseTTL = time.Minute

// chargeRetrySchedule is HPPD_CHARGE_RETRY_SCHEDULE for the run.
var chargeRetrySchedule = []time.Duration{time.Second, 2 * time.Second}

// chargeSafetyDelay is hpp's safety delay: a charge whose request died
// before its outcome was recorded is resent this long after it started.
const chargeSafetyDelay = time.Minute

// jobSlack covers job backoff and the client's resends after the faults
// are cleared (a job that failed a few times waits some seconds).
const jobSlack = 20 * time.Second

// settleQuiet: the settle wait also ends once every violation left is in a
// state no timer of hppd can move (see movable) and nothing changed for
// this long; waiting longer could not change the verdict.
const settleQuiet = 10 * time.Second

// Bound is the poller's bound for the run's settings: how long after the
// last storefront request every session and charge must be settled.
func Bound() time.Duration {
	return chargeSafetyDelay + staleAfter + pollEvery + chargeRetrySchedule[len(chargeRetrySchedule)-1] + jobSlack
}

// ReplicaBound is Bound with replicas: work leased by a replica that was
// killed waits out its lease (HPPD_LEASE_TTL), and a job that found the
// lease held retries with a backoff doubling from a second, so its attempt
// after the lease can come up to another lease's length later.
func ReplicaBound() time.Duration { return Bound() + 2*replicaLeaseTTL }

// Report is the outcome of a run.
type Report struct {
	Seed                     int64
	Replay                   string
	Replicas                 int
	Sessions, Charges, Kills int // asked for
	SessionsCreated          int
	CreationsFailed          int // purchases answered failed at creation and started again
	ChargesCreated           int
	FallbackSessions         int
	ShopperPayments          int // pay actions Klarna answered COMPLETED
	KillsDone                int
	KillsDuringPlaceOrder    int
	KillsDuringTokenOrder    int
	DoubleKills              int // kills that took down two replicas at once
	HPPDStarts               int
	Balanced                 string         // where the balancer sent requests (replicas only)
	ServedByReplica          []int64        // requests each replica answered through the balancer
	CallbacksBalanced        int64          // Klarna's callbacks that came through the balancer
	ShopperBalanced          int64          // shoppers' redirects that came through the balancer
	Database                 string         // PostgreSQL database (replicas only)
	BusiestSeconds           string         // per rate category: busiest calendar second / limit (busiest sliding second)
	Requests                 int            // Klarna calls the simulator received
	RequestsByOp             map[string]int // by operation
	Orders                   int
	OrdersBySource           map[string]int
	Callbacks                int // delivery attempts
	CallbacksDropped         int
	CallbacksAnswered2xx     int
	APIRequests, APIAttempts int64
	Statuses                 map[string]int // final hppd statuses, "session/x" and "charge/y"
	JobsLeft                 map[string]int
	Settled                  bool
	SettleStuck              int // violations left that no timer can move, when the wait ended on them
	SettleBudget, SettleTime time.Duration
	Duration                 time.Duration
	CleanShutdown            bool
	RaceBuilt                bool
	WorkDir                  string
	Checks                   []Check
	hppdLogs                 []string
	simLog, raceGlob         string
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	for i := range r.Checks {
		if !r.Checks[i].OK() {
			return false
		}
	}
	return len(r.Checks) > 0
}

// Logs returns the paths of hppd's logs (one per replica) and the
// simulator's log.
func (r *Report) Logs() (hppd []string, sim string) { return r.hppdLogs, r.simLog }

// Print writes the report: the figures of the run, then one row per check,
// then the first violations of each failing check.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nchaos run, seed %d (replay: -seed %d), place-order replays answered %s\n", r.Seed, r.Seed, r.Replay)
	if r.Replicas > 1 {
		fmt.Fprintf(w, "  replicas      %d on PostgreSQL (%s) behind the balancer: %s\n", r.Replicas, r.Database, r.Balanced)
	}
	fmt.Fprintf(w, "  work          %d sessions asked, %d created (+%d fallback; %d creations answered failed, started again); %d charges asked, %d created; %d payments completed at Klarna\n",
		r.Sessions, r.SessionsCreated, r.FallbackSessions, r.CreationsFailed, r.Charges, r.ChargesCreated, r.ShopperPayments)
	fmt.Fprintf(w, "  kills         %d SIGKILLs (%d asked), %d during place_order, %d during a token order; hppd started %d times\n",
		r.KillsDone, r.Kills, r.KillsDuringPlaceOrder, r.KillsDuringTokenOrder, r.HPPDStarts)
	if r.Replicas > 1 {
		fmt.Fprintf(w, "                %d kills took down two replicas at once\n", r.DoubleKills)
	}
	fmt.Fprintf(w, "  klarna rates  busiest second / limit: %s\n", r.BusiestSeconds)
	fmt.Fprintf(w, "  klarna        %d requests (%s)\n", r.Requests, counts(r.RequestsByOp))
	fmt.Fprintf(w, "  orders        %d (%s)\n", r.Orders, counts(r.OrdersBySource))
	fmt.Fprintf(w, "  callbacks     %d attempts, %d dropped by faults, %d answered 2xx\n", r.Callbacks, r.CallbacksDropped, r.CallbacksAnswered2xx)
	fmt.Fprintf(w, "  storefront    %d requests, %d attempts\n", r.APIRequests, r.APIAttempts)
	fmt.Fprintf(w, "  final states  %s\n", counts(r.Statuses))
	settled := "settled"
	switch {
	case r.Settled:
	case r.SettleStuck > 0:
		settled = fmt.Sprintf("NOT settled: %d left in states no timer moves, nothing changed for %s; ended", r.SettleStuck, settleQuiet)
	default:
		settled = "NOT settled within the budget; ended"
	}
	fmt.Fprintf(w, "  settle        %s after %s (budget %s, the poller's bound)\n", settled, r.SettleTime.Round(time.Millisecond), r.SettleBudget)
	fmt.Fprintf(w, "  jobs left     %s; clean shutdown: %v\n", counts(r.JobsLeft), r.CleanShutdown)
	fmt.Fprintf(w, "  run time      %s\n", r.Duration.Round(time.Millisecond))
	if r.WorkDir != "" {
		fmt.Fprintf(w, "  work dir      %s\n", r.WorkDir)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  %-58s %8s %10s  %s\n", "CHECK", "CHECKED", "VIOLATIONS", "RESULT")
	for i := range r.Checks {
		c := &r.Checks[i]
		res := "PASS"
		if !c.OK() {
			res = "FAIL"
		}
		fmt.Fprintf(w, "  %-58s %8d %10d  %s\n", c.Name, c.Checked, c.Violations, res)
	}
	for i := range r.Checks {
		c := &r.Checks[i]
		if c.OK() {
			continue
		}
		fmt.Fprintf(w, "\n  FAIL %s:\n", c.Name)
		for _, d := range c.Details {
			fmt.Fprintf(w, "    - %s\n", d)
		}
		if c.Violations > len(c.Details) {
			fmt.Fprintf(w, "    … and %d more\n", c.Violations-len(c.Details))
		}
	}
	verdict := "PASS"
	if !r.OK() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\nchaos: %s (seed %d)\n", verdict, r.Seed)
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := sortedKeys(m)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + strconv.Itoa(m[k])
	}
	return strings.Join(parts, ", ")
}

func (o *Options) setDefaults() {
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Seed == 0 {
		o.Seed = time.Now().UnixNano() % 1_000_000_000
	}
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	if o.Settle <= 0 {
		o.Settle = Bound()
		if o.Replicas > 1 {
			o.Settle = ReplicaBound()
		}
	}
	if o.Replay == "" {
		o.Replay = klarnasim.ReplayIdentical
	}
}

// Run runs the chaos test and returns its report. An error means the run
// itself could not be carried out (a process would not start, the context
// ended); failed checks are in the report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.setDefaults()
	start := time.Now()
	out := &lockedWriter{w: opts.Out}
	logf := func(format string, args ...any) {
		fmt.Fprintf(out, "chaos %6.1fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(out, "chaos: seed %d (replay with -seed %d)\n", opts.Seed, opts.Seed)
	if opts.Sessions < 0 || opts.Charges < 0 || opts.Kills < 0 {
		return nil, errors.New("chaos: sessions, charges and kills must not be negative")
	}
	if err := (klarnasim.Behaviour{Replay: opts.Replay}).Check(); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	bin, err := filepath.Abs(opts.Bin)
	if err != nil {
		return nil, fmt.Errorf("chaos: binary: %w", err)
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("chaos: binary: %w", err)
	}
	dir := opts.WorkDir
	tempDir := dir == ""
	if tempDir {
		dir, err = os.MkdirTemp("", "hppd-chaos-")
	} else {
		err = os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return nil, fmt.Errorf("chaos: work dir: %w", err)
	}
	rep := &Report{
		Seed: opts.Seed, Replay: opts.Replay, Replicas: opts.Replicas, Sessions: opts.Sessions, Charges: opts.Charges, Kills: opts.Kills,
		WorkDir: dir, SettleBudget: opts.Settle,
		simLog: filepath.Join(dir, "sim.log"), raceGlob: filepath.Join(dir, "race.*"),
	}
	if opts.Replicas == 1 {
		rep.hppdLogs = []string{filepath.Join(dir, "hppd.log")}
	} else {
		for i := range opts.Replicas {
			rep.hppdLogs = append(rep.hppdLogs, filepath.Join(dir, fmt.Sprintf("hppd-%d.log", i+1)))
		}
	}
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				rep.RaceBuilt = true
			}
		}
	}
	r := &run{opts: opts, bin: bin, dir: dir, rep: rep, logf: logf}
	err = r.do(ctx)
	rep.Duration = time.Since(start)
	if err != nil {
		return nil, err
	}
	rep.Print(out)
	if tempDir && rep.OK() && !opts.Keep {
		os.RemoveAll(dir)
		rep.WorkDir = ""
	}
	return rep, nil
}

// lockedWriter serialises progress lines from the killer and the main loop.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// run is one chaos run in progress.
type run struct {
	opts Options
	bin  string
	dir  string
	rep  *Report
	logf func(format string, args ...any)

	sim     *simClient
	api     *hppdClient
	hppd    []*process // one, or the replicas
	simProc *process
	tap     *tap
	bal     *balancer // nil with one process
	rates   rates     // hppd's configured Klarna rates
	dbURL   string    // PostgreSQL, with replicas
}

func (r *run) do(ctx context.Context) error {
	opts := r.opts
	// Klarna.
	simAddr, err := freePort()
	if err != nil {
		return err
	}
	simProc := &process{
		name: "hppd sim", bin: r.bin, logPath: r.rep.simLog, env: childEnv(nil),
		args: []string{"sim", "--env", "production", "--listen", simAddr, "--seed", strconv.FormatInt(opts.Seed, 10), "--log-level", "warn",
			"--username", simUser, "--password", simPass, "--replay", opts.Replay},
	}
	if opts.Replay != klarnasim.ReplayIdentical {
		simProc.args = append(simProc.args, "--payment-method-string")
	}
	r.simProc = simProc
	if err := simProc.start(); err != nil {
		return err
	}
	defer simProc.stop(10 * time.Second)
	simURL := "http://" + simAddr
	if err := waitReady(ctx, simProc, simURL+"/_sim/faults", simUser, simPass, 30*time.Second); err != nil {
		return err
	}
	r.sim = &simClient{base: simURL, user: simUser, pass: simPass, http: newHTTPClient(2 * time.Minute)}
	n := opts.Replicas
	tp, err := newTap(simURL, n)
	if err != nil {
		return err
	}
	defer tp.close()
	r.tap = tp

	// hppd: one process on a bbolt file, or replicas on PostgreSQL behind
	// the balancer.
	listen := make([]string, n)
	for i := range listen {
		if listen[i], err = freePort(); err != nil {
			return err
		}
	}
	rt := singleRates
	r.rates = rt
	if n > 1 {
		rt = replicaRates
		r.rates = rt
		srv, err := pgtest.Start(pgtest.ServerOptions{})
		if err != nil {
			return fmt.Errorf("chaos: PostgreSQL: %w", err)
		}
		defer srv.Stop()
		if r.dbURL, err = srv.Database(ctx, fmt.Sprintf("hppd_chaos_%d", os.Getpid())); err != nil {
			return fmt.Errorf("chaos: PostgreSQL: %w", err)
		}
		r.rep.Database = strings.SplitN(r.dbURL, "?", 2)[0]
		if r.bal, err = newBalancer(listen); err != nil {
			return err
		}
		defer r.bal.close()
	}
	var keyBytes [32]byte
	if _, err := rand.Read(keyBytes[:]); err != nil {
		return fmt.Errorf("jwt key: %w", err)
	}
	jwtKey := hex.EncodeToString(keyBytes[:])
	durs := make([]string, len(chargeRetrySchedule))
	for i, d := range chargeRetrySchedule {
		durs[i] = d.String()
	}
	for i := range n {
		vars := map[string]string{
			"HPPD_LISTEN":                  listen[i],
			"HPPD_METRICS_LISTEN":          "127.0.0.1:0",
			"HPPD_KLARNA_BASE_URL":         tp.URL(i),
			"HPPD_KLARNA_USERNAME":         simUser,
			"HPPD_KLARNA_PASSWORD":         simPass,
			"HPPD_KLARNA_TIMEOUT":          klarnaTimeout.String(),
			"HPPD_KLARNA_CREATE_RATE":      strconv.Itoa(rt.create),
			"HPPD_KLARNA_OTHER_RATE":       strconv.Itoa(rt.other),
			"HPPD_KLARNA_TOKEN_ORDER_RATE": strconv.Itoa(rt.tokenOrder),
			"HPPD_JWT_HS256_KEY":           jwtKey,
			"HPPD_POLL_SCHEDULE":           "@every " + pollEvery.String(),
			"HPPD_STALE_AFTER":             staleAfter.String(),
			"HPPD_CHARGE_RETRY_SCHEDULE":   strings.Join(durs, ","),
			"HPPD_LOG_LEVEL":               "info",
			"HPPD_SHUTDOWN_TIMEOUT":        "10s",
			"GORACE":                       "log_path=" + filepath.Join(r.dir, "race"),
		}
		name := "hppd serve"
		if n == 1 {
			vars["HPPD_DB"] = filepath.Join(r.dir, "hppd.db")
		} else {
			// Klarna and the shoppers reach every replica through the
			// balancer: status_update callbacks and redirects included.
			name = fmt.Sprintf("hppd serve (replica %d)", i+1)
			vars["HPPD_DATABASE_URL"] = r.dbURL
			vars["HPPD_PUBLIC_URL"] = r.bal.URL()
			vars["HPPD_LEASE_TTL"] = replicaLeaseTTL.String()
		}
		r.hppd = append(r.hppd, &process{name: name, bin: r.bin, args: []string{"serve"}, env: childEnv(vars), logPath: r.rep.hppdLogs[i]})
	}
	ready := func(ctx context.Context, i int) error {
		if err := waitReady(ctx, r.hppd[i], "http://"+listen[i]+"/readyz", "", "", 60*time.Second); err != nil {
			return err
		}
		if r.bal != nil {
			r.bal.setUp(i, true)
		}
		return nil
	}
	defer r.stopAll(15 * time.Second)
	for _, p := range r.hppd {
		if err := p.start(); err != nil {
			return err
		}
	}
	for i := range r.hppd {
		if err := ready(ctx, i); err != nil {
			return err
		}
	}
	jwt, err := issueToken(ctx, r.bin, childEnv(map[string]string{"HPPD_JWT_HS256_KEY": jwtKey}), storefront, 6*time.Hour)
	if err != nil {
		return err
	}
	stats := &apiStats{}
	base := "http://" + listen[0]
	if r.bal != nil {
		base = r.bal.URL()
	}
	r.api = &hppdClient{base: base, jwt: jwt, http: newHTTPClient(time.Minute), stats: stats}
	if n == 1 {
		r.logf("simulator on %s, hppd on %s (klarna through the tap at %s), work dir %s", simAddr, listen[0], tp.URL(0), r.dir)
	} else {
		r.logf("simulator on %s, %d hppd replicas on %s behind the balancer at %s (klarna through the tap), database %s, work dir %s",
			simAddr, n, strings.Join(listen, " "), base, r.rep.Database, r.dir)
	}

	if err := r.setFaults(ctx); err != nil {
		return err
	}
	r.logf("faults on: 503s, timeouts > hppd's %s klarna timeout, 429 bursts, callbacks dropped/duplicated/delayed/reordered", klarnaTimeout)

	// The work and the killer.
	d := newDriver(r.api, r.sim, opts.Seed, opts.Sessions, opts.Charges)
	k := &killer{hppd: r.hppd, tap: tp, ready: ready, progress: d.progress, n: opts.Kills,
		rng: itemRand(opts.Seed, 5, 0), logf: r.logf}
	// A killer that cannot restart hppd ends the work at once: the workers
	// would only wait on a dead daemon.
	workCtx, cancelWork := context.WithCancel(ctx)
	defer cancelWork()
	kerr := make(chan error, 1)
	go func() {
		err := k.run(workCtx)
		if err != nil {
			cancelWork()
		}
		kerr <- err
	}()
	stopTicker := r.ticker(workCtx, d)
	d.run(workCtx, opts.Workers)
	stopTicker()
	r.logf("storefront work done (%d purchases, %d charges)", len(d.sessions), len(d.charges))
	if err := <-kerr; err != nil {
		return fmt.Errorf("chaos: killer: %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for i, p := range r.hppd {
		if p.running() {
			continue
		}
		// It died by itself (recorded as a crash); the settle phase needs it.
		if err := p.start(); err != nil {
			return err
		}
		if err := ready(ctx, i); err != nil {
			return err
		}
	}

	// Settle without faults.
	if code, err := r.sim.do(ctx, http.MethodDelete, "/_sim/faults", nil, nil); err != nil || code != http.StatusNoContent {
		return fmt.Errorf("chaos: clear faults: status %d: %v", code, err)
	}
	kn := index(d.allSessions(), d.charges)
	hpp := map[string]string{}
	settleStart := time.Now()
	r.logf("faults cleared; waiting for hppd to settle (at most %s)", opts.Settle)
	var w *world
	lastSig, quietSince := "", time.Now()
	for {
		if w, err = r.snapshot(ctx, hpp); err != nil {
			return err
		}
		s, waiting := checkSettled(w, kn)
		if s.OK() {
			r.rep.Settled = true
			break
		}
		if sig := w.signature(); sig != lastSig {
			lastSig, quietSince = sig, time.Now()
		}
		if waiting == 0 && time.Since(quietSince) >= settleQuiet {
			r.rep.SettleStuck = s.Violations
			break
		}
		if time.Since(settleStart) > opts.Settle || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	r.rep.SettleTime = time.Since(settleStart)
	r.logf("settle wait over after %s (settled: %v)", r.rep.SettleTime.Round(time.Millisecond), r.rep.Settled)

	// The final snapshot: callbacks first, so each answered callback's effect
	// was committed before hppd's state is read; orders next.
	if _, err := r.sim.do(ctx, http.MethodGet, "/_sim/callbacks", nil, &w.callbacks); err != nil {
		return err
	}
	if _, err := r.sim.do(ctx, http.MethodGet, "/_sim/orders", nil, &w.orders); err != nil {
		return err
	}
	cbs, orders := w.callbacks, w.orders
	if w, err = r.snapshot(ctx, hpp); err != nil {
		return err
	}
	w.callbacks, w.orders = cbs, orders
	var requests []klarnasim.RequestRecord
	if _, err := r.sim.do(ctx, http.MethodGet, "/_sim/requests", nil, &requests); err != nil {
		return err
	}
	r.rep.CleanShutdown = r.stopAll(30 * time.Second)

	r.fill(d, k, w, requests, stats)
	return nil
}

// stopAll stops every hppd process at once and reports whether all shut
// down cleanly.
func (r *run) stopAll(grace time.Duration) bool {
	clean := make([]bool, len(r.hppd))
	var wg sync.WaitGroup
	for i, p := range r.hppd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clean[i] = p.stop(grace)
		}()
	}
	wg.Wait()
	return !slices.Contains(clean, false)
}

// ticker prints the progress every few seconds until stopped.
func (r *run) ticker(ctx context.Context, d *driver) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-t.C:
				r.logf("%d/%d items done", d.finished.Load(), len(d.order))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// setFaults turns on the run's faults at the simulator.
func (r *run) setFaults(ctx context.Context) error {
	long := klarnasim.Duration(klarnaTimeout + time.Second) // hppd gives up first
	f := klarnasim.Faults{
		Operations: map[string][]klarnasim.FaultRule{
			klarnasim.OpAll: {
				{ErrorRate: 0.06, Status: http.StatusServiceUnavailable},
				{ErrorRate: 0.04, Status: http.StatusServiceUnavailable, AfterEffect: true},
				{TimeoutRate: 0.06, Timeout: long},
				{TimeoutRate: 0.04, Timeout: long, AfterEffect: true},
			},
			klarnasim.OpCreateKPSession:  {{Burst429: &klarnasim.Burst{Every: 40, Length: 3, Reset: 1}}},
			klarnasim.OpCreateHPPSession: {{Burst429: &klarnasim.Burst{Every: 40, Length: 3, Reset: 1}}},
			klarnasim.OpCreateTokenOrder: {{Burst429: &klarnasim.Burst{Every: 30, Length: 2, Reset: 1}}},
			// Orders take a moment, so kills can land while one is in flight.
			klarnasim.OpPlaceOrder: {{Latency: klarnasim.Duration(150 * time.Millisecond)}},
		},
		Callbacks: &klarnasim.CallbackFaults{
			DropRate: 0.3, DuplicateRate: 0.3, MaxDuplicates: 3,
			UnknownStatusRate: 0.05, EmptyBodyRate: 0.05,
			DelayRate: 0.2, Delay: klarnasim.Duration(1500 * time.Millisecond), ReorderRate: 0.2,
		},
	}
	var echo map[string]any
	code, err := r.sim.do(ctx, http.MethodPost, "/_sim/faults", f, &echo)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("chaos: set faults: status %d: %v", code, err)
	}
	return nil
}

// snapshot reads every session and charge of the storefront from hppd and
// the Klarna status of every HPP session not read before (statuses do not
// move once the shoppers are done and the faults are off; hpp caches them).
func (r *run) snapshot(ctx context.Context, hpp map[string]string) (*world, error) {
	var sessions []api.Session
	if err := listAll(ctx, r.api, "/v1/sessions", &sessions); err != nil {
		return nil, err
	}
	var charges []api.Charge
	if err := listAll(ctx, r.api, "/v1/charges", &charges); err != nil {
		return nil, err
	}
	for _, s := range sessions {
		h := s.Klarna.HPPSessionID
		if h == "" || hpp[h] != "" {
			continue
		}
		var hs klarna.HPPSessionStatus
		code, err := r.sim.do(ctx, http.MethodGet, "/hpp/v1/sessions/"+url.PathEscape(h), nil, &hs)
		switch {
		case err != nil:
			return nil, err
		case code == http.StatusNotFound:
			hpp[h] = hppGone
		case code == http.StatusOK:
			hpp[h] = hs.Status
		}
	}
	return newWorld(time.Now(), sessions, charges, hpp), nil
}

// listAll pages through a list endpoint of hppd's API.
func listAll[T any](ctx context.Context, c *hppdClient, path string, out *[]T) error {
	cursor := ""
	for {
		q := url.Values{"limit": {"500"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page api.List[T]
		code, eb, err := c.call(ctx, http.MethodGet, path+"?"+q.Encode(), "", nil, &page)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("chaos: list %s: %s", path, errText(code, eb))
		}
		*out = append(*out, page.Data...)
		if page.NextCursor == "" {
			return nil
		}
		cursor = page.NextCursor
	}
}

// fill runs the checks and fills in the report.
func (r *run) fill(d *driver, k *killer, w *world, requests []klarnasim.RequestRecord, stats *apiStats) {
	rep := r.rep
	kn := index(d.allSessions(), d.charges)
	ix := indexOrders(w.orders)

	for _, s := range d.sessions {
		if s.ID != "" {
			rep.SessionsCreated++
		}
		rep.CreationsFailed += len(s.FailedIDs)
	}
	for _, s := range d.allSessions() {
		if s.ChargeKey != "" {
			rep.FallbackSessions++
		}
		if s.Paid {
			rep.ShopperPayments++
		}
	}
	for _, c := range d.charges {
		if c.ID != "" {
			rep.ChargesCreated++
		}
	}
	for _, p := range r.hppd {
		rep.HPPDStarts += p.starts
	}
	rep.KillsDone = len(k.kills)
	for _, kl := range k.kills {
		if kl.Second {
			rep.DoubleKills++
		}
		if kl.DuringPlaceOrder {
			rep.KillsDuringPlaceOrder++
		}
		if kl.DuringTokenOrder {
			rep.KillsDuringTokenOrder++
		}
	}
	rep.Requests = len(requests)
	rep.RequestsByOp = map[string]int{}
	for _, q := range requests {
		rep.RequestsByOp[q.Operation]++
	}
	rep.Orders = len(w.orders)
	rep.OrdersBySource = map[string]int{}
	for _, o := range w.orders {
		rep.OrdersBySource[o.Source]++
	}
	for _, cb := range w.callbacks {
		switch {
		case cb.Dropped:
			rep.CallbacksDropped++
		default:
			rep.Callbacks++
			if cb.HTTPStatus >= 200 && cb.HTTPStatus < 300 {
				rep.CallbacksAnswered2xx++
			}
		}
	}
	rep.APIRequests, rep.APIAttempts = stats.requests.Load(), stats.attempts.Load()
	rep.Statuses = map[string]int{}
	for _, s := range w.sessions {
		rep.Statuses["session/"+s.Status]++
	}
	for _, c := range w.charges {
		rep.Statuses["charge/"+c.Status]++
	}

	// Rows of the table.
	kc := Check{Name: fmt.Sprintf("kills: >= %d SIGKILLs, >= 1 in place_order, no crash", rep.Kills), Checked: rep.KillsDone}
	if rep.KillsDone < rep.Kills {
		kc.fail("only %d of %d kills were done", rep.KillsDone, rep.Kills)
	}
	if rep.Kills > 0 && rep.KillsDuringPlaceOrder == 0 {
		kc.fail("no kill landed while a place_order call was in flight")
	}
	for i, p := range r.hppd {
		for _, c := range p.unexpectedExits() {
			kc.fail("%s (see %s)", c, rep.hppdLogs[i])
		}
	}
	apiRow := Check{Name: "storefront API answered every request, never 500", Checked: int(rep.APIRequests)}
	stats.mu.Lock()
	for _, p := range stats.problems {
		apiRow.fail("%s", p)
	}
	stats.mu.Unlock()
	d.mu.Lock()
	for _, f := range d.faults {
		apiRow.fail("driver: %s", f)
	}
	d.mu.Unlock()
	for _, c := range r.simProc.unexpectedExits() {
		apiRow.fail("%s (see %s)", c, rep.simLog)
	}

	settled, _ := checkSettled(w, kn)
	rc, seen := checkRates(r.tap.arrivalsByCategory(), r.rates.limits())
	rep.BusiestSeconds = rateSummary(r.rates.limits(), seen)
	if r.bal != nil {
		rep.Balanced = r.bal.spread()
		for _, be := range r.bal.backends {
			rep.ServedByReplica = append(rep.ServedByReplica, be.served.Load())
		}
		rep.CallbacksBalanced, rep.ShopperBalanced = r.bal.callbacks.Load(), r.bal.shoppers.Load()
	}
	rep.Checks = []Check{
		kc,
		apiRow,
		checkCompleted(w, ix),
		checkNoExtraOrders(w, kn, ix),
		checkPaidNeverFailed(w, ix),
		checkCallbacks(w, kn),
		checkNothingLost(w, kn),
		checkPresentNeverNeedsCustomer(w, kn),
		settled,
		r.checkStore(),
		rc,
	}
	if rep.RaceBuilt {
		rep.Checks = append(rep.Checks, r.checkRaces())
	}
}

// checkedStore is what checkStore needs of either store.
type checkedStore interface {
	Check() error
	View(fn func(store.Tx) error) error
	Close() error
}

// openStore opens hppd's data file, or its database with replicas.
func (r *run) openStore() (checkedStore, error) {
	if r.dbURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return pgstore.Open(ctx, r.dbURL, pgstore.Options{NoMigrate: true})
	}
	return boltstore.Open(filepath.Join(r.dir, "hppd.db"), boltstore.Options{LockTimeout: 10 * time.Second})
}

// checkStore opens hppd's data file (or database) after the run and runs
// store.Check; it also counts the jobs left.
func (r *run) checkStore() Check {
	c := Check{Name: "data file consistent after the kills (store.Check)", Checked: 1}
	if r.dbURL != "" {
		c.Name = "database consistent after the kills (store.Check)"
	}
	db, err := r.openStore()
	if err != nil {
		c.fail("open: %v", err)
		return c
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			c.fail("%s", line)
		}
	}
	left := map[string]int{}
	maxAttempts := map[string]int{}
	_ = db.View(func(tx store.Tx) error {
		return tx.AllJobs(func(j *core.Job) error {
			left[string(j.Kind)]++
			maxAttempts[string(j.Kind)] = max(maxAttempts[string(j.Kind)], j.Attempts)
			return nil
		})
	})
	r.rep.JobsLeft = map[string]int{}
	for k, n := range left {
		r.rep.JobsLeft[fmt.Sprintf("%s (max %d attempts)", k, maxAttempts[k])] = n
	}
	return c
}

// checkRaces counts the data race reports a race-built hppd wrote.
func (r *run) checkRaces() Check {
	c := Check{Name: "no data race reported by the race-built hppd", Checked: r.rep.HPPDStarts}
	files, _ := filepath.Glob(r.rep.raceGlob)
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			c.fail("%s: %v", f, err)
			continue
		}
		n := strings.Count(string(b), "WARNING: DATA RACE")
		for range n {
			c.fail("data race reported in %s", f)
		}
	}
	return c
}
