package bench

import (
	"context"
	"crypto/sha256"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/metrics"
)

// The writer's figures are the deltas of hppd's store series between two
// scrapes of its metrics listener.
func TestScrapeWriterTakesTheStoreSeries(t *testing.T) {
	x := metrics.New("test")
	srv := httptest.NewServer(x.Handler())
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	x.ObserveCommit(3, time.Millisecond, 2*time.Millisecond, 9)
	a, err := scrapeWriter(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	x.ObserveCommit(20, time.Millisecond, 3*time.Millisecond, 60)
	x.ObserveCommit(30, 2*time.Millisecond, 5*time.Millisecond, 80)
	// The Go runtime's series of the same process: two collections, and a
	// collection percentage set in between.
	defer debug.SetGCPercent(debug.SetGCPercent(170))
	runtime.GC()
	runtime.GC()
	b, err := scrapeWriter(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	w := writerBetween(a, b)
	if w.Commits != 2 || w.Calls != 50 || w.Writes != 140 {
		t.Fatalf("between the scrapes: %+v, want 2 commits, 50 calls, 140 pages", w)
	}
	if got := w.CommitMS(); got < 3.99 || got > 4.01 {
		t.Errorf("mean commit %.3f ms, want 4", got)
	}
	if got := w.WorkMS(); got < 1.49 || got > 1.51 {
		t.Errorf("mean work %.3f ms, want 1.5", got)
	}
	if w.CallsPerCommit() != 25 || w.WritesPerCommit() != 70 {
		t.Errorf("per commit: %.1f calls, %.1f pages, want 25 and 70", w.CallsPerCommit(), w.WritesPerCommit())
	}
	if w.GCs < 2 || w.GOGC != 170 {
		t.Errorf("%v garbage collections, GOGC %v; want 2 or more, and 170", w.GCs, w.GOGC)
	}
	if w.Window <= 0 || w.Busy() <= 0 {
		t.Errorf("window %v, busy %v", w.Window, w.Busy())
	}

	// A daemon without the series (on PostgreSQL, or before they existed)
	// is an error, not zeros.
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("up 1\n")) }))
	defer empty.Close()
	if _, err := scrapeWriter(context.Background(), strings.TrimPrefix(empty.URL, "http://")); err == nil || !strings.Contains(err.Error(), "0 of the 5") {
		t.Fatalf("scrape without the series: %v", err)
	}
}

// The floor's commits rewrite k random target sessions and nothing else:
// more sessions, more leaves; the sessions read back unchanged.
func TestMeasureFloor(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.db")
	targets, err := BuildFile(seed, callbackPlan(3000, 1000))
	if err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, seed)
	floor, err := MeasureFloor(seed, dir, targets, []int{2, 200}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(floor) != 2 || floor[0].K != 2 || floor[1].K != 200 || len(floor[0].MS) != 3 || len(floor[1].Writes) != 3 {
		t.Fatalf("floor: %+v", floor)
	}
	few, many := SpreadOf(floor[0].Writes).Median, SpreadOf(floor[1].Writes).Median
	// Two sessions: their leaves, the branch above, the bucket roots, meta.
	if few < 3 || many < few+50 {
		t.Fatalf("2 sessions per commit wrote %v pages, 200 wrote %v: want a leaf per session for scattered ones", few, many)
	}
	for _, f := range floor {
		if f.Rate() <= 0 || SpreadOf(f.MS).Median <= 0 || len(f.Work) != 3 || SpreadOf(f.Work).Median <= 0 || f.CycleMS() <= SpreadOf(f.MS).Median {
			t.Fatalf("floor at k = %d: %+v, rate %v", f.K, f, f.Rate())
		}
	}
	// The seed itself is untouched: the floor writes a copy, and removes it.
	if fileSum(t, seed) != before {
		t.Fatal("the floor changed the data file it measures on")
	}
	if _, err := os.Stat(filepath.Join(dir, "floor.db")); !os.IsNotExist(err) {
		t.Fatalf("the floor's copy was left: %v", err)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// A floor under the targets says that no writer reaches them on this disk,
// and names the batch a writer that never waits can have.
func TestFloorAnalysisBelowTheTargets(t *testing.T) {
	cb := &CallbackResult{Config: CallbackConfig{Conns: 64}, Floor: []FloorCommit{
		{K: 28, Writes: []float64{71, 73}, Work: []float64{0.4, 0.5}, MS: []float64{2.6, 2.8}},
		{K: 32, Writes: []float64{80}, Work: []float64{0.45}, MS: []float64{2.95}},
		{K: 64, Writes: []float64{143}, Work: []float64{0.8}, MS: []float64{4.9}},
	}}
	if got := cb.Floor[0].CycleMS(); got < 3.0 || got > 3.3 {
		t.Fatalf("cycle of the floor at 28: %v ms, want the median of puts + commit (3.0 or 3.3)", got)
	}
	out := floorAnalysis(&Results{Machine: Machine{Cores: 2}}, cb, 8000, 40000, 28, 73, 0.45, 2.9)
	for _, want := range []string{"hppd reached", "At 32 per transaction the floor is 9412/s",
		"no writer that keeps the sessions in this B+tree and does not wait reaches 10000/s with 64 connections",
		"the floor's best, 11228/s at 64 per transaction, is 0.28", "out of reach for any durable store"} {
		if !strings.Contains(out, want) {
			t.Errorf("analysis lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "queues for a core") {
		t.Errorf("commits slower than the floor's are not put down to the shared cores:\n%s", out)
	}
	// Commits as fast as the floor's are not put down to the cores.
	if out := floorAnalysis(&Results{Machine: Machine{Cores: 2}}, cb, 8000, 40000, 28, 73, 0.45, 2.6); strings.Contains(out, "queues for a core") || !strings.Contains(out, "no slower than the floor's") {
		t.Errorf("analysis with commits at the floor's speed:\n%s", out)
	}
}

// The floor is measured at hppd's batch, half the connections and all of
// them, each once.
func TestFloorSizes(t *testing.T) {
	ws := []WriterStats{{Commits: 10, Calls: 283}}
	for _, c := range []struct {
		ws   []WriterStats
		want []int
	}{{ws, []int{28, 32, 64}}, {nil, []int{32, 64}}, {[]WriterStats{{Commits: 10, Calls: 320}}, []int{32, 64}}} {
		if got := floorSizes(c.ws, 64); !slices.Equal(got, c.want) {
			t.Errorf("floorSizes(%v, 64) = %v, want %v", c.ws, got, c.want)
		}
	}
}

// The floors measured after each run add up size by size, and each run's
// share is against its own floor, not the others'.
func TestMergeFloorsAndShares(t *testing.T) {
	a := []FloorCommit{{K: 28, Writes: []float64{70}, Work: []float64{0.2}, MS: []float64{2.6}}, {K: 32, Writes: []float64{80}, Work: []float64{0.3}, MS: []float64{2.9}}}
	b := []FloorCommit{{K: 28, Writes: []float64{72}, Work: []float64{0.3}, MS: []float64{3.2}}, {K: 32, Writes: []float64{81}, Work: []float64{0.3}, MS: []float64{3.5}}}
	all := mergeFloors(nil, a)
	all = mergeFloors(all, b)
	if len(all) != 2 || len(all[0].MS) != 2 || len(all[1].Work) != 2 || all[1].MS[1] != 3.5 {
		t.Fatalf("merged: %+v", all)
	}
	if len(a[0].MS) != 1 || a[0].MS[0] != 2.6 {
		t.Fatalf("merging changed the first run's floor: %+v", a)
	}
	cb := &CallbackResult{Runs: []CallbackRun{
		{HPPD: &LoadResult{OK: 7000, Elapsed: time.Second}, Floor: a},
		{HPPD: &LoadResult{OK: 7000, Elapsed: time.Second}, Floor: b},
		{HPPD: &LoadResult{OK: 7000, Elapsed: time.Second}},
	}}
	sh := cb.FloorShares()
	if len(sh) != 2 || math.Abs(sh[0]-100*7000/a[0].Rate()) > 1e-9 || math.Abs(sh[1]-100*7000/b[0].Rate()) > 1e-9 || sh[1] <= sh[0] {
		t.Fatalf("shares %v, want 7000 over each run's own floor in percent (%v, %v)", sh, a[0].Rate(), b[0].Rate())
	}
}
