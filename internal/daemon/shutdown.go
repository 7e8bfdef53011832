package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Shutdown is bounded in total by the deadline of Close's context
// (HPPD_SHUTDOWN_TIMEOUT in hppd serve), not per step. It runs in two
// phases:
//
//  1. Grace, until shortly before the deadline: stop accepting, let
//     in-flight requests finish, stop the cron and wait for a running poll,
//     stop the job runner and let running jobs finish. Their Klarna calls
//     and event deliveries get all of this time.
//  2. Abort, for the rest: the contexts of the requests and jobs still
//     running are cancelled, so their Klarna calls and deliveries end; a
//     cancelled job records a failed attempt and runs again after the next
//     start (a place_order job replays its committed bytes and key, so
//     nothing is done twice). Connections that have not delivered a
//     request by then are closed: nothing of hppd's is in flight on them.
//
// What phase 2 cancels and what then ends has stopped cleanly: Close
// returns nil. The grace is one deadline for all the steps of phase 1, so a
// step may find it over when its turn comes (the HTTP server waited to its
// end for a request); what that step stops ran all through the grace, so
// it is cancelled at once, and once it has ended that is no error either
// (poller.Poller.Stop ends a poll run so). Only what still runs at the
// deadline is reported: a request, job or poll run whose wait ignores its
// cancellation.
//
// At the deadline the store is closed whatever still runs. A call that
// ignores cancellation cannot hold the stop: its job was committed before
// the call and is still in the store, due, for the next start, and its
// later write fails against the closed store instead of landing half-done.
// Without a deadline Close waits for everything.
//
// The three listeners (public, metrics, admin socket) stop the same way
// (drain): each is shut down within the grace, in turn. One that ends then,
// or finds the grace already over (an earlier drain used it up) with
// nothing in flight, has stopped cleanly. One that still has connections
// open is left to phase 2, beside the jobs: its unstarted connections are
// closed, the public listener's requests are cancelled (the admin socket's
// were cancelled when its shutdown began; a scrape is bounded by its own
// timeout), and once its connections have ended that is no error either.
// Only a request still running at the deadline is reported.
//
// A connection a client opened and has sent nothing on yet (a client's
// transport may dial one it then does not use, a scraper or the admin CLI
// may hold one) counts for net/http's Shutdown as active until it is 5 s
// old: it would hold phase 1 to the end of the grace and phase 2 to the
// deadline, reported as a request still running. unstartedConns, fed by
// every listener's ConnState hook, closes such connections when phase 2
// begins.

// abortShare is the part of the shutdown budget kept for phase 2, at most
// maxAbortTime: enough for cancelled calls to record their attempts.
const (
	abortShare   = 10
	maxAbortTime = time.Second
)

// graceDeadline is when phase 1 ends for a stop that must be over by
// deadline, started at now.
func graceDeadline(now, deadline time.Time) time.Time {
	return deadline.Add(-min(deadline.Sub(now)/abortShare, maxAbortTime))
}

// requestContext gives the public listener's requests a context that phase
// 2 cancels.
func (m *Main) requestContext() func(net.Listener) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	m.abortRequests = cancel
	return func(net.Listener) context.Context { return ctx }
}

func (m *Main) shutdown(ctx context.Context) error {
	grace, cancelGrace := ctx, context.CancelFunc(func() {})
	if d, ok := ctx.Deadline(); ok {
		grace, cancelGrace = context.WithDeadline(ctx, graceDeadline(time.Now(), d))
	}
	defer cancelGrace()
	var errs []error
	var draining []drainingServer
	for _, sv := range []struct {
		name string
		srv  *http.Server
	}{{"public listener", m.srv}, {"metrics listener", m.metrSrv}, {"admin socket", m.adminSrv}} {
		if sv.srv == nil {
			continue
		}
		if done := drain(sv.srv, grace, ctx); done != nil {
			draining = append(draining, drainingServer{sv.name, done})
		}
	}
	if m.adminSrv != nil {
		_ = os.Remove(m.Config.AdminSocket)
	}
	if m.Poller != nil {
		if err := m.Poller.Stop(grace, ctx); err != nil {
			errs = append(errs, fmt.Errorf("poller stop: %w", err))
		}
	}
	if m.cancel != nil {
		m.cancel()
	}
	waited := make(chan struct{})
	var drainErrs []error // written before waited is closed
	go func() {
		defer close(waited)
		m.wg.Wait()
		for _, d := range draining {
			if err := <-d.done; err != nil {
				drainErrs = append(drainErrs, fmt.Errorf("%s: requests still running at the shutdown deadline: %w", d.name, err))
			}
		}
	}()
	select {
	case <-waited:
		errs = append(errs, drainErrs...)
	case <-grace.Done():
		m.abort()
		select {
		case <-waited:
			errs = append(errs, drainErrs...)
		case <-ctx.Done():
			errs = append(errs, errors.New("requests or jobs still running at the shutdown deadline; the store is closed under them and their jobs run again after the next start"))
		}
	}
	m.leaveReplicas()
	if m.PG != nil {
		if err := m.PG.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
	}
	if m.DB != nil {
		if err := m.DB.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// drain shuts srv down within grace. What srv still has open when the grace
// ends is left to phase 2: drain then returns a channel that receives srv's
// Shutdown error once srv has ended after abort (nil) or at ctx's deadline
// (the deadline's error: a request still running). nil: srv ended within
// the grace, or found it over with nothing in flight.
func drain(srv *http.Server, grace, ctx context.Context) <-chan error {
	if srv.Shutdown(grace) == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		<-grace.Done()
		done <- srv.Shutdown(ctx)
	}()
	return done
}

// drainingServer is a server left to phase 2, by its name in Close's error.
type drainingServer struct {
	name string
	done <-chan error
}

// abort cancels what still runs: the public listener's requests' contexts
// and the jobs' Klarna calls and deliveries; and closes every listener's
// connections that have not delivered a request.
func (m *Main) abort() {
	if m.abortRequests != nil {
		m.abortRequests()
	}
	m.unstarted.closeAll()
	if m.Service != nil {
		m.Service.AbortJobs()
	}
}

// unstartedConns are the connections of hppd's listeners (public, metrics,
// admin) that have not delivered a request yet (http.StateNew). Each
// server's ConnState hook keeps the set; closeAll closes them, and any that
// a hook sees after it.
type unstartedConns struct {
	n      atomic.Int64 // len(conns), read without mu
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (u *unstartedConns) track(c net.Conn, st http.ConnState) {
	if st != http.StateNew && u.n.Load() == 0 {
		return // c is not in the set: a connection's states come in order
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case st != http.StateNew:
		delete(u.conns, c)
	case u.closed:
		c.Close()
	default:
		if u.conns == nil {
			u.conns = map[net.Conn]struct{}{}
		}
		u.conns[c] = struct{}{}
	}
	u.n.Store(int64(len(u.conns)))
}

func (u *unstartedConns) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for c := range u.conns {
		c.Close() // its server goroutine sees the error and ends
	}
	clear(u.conns)
	u.n.Store(0)
}
