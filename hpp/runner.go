package hpp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
)

// lane is a class of jobs with workers of its own, so no class waits behind
// another:
//
//   - urgent: order placement (an authorization lives 60 minutes), token
//     charge retries, fraud checks and the re-read that confirms what a
//     callback or a redirect claimed (sync_session). Their Klarna calls are
//     marked klarna.WithPriority, so they also go first at the rate limiter;
//   - routine: the poller's re-reads (reread_session), paced by
//     Config.RereadRate, and disables;
//   - events: storefront event delivery, whose endpoints may not answer.
type lane int

const (
	laneUrgent lane = iota
	laneRoutine
	laneEvents
	numLanes
)

// laneOf sorts a job by its id, which starts with its kind ("place_order/…",
// core's and events' job ids all do), so the runner sorts due work from the
// jobs_due keys alone, without reading a job. A sync_session job is a
// confirming re-read; routine re-reads are reread_session jobs (a data file
// written before they existed holds its routine re-reads as sync_session
// jobs: they run once in the urgent lane).
func laneOf(id string) lane {
	kind, _, _ := strings.Cut(id, "/")
	switch core.JobKind(kind) {
	case core.JobRereadSession, core.JobDisableSession:
		return laneRoutine
	case core.JobDeliverEvent:
		return laneEvents
	}
	return laneUrgent
}

// dueClaimer is a store that leases the due jobs of some kinds in one step
// that skips the jobs other claimers are taking (pgstore's FOR UPDATE SKIP
// LOCKED): with it the runner takes each lane's due jobs in one statement,
// and runners on several replicas take disjoint jobs without a due-scan
// they all read and then race on. kinds with except false are the lane's
// kinds, with except true every kind but those; next is when the next job
// of those kinds falls due (zero: none, unknown, or limit taken). Jobs
// returned with an error are leased all the same. A store without it
// (bbolt, one process) is scanned and claimed job by job (claimDue).
type dueClaimer interface {
	ClaimDueJobsOf(kinds []core.JobKind, except bool, owner string, now time.Time, ttl time.Duration, limit int) (jobs []*core.Job, next time.Time, err error)
}

// laneKinds are laneOf's split of job kinds, for a dueClaimer: the urgent
// lane takes every kind the others do not.
var laneKinds = [numLanes]struct {
	kinds  []core.JobKind
	except bool
}{
	laneUrgent:  {[]core.JobKind{core.JobRereadSession, core.JobDisableSession, core.JobDeliverEvent}, true},
	laneRoutine: {[]core.JobKind{core.JobRereadSession, core.JobDisableSession}, false},
	laneEvents:  {[]core.JobKind{core.JobDeliverEvent}, false},
}

// Run runs due jobs until ctx is done, each lane (see lane) with
// Config.Workers workers of its own. A job is handed to a worker as soon as
// one of its lane is free: the runner looks for due work when Wake is called,
// when a worker finishes, when the next job falls due, and at least every
// second. Run returns after the jobs it started have finished; AbortJobs
// cancels their Klarna calls and deliveries when that must not wait.
//
// Who runs a job is decided in the store: the runner leases each job it
// hands to a worker (store.Leases), so another process on the same store,
// or a RunJob in a request, never runs it at the same time, and a job whose
// process died is due again when its lease expires.
func (s *Service) Run(ctx context.Context) {
	var feeds [numLanes]chan *core.Job
	done := make(chan struct{})
	for l := range feeds {
		// Buffered to the lane's workers: dispatch hands over at most as
		// many jobs as the lane has workers free, so a send never waits.
		feeds[l] = make(chan *core.Job, s.cfg.Workers)
		for range s.cfg.Workers {
			s.jobsWG.Add(1)
			go func(l lane, feed <-chan *core.Job) {
				defer s.jobsWG.Done()
				s.worker(ctx, l, feed, done)
			}(lane(l), feeds[l])
		}
	}
	s.lanes.Store(&feeds)
	defer func() {
		s.lanes.Store(nil)
		close(done)
		s.jobsWG.Wait()
		s.releaseQueued(&feeds)
	}()
	fails := 0
	for {
		_, next, err := s.dispatch(&feeds)
		if err != nil {
			// The store cannot list due work: back off (the wake-ups
			// stay pending) rather than try again at every one of them.
			fails++
			wait := core.Backoff(fails, time.Second, maxDispatchBackoff)
			s.log.Error("find due jobs; backing off", "err", err, "failures", fails, "retry_in", wait)
			if !s.sleep(ctx, wait) {
				return
			}
			continue
		}
		if fails > 0 {
			s.log.Info("due jobs found again", "failures", fails)
			fails = 0
		}
		wait := time.Second
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(s.now()), 0))
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.wake:
		case <-s.freed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// maxDispatchBackoff caps the job runner's wait after failed looks for due
// work.
const maxDispatchBackoff = time.Minute

// sleep waits d; false when ctx ended first.
func (s *Service) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// dispatch leases due jobs for the lanes' free workers, earliest first
// within each lane, and hands them over; a lane with no free worker keeps
// its due jobs for the next look. It returns how many it handed over and
// when the next job falls due (zero: unknown or none), and why the due jobs
// could not be listed or leased.
//
// The candidates come from a read transaction (the due index only); the
// leases are taken in one group-committed write that checks each job again
// (still due, nobody's lease in force), so a job another process or request
// took meanwhile is skipped, not run twice. On a store that claims due jobs
// itself (dueClaimer) each lane's jobs are leased in one call instead.
func (s *Service) dispatch(feeds *[numLanes]chan *core.Job) (n int, next time.Time, err error) {
	s.dispatchMu.Lock()
	defer s.dispatchMu.Unlock()
	var free [numLanes]int
	nfree := 0
	for l := range free {
		free[l] = s.cfg.Workers - int(s.busy[l].Load())
		if free[l] > 0 {
			nfree++
		}
	}
	now := s.now()
	if c, ok := s.db.(dueClaimer); ok {
		return s.dispatchClaimed(c, feeds, free, now)
	}
	var ids []string
	err = s.db.View(func(tx store.Tx) error {
		ids = ids[:0]
		want := free
		wanting := nfree
		var err error
		next, err = tx.DueJobIDs(now, func(id string) bool {
			if wanting == 0 {
				return false
			}
			l := laneOf(id)
			if want[l] <= 0 {
				return true
			}
			ids = append(ids, id)
			if want[l]--; want[l] == 0 {
				wanting--
			}
			return wanting > 0
		})
		return err
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("list due jobs: %w", err)
	}
	if len(ids) == 0 {
		return 0, next, nil
	}
	jobs, err := s.claimDue(ids, now)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("lease due jobs: %w", err)
	}
	for _, j := range jobs {
		l := laneOf(j.ID)
		s.busy[l].Add(1)
		feeds[l] <- j
		n++
	}
	return n, next, nil
}

// dispatchClaimed is dispatch on a dueClaimer: each lane with free workers
// leases up to that many of its due jobs in one call.
func (s *Service) dispatchClaimed(c dueClaimer, feeds *[numLanes]chan *core.Job, free [numLanes]int, now time.Time) (n int, next time.Time, err error) {
	for l := range free {
		if free[l] <= 0 {
			continue
		}
		lk := laneKinds[l]
		jobs, nx, err := c.ClaimDueJobsOf(lk.kinds, lk.except, s.cfg.Owner, now, s.cfg.LeaseTTL, free[l])
		for _, j := range jobs {
			s.busy[l].Add(1)
			feeds[l] <- j
			n++
		}
		if err != nil {
			return n, time.Time{}, fmt.Errorf("lease due jobs: %w", err)
		}
		if !nx.IsZero() && (next.IsZero() || nx.Before(next)) {
			next = nx
		}
	}
	return n, next, nil
}

// claimDue leases the jobs ids that are still due at now, in one group
// commit; the ones taken or rescheduled since the scan are left out.
func (s *Service) claimDue(ids []string, now time.Time) ([]*core.Job, error) {
	var jobs []*core.Job
	err := s.db.Batch(func(tx store.Tx) error {
		jobs = jobs[:0]
		for _, id := range ids {
			j, err := tx.ClaimDueJob(id, s.cfg.Owner, now, s.cfg.LeaseTTL)
			switch {
			case err == nil:
				jobs = append(jobs, j)
			case core.IsNotFound(err), errors.Is(err, store.ErrLeaseHeld), errors.Is(err, store.ErrNotDue):
			default:
				return err
			}
		}
		return nil
	})
	return jobs, err
}

// releaseQueued ends the leases of jobs handed over but not started when the
// runner stopped, so they are due again at once, not at the leases' expiry.
func (s *Service) releaseQueued(feeds *[numLanes]chan *core.Job) {
	for l := range feeds {
		for {
			select {
			case j := <-feeds[l]:
				s.busy[l].Add(-1)
				s.releaseJob(j)
				continue
			default:
			}
			break
		}
	}
}

// worker runs the jobs of one lane handed to it until the runner stops.
func (s *Service) worker(ctx context.Context, l lane, feed <-chan *core.Job, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case j := <-feed:
			s.work(ctx, l, j)
			s.busy[l].Add(-1)
			select {
			case s.freed <- struct{}{}:
			default:
			}
		}
	}
}

// work runs one claimed job of lane l. A routine re-read first waits for its
// share of Klarna's budget (Config.RereadRate); a stop while it waits ends
// its lease, leaving the job due as it was.
func (s *Service) work(ctx context.Context, l lane, j *core.Job) {
	jctx := s.jobCtx
	switch l {
	case laneUrgent:
		jctx = klarna.WithPriority(jctx)
	case laneRoutine:
		if s.rereadLim != nil && j.Kind == core.JobRereadSession {
			if err := s.rereadLim.Wait(ctx); err != nil {
				s.releaseJob(j)
				return
			}
		}
	}
	if err := s.runJob(jctx, j); err != nil {
		s.log.Debug("job will retry", "job_id", j.ID, "err", err)
	}
}

// AbortJobs cancels the Klarna calls and event deliveries of running jobs
// (shutdown past its deadline). A cancelled job is recorded as a failed
// attempt and runs again after a restart; a place_order job replays its
// committed bytes, so nothing is done twice. The Service runs no job after it.
func (s *Service) AbortJobs() { s.abortJobs() }
