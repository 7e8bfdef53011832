package daemon

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// connLimiter caps the public listener's open connections
// (HPPD_MAX_CONNECTIONS) without letting the connections that hold the
// slots starve the ones that come next.
//
// A plain cap (netutil.LimitListener) stops accepting at the cap: new
// connections wait in the kernel's backlog until a held one closes. Held by
// outsiders who trickle headers or sit idle on keep-alive, a slot frees
// only when HPPD_READ_HEADER_TIMEOUT or HPPD_IDLE_TIMEOUT ends one, so a
// genuine callback waited seconds behind them (benchmark 6 measured 4 s
// with the cap at half the outsiders). Here, at the cap, hppd still accepts
// and makes room by closing the connection that has waited longest for a
// request: one that has not finished its first request's headers (state
// new), or sits between requests (idle, which includes trickling the next
// request's headers). Such a connection has nothing of hppd's in flight, and
// net/http closes idle connections the same way at shutdown. Only when
// every open connection is inside a request (a handler runs, bounded by the
// server's read and write timeouts) does Accept wait, as before, for one to
// end.
//
// The http.Server's ConnState hook calls track, so the limiter knows which
// connections wait for a request and since when.
type connLimiter struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[net.Conn]*connSlot // by the *limitedConn Accept returned
	// waiting holds the slots of connections without a request in
	// progress, longest waiting first: the next to be closed at the cap is
	// its front, found without a scan while an outsider floods the cap.
	waiting *list.List
	// freed wakes an Accept waiting at the cap: a connection closed, or one
	// started waiting for a request and may be shed.
	freed chan struct{}
	done  chan struct{}
	once  sync.Once

	peak, shed atomic.Int64
}

// connSlot is an open connection's place under the cap.
type connSlot struct {
	c *limitedConn
	// inWaiting is the slot's element of connLimiter.waiting while the
	// connection has no request in progress (http.StateNew or
	// http.StateIdle), nil while it is in one.
	inWaiting *list.Element
}

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: ln, max: max, conns: map[net.Conn]*connSlot{}, waiting: list.New(),
		freed: make(chan struct{}, 1), done: make(chan struct{})}
}

// Accept takes the next connection. At the cap it first closes the open
// connection that has waited longest for a request; when every open
// connection is in a request, it waits for a slot.
func (l *connLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		l.mu.Lock()
		if len(l.conns) < l.max {
			lc := &limitedConn{Conn: c, l: l}
			slot := &connSlot{c: lc}
			slot.inWaiting = l.waiting.PushBack(slot)
			l.conns[lc] = slot
			if n := int64(len(l.conns)); n > l.peak.Load() {
				l.peak.Store(n)
			}
			l.mu.Unlock()
			return lc, nil
		}
		var victim *connSlot
		if front := l.waiting.Front(); front != nil {
			victim = front.Value.(*connSlot)
			l.forget(victim)
		}
		l.mu.Unlock()
		if victim != nil {
			l.shed.Add(1)
			victim.c.Conn.Close() // its server goroutine sees the error and ends
			continue
		}
		select {
		case <-l.freed:
		case <-l.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

// forget frees a slot. Called with mu held.
func (l *connLimiter) forget(s *connSlot) {
	if s.inWaiting != nil {
		l.waiting.Remove(s.inWaiting)
		s.inWaiting = nil
	}
	delete(l.conns, s.c)
}

// Close stops accepting, also an Accept waiting at the cap.
func (l *connLimiter) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// track is the server's ConnState hook: it records whether a connection
// waits for a request, and forgets it once closed.
func (l *connLimiter) track(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	switch st {
	case http.StateClosed, http.StateHijacked:
		lc.release()
		return
	}
	waiting := st == http.StateNew || st == http.StateIdle
	l.mu.Lock()
	s, ok := l.conns[lc]
	switch {
	case !ok:
	case waiting && s.inWaiting == nil:
		s.inWaiting = l.waiting.PushBack(s)
	case !waiting && s.inWaiting != nil:
		l.waiting.Remove(s.inWaiting)
		s.inWaiting = nil
	}
	l.mu.Unlock()
	if ok && waiting {
		l.wake()
	}
}

func (l *connLimiter) wake() {
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

// Connections reports the open connections, the most there have been at
// once, and how many were closed to make room.
func (l *connLimiter) Connections() (open, peak, shed int64) {
	l.mu.Lock()
	n := int64(len(l.conns))
	l.mu.Unlock()
	return n, l.peak.Load(), l.shed.Load()
}

// limitedConn frees its slot when closed.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

func (c *limitedConn) release() {
	c.once.Do(func() {
		c.l.mu.Lock()
		if s, ok := c.l.conns[c]; ok {
			c.l.forget(s)
		}
		c.l.mu.Unlock()
		c.l.wake()
	})
}
