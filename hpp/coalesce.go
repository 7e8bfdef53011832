package hpp

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultReadEvery is the default of Config.ReadEvery: shopper URLs make
// at most one Klarna read of a session per this much service-clock time.
const DefaultReadEvery = 3 * time.Second

// errReadRecent says that a read an outside request asked for was not made:
// the session was read less than ReadEvery ago. until is when the next one
// may start.
type errReadRecent struct{ until time.Time }

func (e *errReadRecent) Error() string { return "session read less than the coalescing interval ago" }

// readGate coalesces a session's Klarna reads. At most one read of a session
// runs at a time in this process: a read asked for while another runs waits
// for it, then goes on: a read that is not spaced (the poller's, a
// callback's) reads after it; an
// outside request that comes, or is still waiting, less than every after the
// start of the last read (of any kind) does not read at all and gets
// *errReadRecent.
//
// The gate is memory only: after a restart the first outside request reads
// again, which is at most one read per session per start.
type readGate struct {
	mu      sync.Mutex
	calls   map[string]*readCall // session id → the read in flight
	started map[string]time.Time // session id → start of its last read (service clock)
	swept   time.Time
}

type readCall struct {
	done chan struct{}
	err  error
}

// do runs read for session id under the gate. outside marks a read an
// outside request asked for: after waiting for a read in flight it is
// usually inside the interval and gets *errReadRecent, so its caller answers
// from what that read put on file. Waiting ends with ctx.
func (g *readGate) do(ctx context.Context, id string, outside bool, now func() time.Time, every time.Duration, read func() error) error {
	for {
		g.mu.Lock()
		if g.calls == nil {
			g.calls = map[string]*readCall{}
			g.started = map[string]time.Time{}
		}
		if c := g.calls[id]; c != nil {
			g.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		t := now()
		if last, ok := g.started[id]; ok && outside && !t.Before(last) && t.Before(last.Add(every)) {
			g.mu.Unlock()
			return &errReadRecent{until: last.Add(every)}
		}
		c := &readCall{done: make(chan struct{})}
		g.calls[id] = c
		g.started[id] = t
		g.sweep(t, every)
		g.mu.Unlock()

		c.err = read()
		g.mu.Lock()
		delete(g.calls, id)
		g.mu.Unlock()
		close(c.done)
		return c.err
	}
}

// sweep forgets start times older than every, at most once per every, so
// the gate holds only the sessions read in the last interval or two.
func (g *readGate) sweep(now time.Time, every time.Duration) {
	if now.Sub(g.swept) < every && !now.Before(g.swept) {
		return
	}
	g.swept = now
	for id, t := range g.started {
		if now.Sub(t) >= every || now.Before(t) {
			delete(g.started, id)
		}
	}
}

// recentUntil returns when the next outside read may start, if err is an
// *errReadRecent.
func recentUntil(err error) (time.Time, bool) {
	var r *errReadRecent
	if errors.As(err, &r) {
		return r.until, true
	}
	return time.Time{}, false
}
