package hpp

import (
	"context"
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

// Run runs due jobs until ctx is done, each lane (see lane) with
// Config.Workers workers of its own. A job is handed to a worker as soon as
// one of its lane is free: the runner looks for due work when Wake is called,
// when a worker finishes, when the next job falls due, and at least every
// second. Run returns after the jobs it started have finished; AbortJobs
// cancels their Klarna calls and deliveries when that must not wait.
func (s *Service) Run(ctx context.Context) {
	var feeds [numLanes]chan string
	done := make(chan struct{})
	for l := range feeds {
		feeds[l] = make(chan string)
		for range s.cfg.Workers {
			s.jobsWG.Add(1)
			go func(l lane, feed <-chan string) {
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

// dispatch hands due jobs to idle workers, earliest first within each lane;
// a lane with no idle worker keeps its due jobs for the next look. It returns
// how many it handed over and when the next job falls due (zero: unknown or
// none), and why the due jobs could not be listed.
func (s *Service) dispatch(feeds *[numLanes]chan string) (n int, next time.Time, err error) {
	var full [numLanes]bool
	nfull := 0
	err = s.db.View(func(tx *store.Tx) error {
		var err error
		next, err = tx.DueJobIDs(s.now(), func(id string) bool {
			l := laneOf(id)
			if full[l] || !s.claim(id) {
				return true
			}
			select {
			case feeds[l] <- id:
				n++
			default:
				s.release(id)
				full[l] = true
				nfull++
			}
			return nfull < int(numLanes)
		})
		return err
	})
	if err != nil {
		return n, time.Time{}, fmt.Errorf("list due jobs: %w", err)
	}
	return n, next, nil
}

// worker runs the jobs of one lane handed to it until the runner stops.
func (s *Service) worker(ctx context.Context, l lane, feed <-chan string, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case id := <-feed:
			s.work(ctx, l, id)
			s.release(id)
			select {
			case s.freed <- struct{}{}:
			default:
			}
		}
	}
}

// work runs one claimed job of lane l. A routine re-read first waits for its
// share of Klarna's budget (Config.RereadRate); a stop while it waits leaves
// the job due, untouched.
func (s *Service) work(ctx context.Context, l lane, id string) {
	jctx := s.jobCtx
	switch l {
	case laneUrgent:
		jctx = klarna.WithPriority(jctx)
	case laneRoutine:
		if s.rereadLim != nil && strings.HasPrefix(id, string(core.JobRereadSession)+"/") {
			if err := s.rereadLim.Wait(ctx); err != nil {
				return
			}
		}
	}
	if err := s.runJob(jctx, id); err != nil {
		s.log.Debug("job will retry", "job_id", id, "err", err)
	}
}

// AbortJobs cancels the Klarna calls and event deliveries of running jobs
// (shutdown past its deadline). A cancelled job is recorded as a failed
// attempt and runs again after a restart; a place_order job replays its
// committed bytes, so nothing is done twice. The Service runs no job after it.
func (s *Service) AbortJobs() { s.abortJobs() }
