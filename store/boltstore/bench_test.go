package boltstore

import (
	"fmt"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/storetest"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hppd/hppd/core"
	bolt "go.etcd.io/bbolt"
)

// lifecycle takes a realistic session through what a paid purchase sees: a
// callback hint, an authoritative read that authorizes it, the order placed.
func lifecycle(s *core.Session, at time.Time) {
	p := core.DefaultPolicy
	at = at.Add(time.Duration(at.UnixNano() % 1e9))
	s.Observe(core.Observation{Source: core.SourceCallback, KlarnaStatus: core.KlarnaInProgress, KlarnaUpdatedAt: at}, at, p)
	at = at.Add(90*time.Second + 123456789)
	s.Observe(core.Observation{Source: core.SourcePoller, Authoritative: true, KlarnaStatus: core.KlarnaCompleted, KlarnaUpdatedAt: at, AuthorizationToken: uuid.NewString()}, at, p)
	s.OrderPlaced(uuid.NewString(), "ACCEPTED", at.Add(2*time.Second+987654321))
}

// Bytes on disk per session stay under 2 KiB: paid sessions with their full
// history and two de-duplicated callback events each (not yet pruned),
// written in group-commit-sized transactions. The measure is the pages in
// use: the file up to its last page, less the pages bbolt freed in the last
// commits and will reuse (a fixed working set, whatever the file's size; the
// big file of BenchmarkSessionsDue reports the whole file's size).
func TestBytesPerSession(t *testing.T) {
	db := openTest(t)
	r := rand.New(rand.NewPCG(9, 9))
	n, perTx := 5000, 100
	if raceEnabled {
		n = 1000
	}
	for batch := 0; batch < n/perTx; batch++ {
		mustUpdate(t, db, func(tx *Tx) error {
			for i := 0; i < perTx; i++ {
				at := t0.Add(time.Duration(batch*perTx+i) * time.Second)
				s := realisticSession(r, fmt.Sprint("shop-", r.IntN(5)), at)
				lifecycle(s, at.Add(time.Minute))
				if err := tx.PutSession(s); err != nil {
					return err
				}
				for _, ev := range []string{uuid.NewString(), uuid.NewString()} {
					if err := tx.MarkEvent(s.HPPSessionID, ev, at); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	var size int64
	mustView(t, db, func(tx *Tx) error { size = tx.tx.Size(); return nil })
	st := db.bolt.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * int64(db.bolt.Info().PageSize)
	per := float64(size-free) / float64(n)
	t.Logf("%d sessions: %d bytes up to the last page, %d of them free: %.0f B/session", n, size, free, per)
	if per >= 2048 {
		t.Errorf("%.0f bytes per session, want under 2048", per)
	}
}

// The big file of the benchmarks: built once per test binary run.
var big struct {
	once     sync.Once
	dir      string
	path     string
	now      time.Time
	sessions int
	due      int
	err      error
}

func cleanupBenchFiles() {
	if big.dir != "" {
		_ = os.RemoveAll(big.dir)
	}
}

// bigFile returns a file of 1,000,000 sessions of which 1% (10,000) are due:
// 94% paid (CheckAt zero), 5% pending and watched later, 1% pending and due,
// each with two callback events.
func bigFile(b *testing.B) (string, time.Time, int) {
	big.once.Do(func() {
		big.sessions, big.due = 1_000_000, 10_000
		big.dir, big.err = os.MkdirTemp("", "hppd-store-bench-")
		if big.err != nil {
			return
		}
		big.path = filepath.Join(big.dir, "hppd.db")
		big.now = t0.Add(30 * 24 * time.Hour)
		db, err := Open(big.path, Options{NoSync: true})
		if err != nil {
			big.err = err
			return
		}
		defer db.Close()
		r := rand.New(rand.NewPCG(1, 1))
		start := time.Now()
		const per = 10_000
		for done := 0; done < big.sessions && big.err == nil; done += per {
			big.err = db.update(func(tx *Tx) error {
				for i := done; i < done+per; i++ {
					created := big.now.Add(-time.Duration(big.sessions-i) * time.Second)
					s := realisticSession(r, fmt.Sprint("shop-", r.IntN(20)), created)
					switch {
					case i%100 == 0: // due
						s.CheckAt = big.now.Add(-time.Duration(r.IntN(3600)) * time.Second)
					case i%100 < 6: // watched later
						s.CheckAt = big.now.Add(time.Duration(1+r.IntN(3600)) * time.Second)
					default:
						lifecycle(s, created.Add(time.Minute))
					}
					if err := tx.PutSession(s); err != nil {
						return err
					}
					for _, ev := range []string{uuid.NewString(), uuid.NewString()} {
						if err := tx.MarkEvent(s.HPPSessionID, ev, created); err != nil {
							return err
						}
					}
				}
				return nil
			})
		}
		fmt.Fprintf(os.Stderr, "built %d sessions in %v\n", big.sessions, time.Since(start).Round(time.Second))
		if big.err == nil {
			big.err = db.bolt.View(func(btx *bolt.Tx) error {
				st := db.bolt.Stats()
				fmt.Fprintf(os.Stderr, "%d bytes up to the last page, %d free pages\n", btx.Size(), st.FreePageN+st.PendingPageN)
				return btx.ForEach(func(name []byte, bk *bolt.Bucket) error {
					bs := bk.Stats()
					fmt.Fprintf(os.Stderr, "  %-24s %9d keys %12d bytes\n", name, bs.KeyN, bs.LeafAlloc+bs.BranchAlloc)
					return nil
				})
			})
		}
	})
	if big.err != nil {
		b.Fatalf("build big file: %v", big.err)
	}
	return big.path, big.now, big.due
}

// BenchmarkSessionsDue finds the 10,000 due sessions of 1,000,000.
func BenchmarkSessionsDue(b *testing.B) {
	path, now, due := bigFile(b)
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		err := db.view(func(tx *Tx) error {
			ids, err := tx.SessionsDue(now, 0)
			if err == nil && len(ids) != due {
				err = fmt.Errorf("%d due, want %d", len(ids), due)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(fi.Size())/float64(big.sessions), "file-B/session")
}

// BenchmarkOpen opens (and closes) the 1,000,000-session file: hppd's
// start-up cost in the store.
func BenchmarkOpen(b *testing.B) {
	path, _, _ := bigFile(b)
	for b.Loop() {
		db, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCounts reads the counters of the 1,000,000-session file.
func BenchmarkCounts(b *testing.B) {
	path, _, _ := bigFile(b)
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for b.Loop() {
		err := db.view(func(tx *Tx) error {
			s, _, _, err := tx.Counts()
			if err == nil && s[core.SessionOrderPlaced]+s[core.SessionPending] != big.sessions {
				err = fmt.Errorf("counts %v", s)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatchPutSession inserts new sessions through group commit from
// many goroutines, with fsync (as hppd runs).
func BenchmarkBatchPutSession(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "hppd.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var seed atomic.Uint64
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seed.Add(1), 1))
		for pb.Next() {
			s := realisticSession(r, "shop", t0)
			if err := db.Batch(func(tx store.Tx) error { return tx.PutSession(s) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sessions/s")
}

// BenchmarkCallback is the store's share of a status_update callback, with
// fsync, from many concurrent requests, the way hpp.HandleCallback does it:
// read the session in a View (to check the secret) and prepare its new value
// there (store.SessionVersions), then in one Batch de-duplicate the event,
// mark it and write the prepared value (or, when the session changed since
// the View, read it again, apply the observation and write it), with its
// index entries and jobs.
func BenchmarkCallback(b *testing.B) { benchCallback(b, Options{}, true) }

func benchCallback(b *testing.B, opts Options, prepare bool) {
	db, err := Open(filepath.Join(b.TempDir(), "hppd.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const n = 20_000
	r := rand.New(rand.NewPCG(2, 2))
	var sessions []*core.Session
	for done := 0; done < n; done += 5000 {
		err := db.update(func(tx *Tx) error {
			for i := 0; i < 5000; i++ {
				s := realisticSession(r, fmt.Sprint("shop-", r.IntN(5)), t0)
				sessions = append(sessions, s)
				if err := tx.PutSession(s); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	statuses := []string{core.KlarnaInProgress, core.KlarnaBack, core.KlarnaFailed, core.KlarnaInProgress}
	var seq, prepared atomic.Int64
	st0, commits0 := db.bolt.Stats(), db.Commits()
	// 256 callbacks in flight on 2 cores: at 10,000/s each may take 25 ms.
	b.SetParallelism(128)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			s := sessions[i%n]
			event := uuid.NewString()
			now := t0.Add(time.Duration(i) * time.Millisecond)
			obs := core.Observation{Source: core.SourceCallback, KlarnaStatus: statuses[(i/n)%4], KlarnaUpdatedAt: now}
			var prep store.PreparedSession
			var err error
			if prepare {
				prep, err = storetest.PrepareCallback(db, s.ID, obs, now)
			} else {
				err = db.view(func(tx *Tx) error {
					_, err := tx.Session(s.ID)
					return err
				})
			}
			if err != nil {
				b.Error(err)
				return
			}
			if prep != nil {
				prepared.Add(1)
			}
			var dup bool
			err = db.Batch(func(tx store.Tx) error {
				var err error
				dup, err = storetest.ApplyPreparedCallback(tx, s.ID, s.HPPSessionID, event, obs, now, prep)
				return err
			})
			if err != nil || dup {
				b.Errorf("callback: %v (dup %v)", err, dup)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "callbacks/s")
	b.ReportMetric(float64(prepared.Load())/float64(b.N), "prepared/op")
	// Callbacks per commit: the writer's commit cost is shared by a batch.
	b.ReportMetric(float64(b.N)/float64(db.Commits()-commits0), "callbacks/commit")
	st := db.bolt.Stats()
	d := st.Sub(&st0)
	// Pages written per callback: the disk's share of the cost.
	b.ReportMetric(float64(d.TxStats.GetPageAlloc())/float64(b.N), "page-B/op")
}

// BenchmarkCallbackNoSync is BenchmarkCallback without fsync: the CPU cost of
// the store's work, which bounds throughput when the disk is fast.
func BenchmarkCallbackNoSync(b *testing.B) { benchCallback(b, Options{NoSync: true}, true) }

// BenchmarkCallbackNoSyncUnprepared is BenchmarkCallbackNoSync with every
// session read, changed and encoded inside the Batch, on the writer: what
// the prepared writes save.
func BenchmarkCallbackNoSyncUnprepared(b *testing.B) {
	benchCallback(b, Options{NoSync: true}, false)
}
