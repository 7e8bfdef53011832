package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hppd/hppd/metrics"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// The single writer and the disk's floor (benchmark 1).
//
// Every callback waits for the group commit that holds it, so the callback
// rate is at most the callbacks per commit divided by the writer's time per
// commit. During each run hppd's own metrics say what its writer did
// (hppd_store_commit_*, hppd_store_writer_busy_seconds_total, scraped at
// the window's start and end): how busy it was, how many callbacks and
// pages each commit carried, how long a commit took.
//
// The floor is what the disk allows a B+tree store that must change k
// random sessions of this file per commit, whatever it does besides: right
// after each run (the disk's speed moves within minutes), on a fresh copy of
// the data file, write transactions that rewrite k random target
// sessions unchanged (no callback applied, no event marked, nothing but the
// leaves that hold them and the branch pages above) are timed in their two
// parts, as the writer's metrics time hppd's: the puts (each value encoded
// beforehand, as hppd prepares a callback's, so what is timed is bbolt's
// descent to the leaf and the version check) and the commit. k callbacks per
// such transaction are then the most the disk and bbolt let through: k ÷
// (puts + commit), at three batch sizes:
//   - the batch hppd's first run had;
//   - half the connections, the largest batch a writer that never waits
//     gets on average: a connection answered when one commit ends sends its
//     next callback while the next commit runs, so it is in every other
//     commit at most;
//   - one callback per connection, what a writer that waited for every
//     connection would commit (that wait added to each cycle).

// WriterStats is what hppd's single writer did over a run's window, from
// its metrics: deltas between two scrapes.
type WriterStats struct {
	Window        time.Duration
	Commits       float64
	Calls         float64
	Writes        float64
	CommitSeconds float64
	BusySeconds   float64
	// GCs is how many garbage collections hppd ran in the window, and GOGC
	// the collection percentage in force at its end (internal/gctune moves
	// it with the live heap), from the Go runtime's series of the same
	// scrapes.
	GCs  float64
	GOGC float64
}

// CallsPerCommit is the group commit's mean batch size.
func (w WriterStats) CallsPerCommit() float64 { return w.Calls / max(w.Commits, 1) }

// WritesPerCommit is the mean pages a commit wrote.
func (w WriterStats) WritesPerCommit() float64 { return w.Writes / max(w.Commits, 1) }

// CommitMS is a commit's mean duration in ms (pages, fdatasyncs, meta).
func (w WriterStats) CommitMS() float64 { return 1000 * w.CommitSeconds / max(w.Commits, 1) }

// WorkMS is the mean time a transaction's functions took before its
// commit, in ms.
func (w WriterStats) WorkMS() float64 {
	return 1000 * (w.BusySeconds - w.CommitSeconds) / max(w.Commits, 1)
}

// Busy is the share of the window the writer spent in write transactions.
func (w WriterStats) Busy() float64 { return w.BusySeconds / max(w.Window.Seconds(), 1e-9) }

// GCsPerSecond is the garbage collections a second in the window.
func (w WriterStats) GCsPerSecond() float64 { return w.GCs / max(w.Window.Seconds(), 1e-9) }

// writerCounters are the metrics' totals at one scrape.
type writerCounters struct {
	at                                     time.Time
	commits, calls, writes, commitS, busyS float64
	gcs, gogc                              float64
}

// scrape GETs url, waiting 5 s at most, and hands the body of its 200
// answer to read; its errors name what was scraped.
func scrape(ctx context.Context, url, what string, read func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scrape %s: %s", what, resp.Status)
	}
	if err := read(resp.Body); err != nil {
		return fmt.Errorf("scrape %s: %w", what, err)
	}
	return nil
}

// scrapeWriter reads the writer's counters from hppd's metrics listener.
func scrapeWriter(ctx context.Context, addr string) (*writerCounters, error) {
	var fams map[string]*dto.MetricFamily
	err := scrape(ctx, "http://"+addr+metrics.Path, "metrics", func(r io.Reader) (err error) {
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err = parser.TextToMetricFamilies(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	c := &writerCounters{at: time.Now()}
	seen := 0
	one := func(name string) *dto.Metric {
		if f := fams[name]; f != nil && len(f.GetMetric()) == 1 {
			seen++
			return f.GetMetric()[0]
		}
		return nil
	}
	if m := one("hppd_store_commit_duration_seconds"); m != nil {
		// Its _count and _sum series.
		c.commits, c.commitS = float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()
		seen++
	}
	for name, v := range map[string]*float64{
		"hppd_store_commit_calls_total":        &c.calls,
		"hppd_store_commit_writes_total":       &c.writes,
		"hppd_store_writer_busy_seconds_total": &c.busyS,
	} {
		if m := one(name); m != nil {
			*v = m.GetCounter().GetValue()
		}
	}
	if seen != 5 {
		return nil, fmt.Errorf("scrape metrics: %d of the 5 store writer series", seen)
	}
	if m := one("go_gc_duration_seconds"); m != nil {
		c.gcs = float64(m.GetSummary().GetSampleCount())
	}
	if m := one("go_gc_gogc_percent"); m != nil {
		c.gogc = m.GetGauge().GetValue()
	}
	return c, nil
}

// writerBetween is the writer's work between two scrapes.
func writerBetween(a, b *writerCounters) *WriterStats {
	if a == nil || b == nil {
		return nil
	}
	return &WriterStats{
		Window:        b.at.Sub(a.at),
		Commits:       b.commits - a.commits,
		Calls:         b.calls - a.calls,
		Writes:        b.writes - a.writes,
		CommitSeconds: b.commitS - a.commitS,
		BusySeconds:   b.busyS - a.busyS,
		GCs:           b.gcs - a.gcs,
		GOGC:          b.gogc,
	}
}

// FloorCommit is the disk's floor at k sessions per commit: tries write
// transactions, each rewriting k random target sessions unchanged.
type FloorCommit struct {
	K      int
	Writes []float64 // pages written per commit
	Work   []float64 // puts per transaction, ms (bbolt's part of the writer's "work")
	MS     []float64 // commit time (pages, fdatasyncs, meta) per commit
}

// CycleMS is the median of the transactions' puts plus commit, ms.
func (f FloorCommit) CycleMS() float64 {
	sums := make([]float64, len(f.MS))
	for i, c := range f.MS {
		if i < len(f.Work) {
			c += f.Work[i]
		}
		sums[i] = c
	}
	return SpreadOf(sums).Median
}

// Rate is the callbacks/s a writer that only wrote these sessions would
// reach: k per median transaction.
func (f FloorCommit) Rate() float64 {
	return float64(f.K) / max(f.CycleMS(), 1e-9) * 1000
}

// floorWarmup is how many transactions MeasureFloor runs untimed first.
const floorWarmup = 10

// MeasureFloor copies the data file seed into dir and, for each k of ks,
// times tries write transactions that each rewrite k distinct random
// sessions of targets unchanged, the way hppd writes a callback's session
// (encoded beforehand, then PutPrepared; fdatasynced as in production).
func MeasureFloor(seed, dir string, targets []Target, ks []int, tries int) ([]FloorCommit, error) {
	path := filepath.Join(dir, "floor.db")
	if err := copyFile(seed, path); err != nil {
		return nil, err
	}
	defer os.Remove(path)
	var last boltstore.CommitInfo
	db, err := boltstore.Open(path, boltstore.Options{OnCommit: func(c boltstore.CommitInfo) { last = c }})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	r := rand.New(rand.NewPCG(7, uint64(len(targets))))
	var out []FloorCommit
	for n, k := range ks {
		k = min(max(k, 1), len(targets))
		f := FloorCommit{K: k}
		// The first transactions on the fresh copy fault its pages into
		// the mapping; hppd's runs had their warm-up too.
		warm := 0
		if n == 0 {
			warm = floorWarmup
		}
		for try := range warm + tries {
			ps := make([]store.PreparedSession, 0, k)
			err := db.View(func(tx store.Tx) error {
				for _, i := range r.Perm(len(targets))[:k] {
					s, v, err := store.ReadSessionVersion(tx, targets[i].ID)
					if err != nil {
						return err
					}
					if v == nil {
						return errors.New("the store prepares no session writes")
					}
					p, err := v.Prepare(s)
					if err != nil {
						return err
					}
					ps = append(ps, p)
				}
				return nil
			})
			if err == nil {
				err = db.Update(func(tx store.Tx) error {
					for _, p := range ps {
						ok, err := store.PutPrepared(tx, p)
						if err != nil {
							return fmt.Errorf("session %s: %w", p.SessionID(), err)
						}
						if !ok {
							return fmt.Errorf("session %s changed between its read and its write", p.SessionID())
						}
					}
					return nil
				})
			}
			if err != nil {
				return nil, fmt.Errorf("floor commit of %d sessions: %w", k, err)
			}
			if try < warm {
				continue
			}
			f.Writes = append(f.Writes, float64(last.Writes))
			f.Work = append(f.Work, ms(last.Work))
			f.MS = append(f.MS, ms(last.Commit))
		}
		out = append(out, f)
	}
	return out, nil
}
