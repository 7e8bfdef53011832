package poller

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hppd/hppd/store"
)

// waitingService stands for the flows: its RunDue signals that it runs and
// then waits until its context is cancelled, or, when ignoreCancel, until
// release.
type waitingService struct {
	ignoreCancel bool
	entered      chan struct{}
	release      chan struct{}
	returned     chan struct{} // closed when RunDue returns
}

func newWaitingService(ignoreCancel bool) *waitingService {
	return &waitingService{ignoreCancel: ignoreCancel, entered: make(chan struct{}, 1),
		release: make(chan struct{}), returned: make(chan struct{})}
}

func (s *waitingService) ScheduleDue(int) (int, int, error) { return 0, 0, nil }

func (s *waitingService) RunDue(ctx context.Context) int {
	defer close(s.returned)
	s.entered <- struct{}{}
	if s.ignoreCancel {
		<-s.release
	} else {
		<-ctx.Done()
	}
	return 0
}

// startedPoller returns a started poller on svc whose schedule does not
// come due during the test.
func startedPoller(t *testing.T, svc Service) *Poller {
	t.Helper()
	p, err := New(svc, nil, Config{Schedule: "@every 1h"})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	return p
}

// runScheduled starts a run as the cron starts one and waits until it
// waits in RunDue.
func runScheduled(t *testing.T, p *Poller, svc *waitingService) {
	t.Helper()
	go p.scheduled()
	waitEntered(t, svc)
}

func waitEntered(t *testing.T, svc *waitingService) {
	t.Helper()
	select {
	case <-svc.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the poll run did not start")
	}
}

func ended() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// The situation of a shutdown whose other steps spent the grace: Stop is
// called with the grace over while a run waits on something its context
// ends. The run is cancelled at once and returns; that is a clean stop.
func TestStopAfterTheGraceEndsARunThatHonoursItsContext(t *testing.T) {
	svc := newWaitingService(false)
	p := startedPoller(t, svc)
	runScheduled(t, p, svc)

	stopsCleanlyAfterTheRun(t, p, svc)
}

// A run that ignores its cancellation and still runs when the deadline
// ends is reported, and goes on alone.
func TestStopReportsARunThatOutlivesTheDeadline(t *testing.T) {
	svc := newWaitingService(true)
	p := startedPoller(t, svc)
	runScheduled(t, p, svc)

	err := p.Stop(ended(), ended())
	if !errors.Is(err, ErrRunOutlived) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop: %v, want ErrRunOutlived with the deadline's error", err)
	}
	select {
	case <-svc.returned:
		t.Fatal("the run returned before it was released")
	default:
	}
	close(svc.release)
	<-svc.returned
}

// With no run in progress there is nothing to wait for, however late Stop
// comes; and a tick that fires after Stop does not run.
func TestStopWithoutARunIsCleanAndNoRunStartsAfterIt(t *testing.T) {
	svc := newWaitingService(false)
	p := startedPoller(t, svc)

	if err := p.Stop(ended(), ended()); err != nil {
		t.Fatalf("Stop: %v, want nil: no run was in progress", err)
	}
	if p.Scheduled() {
		t.Fatal("the schedule still runs after Stop")
	}
	p.scheduled() // a tick that fired as Stop ran
	select {
	case <-svc.entered:
		t.Fatal("a run started after Stop")
	default:
	}
}

// The cron's ticks are the runs Stop knows: a run the schedule started is
// ended by Stop like the ones above.
func TestStopEndsARunTheScheduleStarted(t *testing.T) {
	svc := newWaitingService(false)
	p, err := New(svc, nil, Config{Schedule: "@every 1s"})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	waitEntered(t, svc)

	stopsCleanlyAfterTheRun(t, p, svc)
}

// stopsCleanlyAfterTheRun stops p with its grace over: the run in progress
// is cancelled, ends, and Stop reports a clean stop only after it returned.
func stopsCleanlyAfterTheRun(t *testing.T, p *Poller, svc *waitingService) {
	t.Helper()
	if err := p.Stop(ended(), context.Background()); err != nil {
		t.Fatalf("Stop: %v, want nil: the run ended when cancelled", err)
	}
	select {
	case <-svc.returned:
	default:
		t.Fatal("Stop returned before the run did")
	}
}

// countingPruner counts its runs.
type countingPruner struct{ runs int }

func (p *countingPruner) Run(time.Time) (store.PruneResult, error) {
	p.runs++
	return store.PruneResult{}, nil
}

// A run cancelled before its pruning step (a shutdown) leaves pruning to the
// next run; a run that was not cancelled prunes.
func TestACancelledRunDoesNotPrune(t *testing.T) {
	pr := &countingPruner{}
	p, err := New(idleService{}, nil, Config{Schedule: "@every 1h", Pruner: pr})
	if err != nil {
		t.Fatal(err)
	}
	p.RunOnce(ended())
	if pr.runs != 0 {
		t.Fatalf("a cancelled run pruned (%d pruner runs)", pr.runs)
	}
	p.RunOnce(context.Background())
	if pr.runs != 1 {
		t.Fatalf("%d pruner runs after a run that was not cancelled, want 1", pr.runs)
	}
}

// idleService has nothing due.
type idleService struct{}

func (idleService) ScheduleDue(int) (int, int, error) { return 0, 0, nil }
func (idleService) RunDue(context.Context) int        { return 0 }
