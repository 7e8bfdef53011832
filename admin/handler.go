package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
)

// Trailers of GET /backup.
const (
	TrailerBackupBytes  = "X-Hppd-Backup-Bytes"
	TrailerBackupSHA256 = "X-Hppd-Backup-Sha256"
)

// NewHandler is the daemon's admin API: the operations of l (a Local on the
// running daemon's store, whose wake is its job runner's), logged to log
// (nil: nowhere). The daemon serves it on its admin socket.
func NewHandler(l *Local, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return newHandler(l, log.With("component", "admin"))
}

type handler struct {
	l   *Local
	log *slog.Logger
}

func newHandler(l *Local, log *slog.Logger) http.Handler {
	h := &handler{l: l, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions", h.sessions)
	mux.HandleFunc("GET /sessions/{id}", h.session)
	mux.HandleFunc("GET /charges", h.charges)
	mux.HandleFunc("GET /charges/{id}", h.charge)
	mux.HandleFunc("GET /jobs", h.jobs)
	mux.HandleFunc("POST /jobs/{id}/retry", h.retryJob)
	mux.HandleFunc("POST /jobs/retry", h.retryFailing)
	mux.HandleFunc("GET /backup", h.backup)
	mux.HandleFunc("GET /check", h.check)
	return mux
}

// statusOf maps core error codes to HTTP statuses (the storefront API's table).
func statusOf(code core.ErrorCode) int {
	switch code {
	case core.CodeInvalid:
		return http.StatusBadRequest
	case core.CodeNotFound:
		return http.StatusNotFound
	case core.CodeConflict:
		return http.StatusConflict
	case core.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (h *handler) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		h.log.Debug("admin answer not written", "err", err)
	}
}

// fail answers a core error with its message; anything else is logged here
// and answered without its text.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ce *core.Error
	if errors.As(err, &ce) && ce.Code != core.CodeInternal {
		h.reply(w, statusOf(ce.Code), api.ErrorBody{Error: api.ErrorDetail{Code: string(ce.Code), Message: ce.Message, Field: ce.Field}})
		return
	}
	h.log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	h.reply(w, http.StatusInternalServerError, api.ErrorBody{Error: api.ErrorDetail{Code: string(core.CodeInternal), Message: "internal error (see the hppd log)"}})
}

func queryOf(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{Storefront: v.Get("storefront"), Status: v.Get("status")}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return q, core.Invalid("limit", "%q is not a number", s)
		}
		q.Limit = n
	}
	return q, nil
}

func (h *handler) sessions(w http.ResponseWriter, r *http.Request) {
	q, err := queryOf(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	list, err := h.l.Sessions(r.Context(), q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.reply(w, http.StatusOK, list)
}

func (h *handler) session(w http.ResponseWriter, r *http.Request) {
	s, err := h.l.Session(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.reply(w, http.StatusOK, s)
}

func (h *handler) charges(w http.ResponseWriter, r *http.Request) {
	q, err := queryOf(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	list, err := h.l.Charges(r.Context(), q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.reply(w, http.StatusOK, list)
}

func (h *handler) charge(w http.ResponseWriter, r *http.Request) {
	c, err := h.l.Charge(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.reply(w, http.StatusOK, c)
}

func (h *handler) jobs(w http.ResponseWriter, r *http.Request) {
	list, err := h.l.Jobs(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.reply(w, http.StatusOK, list)
}

func (h *handler) retryJob(w http.ResponseWriter, r *http.Request) {
	j, err := h.l.RetryJob(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("job made due by admin", "job_id", j.ID, "kind", j.Kind, "attempts", j.Attempts)
	h.reply(w, http.StatusOK, j)
}

func (h *handler) retryFailing(w http.ResponseWriter, r *http.Request) {
	list, err := h.l.RetryFailingJobs(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("failing jobs made due by admin", "jobs", len(list))
	h.reply(w, http.StatusOK, list)
}

// countingWriter counts what went through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// backup streams the copy, then its size and SHA-256 as trailers. A failure
// before the first byte is an error answer; after it, the response is
// aborted, so the client sees a broken stream rather than a short copy.
func (h *handler) backup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Trailer", TrailerBackupBytes+", "+TrailerBackupSHA256)
	sum := sha256.New()
	cw := &countingWriter{w: w}
	n, err := h.l.Backup(r.Context(), io.MultiWriter(cw, sum))
	if err != nil {
		if cw.n == 0 {
			w.Header().Del("Trailer")
			h.fail(w, r, err)
			return
		}
		h.log.Error("admin backup aborted", "bytes", cw.n, "err", err)
		panic(http.ErrAbortHandler)
	}
	w.Header().Set(TrailerBackupBytes, strconv.FormatInt(n, 10))
	w.Header().Set(TrailerBackupSHA256, hex.EncodeToString(sum.Sum(nil)))
	h.log.Info("backup streamed to admin", "bytes", n)
}

func (h *handler) check(w http.ResponseWriter, r *http.Request) {
	rep, err := h.l.Check(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.reply(w, http.StatusOK, rep)
}
