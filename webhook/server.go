// Package webhook is hppd's HTTP face (gin): Klarna's status_update callbacks,
// the shopper's redirects back from the payment page, and the storefront API
// behind JWT authentication. Handlers verify before they mutate: bodies are
// bounded first, secrets and tokens checked next, input decoded and validated
// last, and only then does the hpp service change anything. Every error leaves
// through one function that maps core error codes to HTTP statuses and a JSON
// body naming the offending field; internal errors are logged once there and
// never shown to clients. A shopper's browser on a shopper URL gets that error
// as a small HTML page instead (htmlerror.go). Every request is logged once;
// the lines of refused requests are rate-limited (accesslog.go).
//
// Routes:
//
//	POST /klarna/hpp/{id}/status?secret=…&hppId=…   Klarna status_update callback
//	POST /klarna/kp/{id}/authorization?secret=…     KP authorization callback (integration sdk)
//	POST /klarna/kp/{id}/notification?secret=…      fraud review notification of the session's order
//	GET  /shopper/{id}/{success|failure|cancel|back|error}   shopper redirect → 303
//	POST /v1/sessions, GET /v1/sessions, GET /v1/sessions/{id}
//	POST /v1/sessions/{id}/cancel, POST /v1/sessions/{id}/authorization, POST /v1/sessions/{id}/decline
//	POST /v1/charges, GET /v1/charges, GET /v1/charges/{id}, POST /v1/charges/{id}/fallback
//	GET  /v1/tokens/{customer_token}
//	GET  /healthz, /readyz, /openapi.json
package webhook

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gin-gonic/gin"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
)

// MaxAPIBody bounds storefront request bodies.
const MaxAPIBody = 1 << 20

// Config wires the HTTP layer.
type Config struct {
	Service *hpp.Service
	Auth    *Authenticator
	Logger  *slog.Logger
	// Ready reports whether hppd can serve (store readable, poller scheduled).
	Ready func() error
	// KlarnaStatus reports each Klarna account's state ("up", "down",
	// "unknown"); /readyz shows it. Klarna being down never makes hppd
	// unready: callbacks must still be taken and stored.
	KlarnaStatus func() map[string]string
	// Observe is called after each request with the route and status (metrics).
	Observe func(route string, status int, d time.Duration)
	Now     func() time.Time
	// IdempotencyTTL: an Idempotency-Key record created longer ago is
	// forgotten, and the key may name a new request (0: kept for ever).
	IdempotencyTTL time.Duration
}

// Server holds the HTTP handlers.
type Server struct {
	svc *hpp.Service
	cfg Config
	log *slog.Logger
	// refusals rate-limits the log lines of refused requests (accesslog.go).
	refusals *refusalLog
}

// New returns the HTTP handler of hppd.
func New(cfg Config) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{svc: cfg.Service, cfg: cfg, log: cfg.Logger.With("component", "http"), refusals: newRefusalLog()}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// No redirects to a "cleaned" path: a path that is not a route is a 404
	// JSON error, whatever its slashes (a 307 would send Klarna's callback
	// elsewhere, and a 301 answers a machine with HTML).
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.Use(s.recoverer, s.accessLog, s.checkPathIDs)
	r.NoRoute(func(c *gin.Context) { s.fail(c, core.Errorf(core.CodeNotFound, "no such route")) })
	r.NoMethod(func(c *gin.Context) {
		s.fail(c, &core.Error{Code: "method_not_allowed", Message: "method not allowed"})
	})

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", s.readyz)
	r.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", api.OpenAPIJSON) })
	r.POST("/klarna/hpp/:id/status", s.callback)
	r.POST("/klarna/kp/:id/authorization", s.authorizationCallback)
	r.POST("/klarna/kp/:id/notification", s.notification)
	r.GET("/shopper/:id/:kind", s.redirect)

	v1 := r.Group("/v1", s.authenticate, s.requireJSON)
	v1.POST("/sessions", s.idempotent(false), s.createSession)
	v1.GET("/sessions", s.listSessions)
	v1.GET("/sessions/:id", s.getSession)
	v1.POST("/sessions/:id/cancel", s.idempotent(false), s.cancelSession)
	v1.POST("/sessions/:id/authorization", s.idempotent(false), s.authorizeSession)
	v1.POST("/sessions/:id/decline", s.idempotent(false), s.declineSession)
	v1.POST("/charges", s.idempotentPrepared(), s.createCharge)
	v1.GET("/charges", s.listCharges)
	v1.GET("/charges/:id", s.getCharge)
	v1.POST("/charges/:id/fallback", s.idempotent(false), s.fallback)
	v1.GET("/tokens/:token", s.getToken)
	return r
}

// statusOf maps error codes to HTTP statuses, once for all handlers.
var statusOf = map[core.ErrorCode]int{
	core.CodeInvalid:      http.StatusBadRequest,
	core.CodeUnauthorized: http.StatusUnauthorized,
	core.CodeNotFound:     http.StatusNotFound,
	core.CodeConflict:     http.StatusConflict,
	core.CodeTooLarge:     http.StatusRequestEntityTooLarge,
	core.CodeUnavailable:  http.StatusServiceUnavailable,
	core.CodeRateLimited:  http.StatusTooManyRequests,
	core.CodeUpstream:     http.StatusBadGateway,
	"method_not_allowed":  http.StatusMethodNotAllowed,
	codeMediaType:         http.StatusUnsupportedMediaType,
}

// fail writes err as a JSON error. Internal errors are logged here, once, and
// answered with a generic message.
func (s *Server) fail(c *gin.Context, err error) {
	var e *core.Error
	if !errors.As(err, &e) {
		e = &core.Error{Code: core.CodeInternal, Err: err}
	}
	status, ok := statusOf[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	msg := e.Message
	if status == http.StatusInternalServerError {
		s.log.Error("internal error", "request_id", c.GetString("request_id"), "path", logPath(c), "err", err)
		msg = "internal error"
	} else if e.Code == core.CodeUpstream || e.Code == core.CodeUnavailable {
		s.log.Warn("klarna failure", "request_id", c.GetString("request_id"), "path", logPath(c), "err", err)
	}
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="hppd"`)
	}
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		c.Header("Retry-After", strconv.Itoa(retryAfterSeconds(err)))
	}
	if wantsHTML(c) {
		htmlError(c, status)
		return
	}
	c.AbortWithStatusJSON(status, api.ErrorBody{Error: api.ErrorDetail{Code: string(e.Code), Message: msg, Field: e.Field}})
}

// defaultRetryAfter is the Retry-After of a 503 that names none.
const defaultRetryAfter = 2

// retryAfterSeconds is the Retry-After of a 503 answer: what the error asks
// for (a RetryAfter method, such as hpp.RetryLater's), in whole seconds, at
// least 1 and at most 60; defaultRetryAfter otherwise.
func retryAfterSeconds(err error) int {
	var ra interface{ RetryAfter() time.Duration }
	if !errors.As(err, &ra) {
		return defaultRetryAfter
	}
	secs := int((ra.RetryAfter() + time.Second - 1) / time.Second)
	return min(max(secs, 1), 60)
}

func (s *Server) recoverer(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic in handler", "request_id", c.GetString("request_id"), "path", logPath(c), "panic", v)
			s.fail(c, errors.New("panic"))
		}
	}()
	c.Next()
}

// logPath is the request's path as logs show it: without the query string
// (callback secrets travel there), and with a customer token in the path
// masked the way the API shows it.
func logPath(c *gin.Context) string {
	if c.FullPath() == "/v1/tokens/:token" {
		return "/v1/tokens/" + api.MaskToken(c.Param("token"))
	}
	return boundLog(c.Request.URL.Path)
}

// pathIDRoutes are the routes whose :id names a session or charge.
var pathIDRoutes = map[string]bool{
	"/shopper/:id/:kind":             true,
	"/v1/sessions/:id":               true,
	"/v1/sessions/:id/cancel":        true,
	"/v1/sessions/:id/authorization": true,
	"/v1/sessions/:id/decline":       true,
	"/v1/charges/:id":                true,
	"/v1/charges/:id/fallback":       true,
}

// checkPathIDs answers 404, before any lookup, authentication or log line
// that names it, a request whose id path parameter cannot name a record
// (core.PlausibleID),
// and one whose customer token is "." or ".." (unescaped from %2E: passed on,
// it would name another path at Klarna). The callback routes check their id
// in CheckCallback, with the secret.
func (s *Server) checkPathIDs(c *gin.Context) {
	route := c.FullPath()
	if pathIDRoutes[route] && !core.PlausibleID(c.Param("id")) {
		s.fail(c, core.ErrNotFound)
		return
	}
	if route == "/v1/tokens/:token" && !core.ValidPathSegment(c.Param("token")) {
		s.fail(c, core.ErrNotFound)
		return
	}
	c.Next()
}

// maxLoggedPath bounds what a log line shows of a path an outsider chose.
const maxLoggedPath = 200

// boundLog cuts v to maxLoggedPath bytes, saying how long it was.
func boundLog(v string) string {
	if len(v) <= maxLoggedPath {
		return v
	}
	return v[:maxLoggedPath] + "…(" + strconv.Itoa(len(v)) + " bytes)"
}

// accessLog logs one line per request: path without query string (callback
// secrets travel there) and without customer tokens, status, duration,
// request id.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	rid := c.GetHeader("X-Request-Id")
	if rid == "" || len(rid) > 64 || strings.ContainsAny(rid, "\r\n") {
		var b [8]byte
		_, _ = rand.Read(b[:])
		rid = hex.EncodeToString(b[:])
	}
	c.Set("request_id", rid)
	c.Request = c.Request.WithContext(hpp.WithRequestID(c.Request.Context(), rid))
	c.Header("X-Request-Id", rid)
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	d := time.Since(start)
	if s.cfg.Observe != nil {
		s.cfg.Observe(route, c.Writer.Status(), d)
	}
	status, sf := c.Writer.Status(), c.GetString("storefront")
	args := []any{"request_id", rid, "method", c.Request.Method, "path", logPath(c),
		"status", status, "duration_ms", float64(d.Microseconds()) / 1000, "storefront", sf}
	switch {
	case quietRoutes[route]:
		s.log.Debug("request", args...)
	case status >= 400 && status < 500 && sf == "":
		if reason := c.GetString("refusal"); reason != "" {
			args = append(args, "reason", reason)
		}
		if id := c.GetString("refused_session_id"); id != "" {
			args = append(args, "session_id", id)
		}
		s.refusals.log(s.log, start, "request", args...)
	default:
		s.log.Info("request", args...)
	}
}

func (s *Server) readyz(c *gin.Context) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "reason": err.Error()})
			return
		}
	}
	if s.cfg.KlarnaStatus != nil {
		c.JSON(http.StatusOK, gin.H{"status": "ready", "klarna_accounts": s.cfg.KlarnaStatus()})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// readBody reads a bounded body; too large → 413.
func readBody(c *gin.Context, limit int64) ([]byte, error) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	b, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &core.Error{Code: core.CodeTooLarge, Field: "body", Message: "body is larger than the limit of " + byteSize(limit)}
		}
		return nil, core.Invalid("body", "could not be read")
	}
	return b, nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// naming the field of a type mismatch.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		if errors.As(err, &te) || strings.HasPrefix(err.Error(), "json: unknown field ") {
			if e := explainDecode(body, v); e != nil {
				return e
			}
		}
		switch {
		case errors.As(err, &te):
			return core.Invalid(jsonPath(te.Field), "must be of type %s", te.Type.String())
		case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return core.Invalid("body", "is not valid JSON")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			if name == "" {
				return core.Invalid("body", "has a field with an empty name")
			}
			return core.Invalid(name, "is not a known field")
		}
		return core.Invalid("body", "is not valid JSON: %s", err.Error())
	}
	if dec.More() {
		return core.Invalid("body", "has data after the JSON object")
	}
	return nil
}

// byteSize renders a body limit for a message: "64 KiB", "1 MiB".
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// jsonPath turns the Field of a json.UnmarshalTypeError into the request
// field's JSON path: encoding/json puts the Go names of embedded structs in
// it ("Purchase.order_amount"), which no client sent. Every JSON name of the
// API is lower case, so capitalised elements are Go's; "" is the whole body.
func jsonPath(field string) string {
	var parts []string
	for _, p := range strings.Split(field, ".") {
		if p != "" && !unicode.IsUpper(rune(p[0])) {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "body"
	}
	return strings.Join(parts, ".")
}

// codeMediaType: a storefront body that says it is not JSON (415).
const codeMediaType core.ErrorCode = "unsupported_media_type"

// requireJSON refuses a storefront request body whose Content-Type names
// something other than JSON (application/json, or any application/*+json),
// with 415 naming the header; a body without a Content-Type is read as JSON.
func (s *Server) requireJSON(c *gin.Context) {
	ct := c.GetHeader("Content-Type")
	if c.Request.Method == http.MethodGet || ct == "" {
		c.Next()
		return
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
		s.fail(c, &core.Error{Code: codeMediaType, Field: "Content-Type", Message: "must be application/json, not " + strconv.Quote(trimHeader(ct))})
		return
	}
	c.Next()
}

func trimHeader(v string) string {
	if len(v) > 100 {
		return v[:100] + "…"
	}
	return v
}

// authenticate checks the bearer JWT and sets the storefront. The scheme is
// case-insensitive (RFC 9110, 11.1).
func (s *Server) authenticate(c *gin.Context) {
	h := strings.TrimSpace(c.GetHeader("Authorization"))
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		c.Set("refusal", "no Bearer token")
		s.fail(c, &core.Error{Code: core.CodeUnauthorized, Field: "Authorization", Message: "a Bearer token is required"})
		return
	}
	sf, err := s.cfg.Auth.Verify(strings.TrimSpace(tok))
	if err != nil {
		c.Set("refusal", "token refused: "+jwtReason(err))
		s.fail(c, &core.Error{Code: core.CodeUnauthorized, Field: "Authorization", Message: "token refused: " + jwtReason(err)})
		return
	}
	c.Set("storefront", sf)
	c.Next()
}

// jwtReason says why a token was refused without echoing it.
func jwtReason(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

// canonicalJSON is the form in which idempotent compares request bodies:
// "the same request" means the same JSON value, so a retry re-serialised by
// another process or library (other whitespace, another key order, escaped
// or literal characters) is still the same request. Numbers keep their
// literal text (100 and 100.0 differ, as they do to the validation). A body
// that is not JSON is compared byte for byte (the handler refuses it).
func canonicalJSON(body []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return body
	}
	out, err := json.Marshal(v)
	if err != nil {
		return body
	}
	return out
}

// idempotent makes a POST honour the Idempotency-Key header: the HTTP side
// of hpp's key claims (hpp.Service.ClaimKey, whose doc has the rules). A
// repeat with the same key and the same JSON body (canonicalJSON) gets the
// first answer again, marked Idempotent-Replayed; the same key with another
// body, or while its first request runs (at any process), gets 409. The
// request's answer is recorded when the handlers are done.
func (s *Server) idempotent(required bool) gin.HandlerFunc {
	return s.idempotentWith(required, s.svc.ClaimKey)
}

// idempotentPrepared is idempotent (the key required) for POST /v1/charges,
// whose flow takes the key in the transaction that records the charge and
// records its answer with the fallback's link (hpp.Service.PrepareKey,
// hpp.ChargeRequest.Key): two commits fewer per request.
func (s *Server) idempotentPrepared() gin.HandlerFunc {
	return s.idempotentWith(true, s.svc.PrepareKey)
}

func (s *Server) idempotentWith(required bool, claimKey func(storefront, key string, hash []byte, ttl time.Duration) (*hpp.KeyClaim, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		key := c.GetHeader("Idempotency-Key")
		if key == "" {
			if required {
				s.fail(c, core.Invalid("Idempotency-Key", "header is required"))
				return
			}
			c.Next()
			return
		}
		if len(key) > 255 {
			s.fail(c, core.Invalid("Idempotency-Key", "is longer than 255 characters"))
			return
		}
		body, err := readBody(c, MaxAPIBody)
		if err != nil {
			s.fail(c, err)
			return
		}
		c.Request.Body = io.NopCloser(bytes.NewReader(body))
		sf := c.GetString("storefront")
		h := sha256.Sum256(append([]byte(c.Request.Method+" "+c.Request.URL.Path+"\n"), canonicalJSON(body)...))
		claim, err := claimKey(sf, key, h[:], s.cfg.IdempotencyTTL)
		if err != nil {
			s.fail(c, err)
			return
		}
		if claim.Replay != nil {
			c.Header("Idempotent-Replayed", "true")
			c.Data(claim.Replay.Status, jsonContentType, claim.Replay.Body)
			c.Abort()
			return
		}
		c.Set("idempotency_key", claim.ScopedKey())
		c.Set("idempotency_claim", claim)
		rec := &recorder{ResponseWriter: c.Writer}
		c.Writer = rec
		c.Next()
		if err := s.svc.FinishKey(claim, c.Writer.Status(), rec.buf.Bytes()); err != nil {
			s.log.Error("store idempotency record", "request_id", c.GetString("request_id"), "err", err)
		}
	}
}

// recorder keeps a copy of the response body.
type recorder struct {
	gin.ResponseWriter
	buf bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.buf.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) WriteString(s string) (int, error) {
	r.buf.WriteString(s)
	return r.ResponseWriter.WriteString(s)
}
