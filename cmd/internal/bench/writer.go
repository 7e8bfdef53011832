package bench

import (
	"context"
	"fmt"
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
// random sessions of this file per commit, whatever it does besides: on a
// copy of the data file, commits that rewrite k random target sessions
// unchanged (no callback applied, no event marked, nothing but the leaves
// that hold them and the branch pages above) are timed. k callbacks per such
// commit are then the most the disk lets through: k ÷ its commit time, at
// the batch size hppd's runs had and at one callback per connection (the
// largest batch the load can make).

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

// scrapeWriter reads the writer's counters from hppd's metrics listener.
func scrapeWriter(ctx context.Context, addr string) (*writerCounters, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+metrics.Path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
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

// FloorCommit is the disk's floor at k sessions per commit: tries commits,
// each rewriting k random target sessions unchanged.
type FloorCommit struct {
	K      int
	Writes []float64 // pages written per commit
	MS     []float64 // commit time (pages, fdatasyncs, meta) per commit
}

// Rate is the callbacks/s a writer that only committed these pages would
// reach: k per median commit.
func (f FloorCommit) Rate() float64 {
	return float64(f.K) / max(SpreadOf(f.MS).Median, 1e-9) * 1000
}

// MeasureFloor copies the data file seed into dir and, for each k of ks,
// times tries commits that each rewrite k distinct random sessions of
// targets unchanged, the way the store writes a session (PutSessionKeepDue,
// fdatasynced as in production).
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
	for _, k := range ks {
		k = min(max(k, 1), len(targets))
		f := FloorCommit{K: k}
		for range tries {
			ids := make([]string, 0, k)
			for _, i := range r.Perm(len(targets))[:k] {
				ids = append(ids, targets[i].ID)
			}
			err := db.Update(func(tx store.Tx) error {
				for _, id := range ids {
					s, err := tx.Session(id)
					if err != nil {
						return err
					}
					if err := store.PutSessionKeepDue(tx, s); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("floor commit of %d sessions: %w", k, err)
			}
			f.Writes = append(f.Writes, float64(last.Writes))
			f.MS = append(f.MS, ms(last.Commit))
		}
		out = append(out, f)
	}
	return out, nil
}
