package hpp

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/pgtest"
	"github.com/hppd/hppd/store/pgstore"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// countingClaims is a PostgreSQL handle that counts its batch claims.
type countingClaims struct {
	*pgstore.DB
	calls, jobs atomic.Int64
}

func (c *countingClaims) ClaimDueJobsOf(kinds []core.JobKind, except bool, owner string, now time.Time, ttl time.Duration, limit int) ([]*core.Job, time.Time, error) {
	jobs, next, err := c.DB.ClaimDueJobsOf(kinds, except, owner, now, ttl, limit)
	c.calls.Add(1)
	c.jobs.Add(int64(len(jobs)))
	return jobs, next, err
}

// Two runners on two handles on one PostgreSQL database (two replicas)
// take the due jobs with batch claims: disjoint jobs, every order placed
// once, and both runners took a share (the first placements wait at Klarna
// until both runners' workers are busy).
func TestTwoRunnersOnPostgreSQLClaimDisjointJobs(t *testing.T) {
	url := pgtest.DB(t)
	var handles []*countingClaims
	for range 2 {
		db, err := pgstore.Open(context.Background(), url, pgstore.Options{MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		handles = append(handles, &countingClaims{DB: db})
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const n = 40
	for i := range n {
		authorizedWithJob(t, handles[0], fmt.Sprintf("ses_%02d", i), now)
	}
	kl := &countingKlarna{calls: map[string]int{}, hold: make(chan struct{})}
	clock := func() time.Time { return now }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var svcs []*Service
	for i, h := range handles {
		svc := New(h, kl, Config{Owner: fmt.Sprint("own_", i), Workers: 2, Now: clock})
		svcs = append(svcs, svc)
		go func() { svc.Run(ctx); done <- struct{}{} }()
	}
	placed := func() int {
		c := 0
		for i := range n {
			if sessionStatus(t, handles[1], fmt.Sprintf("ses_%02d", i)) == core.SessionOrderPlaced {
				c++
			}
		}
		return c
	}
	calls := func() int {
		kl.mu.Lock()
		defer kl.mu.Unlock()
		c := 0
		for _, k := range kl.calls {
			c += k
		}
		return c
	}
	deadline := time.Now().Add(30 * time.Second)
	for calls() < 4 && time.Now().Before(deadline) {
		for _, svc := range svcs {
			svc.Wake()
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, h := range handles {
		if h.jobs.Load() != 2 {
			t.Errorf("runner %d holds %d jobs, want its 2 workers' worth", i, h.jobs.Load())
		}
	}
	close(kl.hold)
	for placed() < n {
		if time.Now().After(deadline) {
			break
		}
		for _, svc := range svcs {
			svc.Wake()
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	<-done
	if got := placed(); got != n {
		t.Fatalf("%d of %d orders placed", got, n)
	}
	kl.mu.Lock()
	for i := range n {
		tok := fmt.Sprintf("tok-ses_%02d", i)
		if kl.calls[tok] != 1 {
			t.Errorf("%s: %d place-order calls, want 1", tok, kl.calls[tok])
		}
	}
	kl.mu.Unlock()
	var claimed int64
	for _, h := range handles {
		claimed += h.jobs.Load()
	}
	if claimed != n {
		t.Errorf("%d jobs claimed in batches, want %d: each once", claimed, n)
	}
}
