package bench

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
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
		if f.Rate() <= 0 || SpreadOf(f.MS).Median <= 0 {
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
