package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/poller"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
	bolt "go.etcd.io/bbolt"
)

// BigFile is the file of benchmarks 2 and 4: Sessions sessions, 1% due,
// built once per run, and the simulator that knows the due sessions the
// reconcile runs re-read.
type BigFile struct {
	Path      string
	Sessions  int
	Due       int
	Watched   int
	Now       time.Time
	BuildTime time.Duration
	Size      int64
	Stats     FileStats // as built
	// Due targets, oldest CheckAt first; the first SimBacked exist at the
	// simulator (Paid of them paid there), so that a reconcile run reads
	// real sessions.
	DueTargets []Target
	SimBacked  int
	SimPaid    int
	made       int // simulator-backed sessions made so far

	Sim    *klarnasim.Sim
	SimURL string
	srv    *httptest.Server
}

// Close stops the simulator.
func (b *BigFile) Close() {
	b.srv.Close()
	b.Sim.Close()
}

// Reconcile runs of benchmark 2: each re-reads reconcileBatch due sessions.
const (
	pollerBatch    = 10_000 // poller.Config.Batch's default: sessions scheduled per run
	reconcileBatch = 300
	reconcileRuns  = 3
	reconcileRate  = 50 // HPPD_KLARNA_OTHER_RATE of the reconcile runs
)

// BuildBigFile builds the file of benchmarks 2 and 4 in dir: n sessions, 1%
// of them due, 3% watched, the rest paid, two callback events each. The
// oldest reconcileRuns·reconcileBatch due sessions are created at the
// simulator first (a third of them paid there), so that the reconcile runs
// of benchmark 2 read real Klarna sessions and place real orders.
func BuildBigFile(ctx context.Context, dir string, n int, log io.Writer) (*BigFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	b := &BigFile{Path: filepath.Join(dir, "big.db"), Sessions: n, Due: n / 100, Watched: 3 * n / 100, Now: time.Now()}
	b.Sim = klarnasim.New(klarnasim.Options{Seed: 22, Unlimited: true}) // the setup loads it unpaced; request rates are counted and reported
	b.srv = httptest.NewServer(b.Sim.Handler())
	b.SimURL = b.srv.URL
	b.Sim.SetPublicURL(b.SimURL)
	kl, err := klarna.New(klarna.Config{BaseURL: b.SimURL, Username: "sim", Password: "sim", CreateSessionRate: -1, OtherRate: -1, TokenOrderRate: -1})
	if err != nil {
		b.Close()
		return nil, err
	}
	b.SimBacked = min(b.Due, reconcileRuns*reconcileBatch)
	var prepErr error
	fmt.Fprintf(log, "benchmarks 2 and 4: building a file of %d sessions (%d due, %d watched)\n", n, b.Due, b.Watched)
	start := time.Now()
	targets, err := BuildFile(b.Path, Plan{
		Sessions: n, Due: b.Due, Watched: b.Watched, EventsPerSession: 2, Now: b.Now, Seed: 22, Tail: n / 10,
		Prepare: func(t *Target, s *core.Session) {
			if t.Kind != Due || prepErr != nil || b.made >= b.SimBacked {
				return
			}
			k := b.made
			b.made++
			pay := k%3 == 0
			if err := simSession(ctx, kl, b.Sim, s, pay); err != nil {
				prepErr = fmt.Errorf("simulator session %d: %w", k, err)
				return
			}
			// The oldest CheckAts, in this order: the poller takes them first.
			s.CheckAt = b.Now.Add(-2*time.Hour + time.Duration(k)*time.Millisecond)
			if pay {
				b.SimPaid++
			}
		},
	})
	if err == nil {
		err = prepErr
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	b.BuildTime = time.Since(start)
	for _, t := range targets {
		if t.Kind == Due {
			b.DueTargets = append(b.DueTargets, t)
		}
	}
	slices.SortFunc(b.DueTargets, func(x, y Target) int { return x.CheckAt.Compare(y.CheckAt) })
	fi, err := os.Stat(b.Path)
	if err != nil {
		b.Close()
		return nil, err
	}
	b.Size = fi.Size()
	if b.Stats, err = ReadFileStats(b.Path); err != nil {
		b.Close()
		return nil, err
	}
	fmt.Fprintf(log, "built in %v: %.0f MiB, %.0f bytes per session\n", b.BuildTime.Round(time.Second), mib(b.Size), float64(b.Size)/float64(n))
	return b, nil
}

// simSession creates s's purchase at the simulator (a KP session and an HPP
// session on it, as hpp.CreateSession does) and gives s their ids; with pay
// the shopper pays on the page, so Klarna holds an authorization.
func simSession(ctx context.Context, kl *klarna.Client, sim *klarnasim.Sim, s *core.Session, pay bool) error {
	p := &s.Purchase
	lines := make([]klarna.OrderLine, len(p.OrderLines))
	for i, l := range p.OrderLines {
		lines[i] = klarna.OrderLine{Type: l.Type, Reference: l.Reference, Name: l.Name, Quantity: l.Quantity, UnitPrice: l.UnitPrice,
			TaxRate: l.TaxRate, TotalAmount: l.TotalAmount, TotalTaxAmount: l.TotalTaxAmount, ProductURL: l.ProductURL}
	}
	var billing *klarna.Address
	if a := p.BillingAddress; a != nil {
		k := klarna.Address(*a)
		billing = &k
	}
	kp, err := kl.CreateKPSession(ctx, &klarna.KPSessionRequest{
		AcquiringChannel: "ECOMMERCE", Intent: "buy", PurchaseCountry: p.PurchaseCountry, PurchaseCurrency: p.PurchaseCurrency,
		Locale: p.Locale, OrderAmount: p.OrderAmount, OrderTaxAmount: p.OrderTaxAmount, OrderLines: lines,
		MerchantReference1: p.MerchantReference1, BillingAddress: billing,
	})
	if err != nil {
		return err
	}
	hs, err := kl.CreateHPPSession(ctx, &klarna.HPPSessionRequest{
		PaymentSessionURL: kl.PaymentSessionURL(kp.SessionID),
		Options:           &klarna.HPPOptions{PlaceOrderMode: core.ModeNone},
	})
	if err != nil {
		return err
	}
	s.KPSessionID, s.HPPSessionID = kp.SessionID, hs.SessionID
	s.RedirectURL, s.DistributionURL = hs.RedirectURL, hs.DistributionURL
	if hs.ExpiresAt != nil {
		s.ExpiresAt = hs.ExpiresAt.UTC()
	}
	if pay {
		if _, _, err := sim.Act(hs.SessionID, klarnasim.ActionPay); err != nil {
			return err
		}
	}
	return nil
}

// FileStats are a store file's pages as bbolt counts them.
type FileStats struct {
	// PagesInUse is the file's high-water mark in bytes; Free of those
	// bytes are free pages.
	PagesInUse, Free int64
	// Leaf bytes holding keys and values, and leaf bytes allocated, over all
	// buckets (their ratio is how full the pages are).
	LeafInuse, LeafAlloc int64
	// Per bucket: keys, leaf bytes in use and allocated.
	Buckets []BucketStats
}

// BucketStats are one bucket's numbers.
type BucketStats struct {
	Name                 string
	Keys                 int
	LeafInuse, LeafAlloc int64
}

// ReadFileStats opens a closed store file with bbolt (not read-only: only
// then does bbolt load the freelist; nothing is written) and walks every
// bucket's pages.
func ReadFileStats(path string) (FileStats, error) {
	var fs FileStats
	db, err := bolt.Open(path, 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType, Timeout: 5 * time.Second})
	if err != nil {
		return fs, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		fs.PagesInUse = tx.Size()
		fs.Free = int64(db.Stats().FreePageN) * int64(db.Info().PageSize)
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			s := b.Stats()
			bs := BucketStats{Name: string(name), Keys: s.KeyN, LeafInuse: int64(s.LeafInuse), LeafAlloc: int64(s.LeafAlloc)}
			fs.LeafInuse += bs.LeafInuse
			fs.LeafAlloc += bs.LeafAlloc
			if bs.Keys > 0 {
				fs.Buckets = append(fs.Buckets, bs)
			}
			return nil
		})
	})
	slices.SortFunc(fs.Buckets, func(a, b BucketStats) int { return int(b.LeafAlloc - a.LeafAlloc) })
	return fs, err
}

// PollerConfig configures benchmark 2.
type PollerConfig struct {
	Big  *BigFile
	Dir  string
	Runs int
	Log  io.Writer
}

// PollerResult is benchmark 2's outcome.
type PollerResult struct {
	Sessions, Due int
	// Find: tx.SessionsDue for all due sessions (ms per run), and for a
	// tenth of them and for none (scaling), with the bytes allocated.
	Find, FindTenth, FindNone []float64
	FindAlloc                 []float64 // MiB allocated per find of all due
	FindTenthN                int
	// FullScan is the time to walk every key and value of the sessions
	// bucket (no decoding): what finding due sessions would cost without
	// the index.
	FullScan []float64
	// Schedule: hpp.Service.ScheduleDue for every due session (find, and a
	// sync job written for each, fsynced per chunk), ms per run.
	Schedule      []float64
	ScheduleAlloc []float64
	// Reconcile runs (poller.RunOnce plus the job runner, against the
	// simulator at reconcileRate requests/s).
	Reconcile []ReconcileRun
	Rate      float64
}

// ReconcileRun is one poller.RunOnce with the jobs it causes.
type ReconcileRun struct {
	Sessions int           // sessions re-read (sync jobs run)
	Orders   int           // orders placed by the job runner meanwhile
	Duration time.Duration // RunOnce plus the drain of the jobs it caused
	Requests int           // requests the simulator received
	Refused  int           // of them answered with an error
	Failed   int64         // job attempts that failed and were rescheduled
	// MaxWindow is the most requests the simulator received within any
	// one-second window (sliding, at the simulator's millisecond
	// resolution); MaxSecond within any calendar second (the windows the
	// simulator's X-Ratelimit headers count, like Klarna's "w=1").
	MaxWindow, MaxSecond int
	Err                  error
}

// RunPoller runs benchmark 2 on copies of the big file.
func RunPoller(ctx context.Context, cfg PollerConfig) (*PollerResult, error) {
	b := cfg.Big
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(filepath.Dir(b.Path), "poller")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	res := &PollerResult{Sessions: b.Sessions, Due: b.Due, Rate: reconcileRate}

	// Finding due sessions: read-only, on the file as built.
	if err := measureFind(b, cfg.Runs, res); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "bench 2: find %d due of %d: %s ms; %d due: %s ms; none due: %s ms; full scan %s ms\n",
		b.Due, b.Sessions, SpreadOf(res.Find).Format("%.2f"), res.FindTenthN, SpreadOf(res.FindTenth).Format("%.2f"),
		SpreadOf(res.FindNone).Format("%.3f"), SpreadOf(res.FullScan).Format("%.0f"))

	// ScheduleDue writes: a fresh copy per run.
	for i := 0; i < cfg.Runs; i++ {
		d, alloc, err := measureSchedule(ctx, b, filepath.Join(cfg.Dir, fmt.Sprintf("schedule%d.db", i+1)))
		if err != nil {
			return nil, fmt.Errorf("schedule run %d: %w", i+1, err)
		}
		res.Schedule = append(res.Schedule, ms(d))
		res.ScheduleAlloc = append(res.ScheduleAlloc, alloc)
	}
	fmt.Fprintf(cfg.Log, "bench 2: ScheduleDue of %d: %s ms\n", b.Due, SpreadOf(res.Schedule).Format("%.0f"))

	runs, err := reconcile(ctx, b, filepath.Join(cfg.Dir, "reconcile.db"), cfg.Log)
	if err != nil {
		return nil, err
	}
	res.Reconcile = runs
	return res, nil
}

func measureFind(b *BigFile, runs int, res *PollerResult) error {
	db, err := boltstore.Open(b.Path, boltstore.Options{})
	if err != nil {
		return err
	}
	tenth := max(1, len(b.DueTargets)/10)
	res.FindTenthN = tenth
	tTenth := b.DueTargets[tenth-1].CheckAt
	tNone := b.DueTargets[0].CheckAt.Add(-time.Nanosecond)
	find := func(now time.Time, want int) (time.Duration, float64, error) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		var ids []string
		err := db.View(func(tx store.Tx) error {
			var err error
			ids, err = tx.SessionsDue(now, 0)
			return err
		})
		d := time.Since(start)
		runtime.ReadMemStats(&after)
		if err == nil && len(ids) != want {
			err = fmt.Errorf("%d sessions due, want %d", len(ids), want)
		}
		return d, mib(int64(after.TotalAlloc - before.TotalAlloc)), err
	}
	// One untimed pass brings the index pages into memory, as on a
	// running hppd whose poller runs every 30 s.
	if _, _, err := find(b.Now, b.Due); err != nil {
		db.Close()
		return err
	}
	for i := 0; i < max(runs, 5); i++ {
		d, alloc, err := find(b.Now, b.Due)
		if err != nil {
			db.Close()
			return err
		}
		res.Find = append(res.Find, ms(d))
		res.FindAlloc = append(res.FindAlloc, alloc)
		if d, _, err = find(tTenth, tenth); err != nil {
			db.Close()
			return err
		}
		res.FindTenth = append(res.FindTenth, ms(d))
		if d, _, err = find(tNone, 0); err != nil {
			db.Close()
			return err
		}
		res.FindNone = append(res.FindNone, ms(d))
	}
	if err := db.Close(); err != nil {
		return err
	}
	// The contrast: a walk over every session, without even decoding one.
	for i := 0; i < runs; i++ {
		d, err := scanSessions(b.Path, b.Sessions)
		if err != nil {
			return err
		}
		res.FullScan = append(res.FullScan, ms(d))
	}
	return nil
}

// scanSessions walks every key and value of the sessions bucket.
func scanSessions(path string, want int) (time.Duration, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	start := time.Now()
	n, bytes := 0, 0
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("sessions"))
		if b == nil {
			return errors.New("no sessions bucket")
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			n++
			bytes += len(v)
		}
		return nil
	})
	d := time.Since(start)
	if err == nil && n != want {
		err = fmt.Errorf("scanned %d sessions (%d bytes), want %d", n, bytes, want)
	}
	return d, err
}

// measureSchedule runs hpp.Service.ScheduleDue once on a fresh copy.
func measureSchedule(ctx context.Context, b *BigFile, path string) (time.Duration, float64, error) {
	if err := copyFile(b.Path, path); err != nil {
		return 0, 0, err
	}
	defer os.Remove(path)
	db, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	kl, err := klarna.New(klarna.Config{BaseURL: b.SimURL, Username: "sim", Password: "sim"})
	if err != nil {
		return 0, 0, err
	}
	svc := hpp.New(db, kl, hpp.Config{PublicURL: "http://127.0.0.1:1", Now: func() time.Time { return b.Now }})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	synced, expiring, err := svc.ScheduleDue(pollerBatch)
	d := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		return 0, 0, err
	}
	if synced+expiring != b.Due {
		return 0, 0, fmt.Errorf("scheduled %d re-reads and %d expiries, want %d", synced, expiring, b.Due)
	}
	var jobs int
	err = db.View(func(tx store.Tx) error {
		_, _, j, err := tx.Counts()
		jobs = j[core.JobSyncSession] + j[core.JobRereadSession] + j[core.JobDisableSession]
		return err
	})
	if err == nil && jobs != b.Due {
		err = fmt.Errorf("%d jobs written, want %d", jobs, b.Due)
	}
	return d, mib(int64(after.TotalAlloc - before.TotalAlloc)), err
}

// reconcile runs the poller against the simulator at reconcileRate
// requests/s: poller.RunOnce (batch reconcileBatch) with the job runner
// running beside it, as in hppd, reconcileRuns times; each run re-reads the
// next reconcileBatch simulator-backed due sessions and places the orders of
// those paid at Klarna. Every request the simulator receives is counted per
// one-second window.
func reconcile(ctx context.Context, b *BigFile, path string, log io.Writer) ([]ReconcileRun, error) {
	if err := copyFile(b.Path, path); err != nil {
		return nil, err
	}
	defer os.Remove(path)
	db, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	kl, err := klarna.New(klarna.Config{BaseURL: b.SimURL, Username: "sim", Password: "sim", OtherRate: reconcileRate, CreateSessionRate: 40})
	if err != nil {
		return nil, err
	}
	// The file's clock, moving: jobs that fail come due again.
	t0 := time.Now()
	now := func() time.Time { return b.Now.Add(time.Since(t0)) }
	svc := hpp.New(db, kl, hpp.Config{PublicURL: "http://127.0.0.1:1", Now: now, Logger: slog.New(slog.DiscardHandler)})
	pl, err := poller.New(svc, db, poller.Config{Schedule: "@every 1h", Batch: reconcileBatch, Now: now})
	if err != nil {
		return nil, err
	}
	defer pl.Stop(context.Background(), context.Background())
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); svc.Run(rctx) }() // the job runner, as daemon.Main runs it
	defer func() { cancel(); wg.Wait() }()

	var runs []ReconcileRun
	for i := 0; i < reconcileRuns && (i+1)*reconcileBatch <= b.SimBacked; i++ {
		mark := len(b.Sim.Requests())
		placedBefore, failedBefore := svc.Stats.OrdersPlaced.Load(), svc.Stats.JobsFailed.Load()
		start := time.Now()
		r := pl.RunOnce(ctx)
		// Drain: the orders the re-reads asked for.
		deadline := time.Now().Add(2 * time.Minute)
		for ctx.Err() == nil {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("reconcile run %d: jobs still pending after 2 minutes", i+1)
			}
			var pending int
			_ = db.View(func(tx store.Tx) error {
				_, _, j, err := tx.Counts()
				for _, n := range j {
					pending += n
				}
				return err
			})
			if pending == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		run := ReconcileRun{Duration: time.Since(start), Err: r.Err}
		run.Orders = int(svc.Stats.OrdersPlaced.Load() - placedBefore)
		run.Failed = svc.Stats.JobsFailed.Load() - failedBefore
		reqs := b.Sim.Requests()[mark:]
		run.Requests = len(reqs)
		for _, q := range reqs {
			if q.Operation == klarnasim.OpReadHPPSession {
				run.Sessions++
			}
			if q.Status/100 != 2 {
				run.Refused++
			}
		}
		run.MaxWindow = maxPerWindow(reqs, time.Second)
		run.MaxSecond = maxPerSecond(reqs)
		if r.Synced != reconcileBatch && run.Err == nil {
			run.Err = fmt.Errorf("the poller scheduled %d re-reads, want %d", r.Synced, reconcileBatch)
		}
		fmt.Fprintf(log, "bench 2 reconcile run %d: %d sessions re-read, %d orders placed, %d requests (%d refused, %d job attempts failed) in %v (%.1f/s), at most %d in a sliding second, %d in a calendar second\n",
			i+1, run.Sessions, run.Orders, run.Requests, run.Refused, run.Failed, run.Duration.Round(time.Millisecond), float64(run.Requests)/run.Duration.Seconds(), run.MaxWindow, run.MaxSecond)
		runs = append(runs, run)
	}
	return runs, nil
}

// maxPerSecond is the most requests within one calendar second.
func maxPerSecond(reqs []klarnasim.RequestRecord) int {
	per := map[int64]int{}
	best := 0
	for _, r := range reqs {
		s := r.Time.Unix()
		per[s]++
		best = max(best, per[s])
	}
	return best
}

// maxPerWindow is the most requests within any window of length w: for each
// request, those that arrived less than w after it.
func maxPerWindow(reqs []klarnasim.RequestRecord, w time.Duration) int {
	times := make([]time.Time, len(reqs))
	for i, r := range reqs {
		times[i] = r.Time
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	best, j := 0, 0
	for i := range times {
		for j < len(times) && times[j].Sub(times[i]) < w {
			j++
		}
		best = max(best, j-i)
	}
	return best
}
