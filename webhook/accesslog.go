package webhook

import (
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Access log levels. Every request gets one line ("request", with its
// request id, method, path, status and duration):
//
//   - at info for what the API, Klarna and shoppers do: a storefront's
//     authenticated call (whatever its answer), a callback or redirect that
//     is answered 2xx/3xx, and every 5xx;
//   - at info too, but through refusalLog, for requests refused with a 4xx
//     before they were tied to a storefront: a token refused (the line says
//     why, "reason"), an unknown route, a forged callback. Anyone on the
//     network can send those, so they are rate-limited: at most
//     refusalBurst lines at once and refusalRate a second after that; the
//     next line that is written says how many were left out
//     ("refusals_not_logged");
//   - at debug for /healthz, /readyz and /openapi.json, which probes and
//     tools fetch all day.
const (
	refusalRate  = 5
	refusalBurst = 20
)

// quietRoutes are logged at debug.
var quietRoutes = map[string]bool{"/healthz": true, "/readyz": true, "/openapi.json": true}

// refusalLog writes the access log lines of refused requests, rate-limited.
type refusalLog struct {
	lim     *rate.Limiter
	mu      sync.Mutex
	skipped int64
}

func newRefusalLog() *refusalLog {
	return &refusalLog{lim: rate.NewLimiter(refusalRate, refusalBurst)}
}

// log writes the line if the rate allows, with the count of lines left out
// since the last one written; it reports whether it wrote.
func (r *refusalLog) log(l *slog.Logger, now time.Time, msg string, args ...any) bool {
	r.mu.Lock()
	if !r.lim.AllowN(now, 1) {
		r.skipped++
		r.mu.Unlock()
		return false
	}
	n := r.skipped
	r.skipped = 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "refusals_not_logged", n)
	}
	l.Info(msg, args...)
	return true
}
