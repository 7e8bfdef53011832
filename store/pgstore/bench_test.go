package pgstore_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/pgtest"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/pgstore"
	"github.com/hppd/hppd/store/storetest"
)

// BenchmarkCallback is the store's share of a status_update callback on
// PostgreSQL, as boltstore's BenchmarkCallback measures it on bbolt: a View
// reading the session, then one Batch that de-duplicates the event, marks
// it, reads the session, applies the observation and writes the session and
// its jobs; 128 callers at once. handles > 1 splits the callers over that
// many pools, standing for replicas on one database. Run with
// HPPD_PGTEST_FSYNC=on for durable commits (the throwaway cluster runs
// without fsync otherwise).
func BenchmarkCallback(b *testing.B) {
	for _, handles := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d", handles), func(b *testing.B) { benchCallback(b, handles) })
	}
}

func benchCallback(b *testing.B, handles int) {
	url := pgtest.DB(b)
	var dbs []*pgstore.DB
	for range handles {
		dbs = append(dbs, open(b, url))
	}
	const n = 5000
	var sessions []*core.Session
	err := dbs[0].Update(func(tx store.Tx) error {
		sessions = sessions[:0]
		for i := range n {
			id := fmt.Sprintf("ses_%05d", i)
			s := &core.Session{ID: id, Storefront: fmt.Sprint("shop-", i%5), Integration: core.IntegrationHPP,
				PlaceOrderMode: core.ModeNone, Status: core.SessionPending, HPPSessionID: "hpp-" + id, KPSessionID: "kp-" + id,
				SecretHash: make([]byte, 32), CreatedAt: t0, UpdatedAt: t0, ExpiresAt: t0.Add(47 * time.Hour), CheckAt: t0.Add(time.Minute),
				Purchase: core.Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 10000,
					OrderLines: []core.OrderLine{{Name: "Cup", Quantity: 2, UnitPrice: 5000, TotalAmount: 10000}}}}
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
	statuses := []string{core.KlarnaInProgress, core.KlarnaBack, core.KlarnaFailed, core.KlarnaInProgress}
	var seq atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(64) // 128 callers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			i := seq.Add(1)
			db := dbs[int(i)%handles]
			s := sessions[i%n]
			event := uuid.NewString()
			now := t0.Add(time.Duration(i) * time.Millisecond)
			obs := core.Observation{Source: core.SourceCallback, KlarnaStatus: statuses[(i/n)%4], KlarnaUpdatedAt: now}
			start := time.Now()
			err := db.View(func(tx store.Tx) error {
				_, err := tx.Session(s.ID)
				return err
			})
			if err == nil {
				err = db.Batch(func(tx store.Tx) error {
					_, err := storetest.ApplyCallback(tx, s.ID, s.HPPSessionID, event, obs, now)
					return err
				})
			}
			if err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "callbacks/s")
	var retries int64
	for _, db := range dbs {
		retries += db.Retries()
	}
	b.ReportMetric(float64(retries)/float64(b.N), "retries/op")
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
