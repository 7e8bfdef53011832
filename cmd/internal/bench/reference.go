package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/internal/gctune"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// The minimal durable server (benchmark 1).
//
// The floor of writer.go prices the disk and bbolt alone, with the writer
// owning the cores. hppd's rate on disk is also bounded by the CPU its
// request path and the load generator take from those same two cores. To
// say how far hppd is from what these cores and this disk allow together,
// each run also loads a server that does only what a durable callback must:
// a bare net/http handler that reads the body, decodes it with hppd's own
// decoder, reads the session with its version, applies the observation as
// hppd's domain applies it (core.Session.Observe: Klarna status, history,
// next check), encodes the new value on the request's goroutine, and has
// the store's group commit mark the event and write the session in one
// fsynced transaction (store.MarkPrepared through boltstore's Batch) before
// it answers. It stores what hppd stores for such a callback, on the same
// store, file and load, so the pages per callback match; it leaves out
// everything else hppd does on the way: gin's routing, the secret and
// hppId checks, the access log, metrics and the other callback outcomes.
// It runs in a process of its own (hppd-bench durable) and is SIGKILLed at
// the window's end like hppd, and its file is checked the same way.

// ReferenceStats are the minimal durable server's writer totals, as its
// /stats endpoint reports them (the figures hppd's metrics give of its
// writer).
type ReferenceStats struct {
	Commits       int64   `json:"commits"`
	Calls         int64   `json:"calls"`
	Writes        int64   `json:"writes"`
	CommitSeconds float64 `json:"commit_seconds"`
	BusySeconds   float64 `json:"busy_seconds"`
	// GCs is the garbage collections the process has run, GOGC the
	// collection percentage in force (runtime/metrics).
	GCs  uint64 `json:"gcs"`
	GOGC uint64 `json:"gogc"`
}

// referenceCounters adds up the store's commits (boltstore.Options.OnCommit,
// called on the writer goroutine; read by /stats).
type referenceCounters struct {
	mu sync.Mutex
	s  ReferenceStats
}

func (c *referenceCounters) commit(ci boltstore.CommitInfo) {
	c.mu.Lock()
	c.s.Commits++
	c.s.Calls += int64(ci.Calls)
	c.s.Writes += ci.Writes
	c.s.CommitSeconds += ci.Commit.Seconds()
	c.s.BusySeconds += (ci.Work + ci.Commit).Seconds()
	c.mu.Unlock()
}

func (c *referenceCounters) snapshot() ReferenceStats {
	c.mu.Lock()
	s := c.s
	c.mu.Unlock()
	gc := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/gogc:percent"}}
	metrics.Read(gc)
	if gc[0].Value.Kind() == metrics.KindUint64 && gc[1].Value.Kind() == metrics.KindUint64 {
		s.GCs, s.GOGC = gc[0].Value.Uint64(), gc[1].Value.Uint64()
	}
	return s
}

// referenceAnswers are the bodies hppd answers a taken callback with, new
// and duplicate.
var referenceAnswers = [2][]byte{
	[]byte(`{"duplicate":false,"resync":false,"status":"accepted"}`),
	[]byte(`{"duplicate":true,"resync":false,"status":"accepted"}`),
}

// DurableHandler is the minimal durable server's handler on db:
//
//	POST /klarna/hpp/{id}/status   a status_update callback for session id
//	GET  /stats                    the writer's totals (ReferenceStats)
//	GET  /ready                    200
//
// A callback is answered 200 only once its transaction is on disk. It
// takes only what benchmark 1 sends: a callback on a pending session that
// makes no job due and leaves the session pending; anything else is
// refused (400 for a body that is not a callback, 413 for one over 64 KiB,
// 404 for an unknown session or another HPP session, 422 for a callback it
// does not handle, 409 when the session changed between its read and its
// write). A duplicate event is acknowledged as hppd acknowledges it.
func DurableHandler(db *boltstore.DB, stats func() ReferenceStats) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(stats())
	})
	mux.HandleFunc("POST /klarna/hpp/{id}/status", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			status := http.StatusBadRequest
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				status = http.StatusRequestEntityTooLarge
			}
			referenceError(w, status, "body", err.Error())
			return
		}
		dup, status, field, msg := referenceCallback(db, r.PathValue("id"), body)
		if status != http.StatusOK {
			referenceError(w, status, field, msg)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write(referenceAnswers[b2i(dup)])
	})
	return mux
}

// referenceCallback records one callback for session id and returns
// whether its event was seen before, the HTTP status to answer with and,
// for any other than 200, the field and why.
func referenceCallback(db *boltstore.DB, id string, body []byte) (dup bool, status int, field, msg string) {
	cb, err := hpp.DecodeCallback(body)
	if err != nil {
		var ce *core.Error
		if errors.As(err, &ce) {
			return false, http.StatusBadRequest, ce.Field, ce.Message
		}
		return false, http.StatusBadRequest, "body", err.Error()
	}
	var (
		s *core.Session
		v store.SessionVersion
	)
	err = db.View(func(tx store.Tx) (err error) {
		s, v, err = store.ReadSessionVersion(tx, id)
		return err
	})
	switch {
	case errors.Is(err, core.ErrNotFound):
		return false, http.StatusNotFound, "id", "no such session"
	case err != nil:
		return false, http.StatusInternalServerError, "session", err.Error()
	case s.HPPSessionID == "" || cb.Session.SessionID != s.HPPSessionID:
		return false, http.StatusNotFound, "session.session_id", "no session with that HPP session id"
	}
	now := time.Now().UTC()
	obs := core.Observation{Source: core.SourceCallback, KlarnaStatus: cb.Session.Status}
	if cb.Session.UpdatedAt != nil {
		obs.KlarnaUpdatedAt = cb.Session.UpdatedAt.UTC()
	}
	before := s.Status
	// An observation that changes nothing still marks its event.
	if _, jobs := s.Observe(obs, now, core.DefaultPolicy); len(jobs) > 0 || s.Status != before {
		return false, http.StatusUnprocessableEntity, "session.status", "takes only callbacks that leave a pending session pending with no job due"
	}
	p, err := v.Prepare(s)
	if err != nil {
		return false, http.StatusInternalServerError, "session", err.Error()
	}
	var out store.PreparedOutcome
	err = db.Batch(func(tx store.Tx) (err error) {
		out, err = store.MarkPrepared(tx, p, cb.Session.SessionID, cb.EventID, now)
		return err
	})
	switch {
	case err != nil:
		return false, http.StatusInternalServerError, "session", err.Error()
	case out == store.PreparedStale:
		return false, http.StatusConflict, "session", "changed between its read and its write"
	}
	return out == store.EventSeen, http.StatusOK, "", ""
}

func referenceError(w http.ResponseWriter, status int, field, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"field": field, "error": msg})
}

// ServeDurable opens the data file at path with hppd's production store
// settings and serves DurableHandler on addr until ctx is done; ready is
// called with the listening address. It paces the process's collector as
// hppd serve does (internal/gctune), so it runs the way hppd runs.
func ServeDurable(ctx context.Context, addr, path string, ready func(addr string)) error {
	gc := gctune.Start(os.Getenv)
	defer gc.Stop()
	var counters referenceCounters
	db, err := boltstore.Open(path, boltstore.Options{OnCommit: counters.commit})
	if err != nil {
		return err
	}
	defer db.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return serveUntil(ctx, ln, DurableHandler(db, counters.snapshot), ready)
}

// serveUntil serves h on ln until ctx is done, then shuts the server down.
func serveUntil(ctx context.Context, ln net.Listener, h http.Handler, ready func(addr string)) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 90 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// scrapeReference reads the minimal durable server's writer totals.
func scrapeReference(ctx context.Context, addr string) (*writerCounters, error) {
	var s ReferenceStats
	err := scrape(ctx, "http://"+addr+"/stats", "the minimal durable server", func(r io.Reader) error {
		return json.NewDecoder(r).Decode(&s)
	})
	if err != nil {
		return nil, err
	}
	return &writerCounters{
		at:      time.Now(),
		commits: float64(s.Commits), calls: float64(s.Calls), writes: float64(s.Writes),
		commitS: s.CommitSeconds, busyS: s.BusySeconds,
		gcs: float64(s.GCs), gogc: float64(s.GOGC),
	}, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
