package klarnasim

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// CallbackRecord is one status_update callback attempt (or a dropped event).
type CallbackRecord struct {
	Time      time.Time `json:"time"`
	URL       string    `json:"url"` // without the query string
	EventID   string    `json:"event_id"`
	SessionID string    `json:"session_id"`
	Status    string    `json:"status"`
	Attempt   int       `json:"attempt"` // 0 = first call, 1.. = retries
	Duplicate bool      `json:"duplicate,omitempty"`
	Dropped   bool      `json:"dropped,omitempty"`
	// HTTPStatus is the receiver's answer (0 when there was none).
	HTTPStatus int `json:"http_status,omitempty"`
	// Error is why no answer came ("timeout", a connection error).
	Error string `json:"error,omitempty"`

	// Kind is the merchant URL called: status_update (default), authorization
	// or notification (then SessionID is the KP session or the order id).
	Kind string `json:"kind,omitempty"`
}

// callbackEvent is one delivery of one event.
type callbackEvent struct {
	url       string
	sessionID string
	eventID   string
	status    string
	body      []byte
	duplicate bool
	delay     time.Duration
	reorder   bool
	window    time.Duration
	kind      string // "" is status_update
}

// dispatcher delivers callbacks. Each HPP session has a queue served by
// one goroutine while it is non-empty, so first attempts go out in order;
// retries and delayed events run in goroutines of their own. Every
// goroutine is counted in wg (for Close) and every queued event in pending
// (for WaitCallbacks).
type dispatcher struct {
	s      *Sim
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	queues  map[string][]*callbackEvent
	running map[string]bool
	wake    map[string]chan struct{}
	records []CallbackRecord
	pending int
	idle    chan struct{} // closed while pending == 0
}

func newDispatcher(s *Sim) *dispatcher {
	ctx, cancel := context.WithCancel(context.Background())
	idle := make(chan struct{})
	close(idle)
	return &dispatcher{
		s:       s,
		ctx:     ctx,
		cancel:  cancel,
		queues:  make(map[string][]*callbackEvent),
		running: make(map[string]bool),
		wake:    make(map[string]chan struct{}),
		idle:    idle,
	}
}

// callbackFaults returns the callback faults. Caller holds s.mu.
func (s *Sim) callbackFaults() CallbackFaults {
	if s.faults.Callbacks == nil {
		return CallbackFaults{}
	}
	return *s.faults.Callbacks
}

// enqueue rolls the callback fault dice for ev and queues its deliveries.
// It is called with s.mu held, so events are queued in status order.
func (d *dispatcher) enqueue(f CallbackFaults, ev callbackEvent) {
	s := d.s
	if !f.applies(ev.kind) {
		f = CallbackFaults{}
	}
	if s.roll(f.DropRate) {
		d.mu.Lock()
		d.records = append(d.records, CallbackRecord{
			Time: s.Now(), URL: safeURL(ev.url), EventID: ev.eventID,
			SessionID: ev.sessionID, Status: ev.status, Kind: ev.kind, Dropped: true,
		})
		d.mu.Unlock()
		s.log.Debug("callback dropped by fault", "hpp_session_id", ev.sessionID, "event_id", ev.eventID)
		return
	}
	if s.roll(f.DelayRate) {
		ev.delay = time.Duration(f.Delay)
	}
	if s.roll(f.ReorderRate) {
		ev.reorder = true
		ev.window = time.Duration(f.ReorderWindow)
		if ev.window <= 0 {
			ev.window = time.Second
		}
	}
	statusUpdate := ev.kind == "" || ev.kind == CallbackStatusUpdate
	if statusUpdate && s.roll(f.UnknownStatusRate) {
		ev.status = cmp.Or(f.UnknownStatus, "PENDING_CONFIRMATION")
		ev.body = withStatus(ev.body, ev.status)
	}
	events := []*callbackEvent{&ev}
	if statusUpdate && s.roll(f.EmptyBodyRate) {
		empty := ev
		empty.body, empty.duplicate, empty.reorder, empty.delay = nil, true, false, 0
		events = append(events, &empty)
	}
	if s.roll(f.DuplicateRate) {
		n := 1 + s.intn(max(f.MaxDuplicates, 1))
		for range n {
			dup := ev
			dup.duplicate, dup.reorder, dup.delay = true, false, 0
			events = append(events, &dup)
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if d.pending == 0 {
		d.idle = make(chan struct{})
	}
	d.pending += len(events)
	d.queues[ev.sessionID] = append(d.queues[ev.sessionID], events...)
	if w := d.wake[ev.sessionID]; w != nil {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	if !d.running[ev.sessionID] {
		d.running[ev.sessionID] = true
		d.wg.Add(1)
		go d.serve(ev.sessionID)
	}
}

// withStatus rewrites session.status of an encoded callback body.
func withStatus(body []byte, status string) []byte {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	sess, _ := m["session"].(map[string]any)
	if sess == nil {
		return body
	}
	sess["status"] = status
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

// doneLocked marks n events delivered or given up. Caller holds d.mu.
func (d *dispatcher) doneLocked(n int) {
	if n == 0 {
		return
	}
	d.pending -= n
	if d.pending == 0 {
		close(d.idle)
	}
}

func (d *dispatcher) done() {
	d.mu.Lock()
	d.doneLocked(1)
	d.mu.Unlock()
}

// serve works through one session's queue, then exits.
func (d *dispatcher) serve(sid string) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		q := d.queues[sid]
		if len(q) == 0 || d.closed {
			d.doneLocked(len(q))
			delete(d.queues, sid)
			delete(d.running, sid)
			delete(d.wake, sid)
			d.mu.Unlock()
			return
		}
		ev := q[0]
		if ev.reorder {
			ev.reorder = false
			if len(q) == 1 {
				// Hold the event until another one of this session arrives.
				w := make(chan struct{}, 1)
				d.wake[sid] = w
				d.mu.Unlock()
				t := time.NewTimer(ev.window)
				select {
				case <-w:
				case <-t.C:
				case <-d.ctx.Done():
				}
				t.Stop()
				d.mu.Lock()
				delete(d.wake, sid)
				q = d.queues[sid]
			}
			if len(q) > 1 {
				q[1].reorder = false // the overtaking event is not held in turn
				q[0], q[1] = q[1], q[0]
			}
			d.mu.Unlock()
			continue
		}
		d.queues[sid] = q[1:]
		if ev.delay > 0 {
			d.wg.Add(1)
			d.mu.Unlock()
			go func() {
				defer d.wg.Done()
				if d.s.sleep(d.ctx, ev.delay) {
					d.deliver(ev)
				}
				d.done()
			}()
			continue
		}
		d.mu.Unlock()
		if d.attempt(ev, 0) || d.s.opts.CallbackRetries == 0 {
			d.done()
			continue
		}
		d.mu.Lock()
		if d.closed {
			d.doneLocked(1)
			d.mu.Unlock()
			continue
		}
		d.wg.Add(1)
		d.mu.Unlock()
		go func() {
			defer d.wg.Done()
			d.retry(ev, 1)
			d.done()
		}()
	}
}

// deliver makes the first attempt and the retries of ev.
func (d *dispatcher) deliver(ev *callbackEvent) {
	if !d.attempt(ev, 0) {
		d.retry(ev, 1)
	}
}

// retry makes attempts from..CallbackRetries, each after the retry delay.
func (d *dispatcher) retry(ev *callbackEvent, from int) {
	for n := from; n <= d.s.opts.CallbackRetries; n++ {
		if !d.s.sleep(d.ctx, d.s.opts.CallbackRetryDelay) {
			return
		}
		if d.attempt(ev, n) {
			return
		}
	}
}

// attempt POSTs ev once and reports whether a 2xx came in time.
func (d *dispatcher) attempt(ev *callbackEvent, n int) bool {
	ctx, cancel := context.WithTimeout(d.ctx, d.s.opts.CallbackTimeout)
	defer cancel()
	rec := CallbackRecord{
		Time: d.s.Now(), URL: safeURL(ev.url), EventID: ev.eventID, SessionID: ev.sessionID,
		Status: ev.status, Kind: ev.kind, Attempt: n, Duplicate: ev.duplicate,
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ev.url, bytes.NewReader(ev.body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "klarnasim")
		var resp *http.Response
		resp, err = d.s.opts.HTTPClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			rec.HTTPStatus = resp.StatusCode
		}
	}
	if err != nil {
		rec.Error = describe(err)
	}
	d.mu.Lock()
	d.records = append(d.records, rec)
	d.mu.Unlock()
	okay := err == nil && rec.HTTPStatus >= 200 && rec.HTTPStatus < 300
	d.s.log.Debug("callback", "hpp_session_id", ev.sessionID, "event_id", ev.eventID,
		"url", rec.URL, "attempt", n, "http_status", rec.HTTPStatus, "error", rec.Error)
	return okay
}

// describe renders a delivery error without the URL (its query string may
// hold the merchant's secret).
func describe(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if errors.Is(err, context.Canceled) {
		return "cancelled"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return "timeout"
		}
		return ue.Err.Error()
	}
	return "request failed"
}

// safeURL strips the query string and fragment.
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
}

// Callbacks returns every callback attempt and dropped event, in order.
func (s *Sim) Callbacks() []CallbackRecord {
	s.cb.mu.Lock()
	defer s.cb.mu.Unlock()
	return append([]CallbackRecord(nil), s.cb.records...)
}

// WaitCallbacks blocks until no callback is queued, delayed, held or in
// flight (including retries), or ctx is done.
func (s *Sim) WaitCallbacks(ctx context.Context) error {
	s.cb.mu.Lock()
	idle := s.cb.idle
	s.cb.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
