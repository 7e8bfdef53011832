package klarnasim

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hppd/hppd/klarna"
)

// RequestRecord is one request received on a Klarna path.
type RequestRecord struct {
	Time           time.Time `json:"time"`
	Method         string    `json:"method"`
	Path           string    `json:"path"`
	Operation      string    `json:"operation"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	ContentType    string    `json:"content_type,omitempty"`
	UserAgent      string    `json:"user_agent,omitempty"`
	Body           string    `json:"body,omitempty"`
	Status         int       `json:"status"`
	ErrorCode      string    `json:"error_code,omitempty"`
	CorrelationID  string    `json:"correlation_id"`
}

// reply is what an operation answers; the pipeline writes it.
type reply struct {
	status  int
	body    any // JSON body of a success; nil for none
	errCode string
	errMsgs []string
	header  map[string]string
	// raw is a body written as it is (a garbled answer), instead of body.
	raw []byte
}

func ok(status int, body any) reply { return reply{status: status, body: body} }

func fail(status int, code string, msgs ...string) reply {
	return reply{status: status, errCode: code, errMsgs: msgs}
}

func badValue(msgs []string) reply { return fail(http.StatusBadRequest, "BAD_VALUE", msgs...) }

func (r reply) withHeader(k, v string) reply {
	h := make(map[string]string, len(r.header)+1)
	for hk, hv := range r.header {
		h[hk] = hv
	}
	h[k] = v
	r.header = h
	return r
}

// call is one Klarna API request as a handler sees it.
type call struct {
	r       *http.Request
	body    []byte
	idemKey string
}

type apiFunc func(c *call) reply

// routes registers every path the simulator serves.
func (s *Sim) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern, op string, h apiFunc) { mux.Handle(pattern, s.api(op, h)) }

	api("POST /payments/v1/sessions", OpCreateKPSession, s.createKPSession)
	api("GET /payments/v1/sessions/{id}", OpReadKPSession, s.readKPSession)
	api("POST /payments/v1/sessions/{id}", OpUpdateKPSession, s.updateKPSession)
	api("POST /payments/v1/authorizations/{token}/order", OpPlaceOrder, s.placeOrder)
	api("DELETE /payments/v1/authorizations/{token}", OpCancelAuthorization, s.cancelAuthorization)
	api("POST /hpp/v1/sessions", OpCreateHPPSession, s.createHPPSession)
	api("GET /hpp/v1/sessions/{id}", OpReadHPPSession, s.readHPPSession)
	api("DELETE /hpp/v1/sessions/{id}", OpDisableHPPSession, s.disableHPPSession)
	api("POST /hpp/v1/sessions/{id}/distribution", OpDistributeHPPSession, s.distributeHPPSession)
	api("GET /customer-token/v1/tokens/{token}", OpReadCustomerToken, s.readCustomerToken)
	api("POST /customer-token/v1/tokens/{token}/order", OpCreateTokenOrder, s.createTokenOrder)
	api("PATCH /customer-token/v1/tokens/{token}/status", OpUpdateTokenStatus, s.updateTokenStatus)
	api("GET /ordermanagement/v1/orders/{id}", OpReadOrder, s.readOrder)
	mux.Handle("/", s.api(OpUnknown, func(*call) reply {
		return fail(http.StatusNotFound, "NOT_FOUND", "Not found")
	}))

	// The shopper's pages (no credentials, as on pay.klarna.com).
	mux.HandleFunc("GET /hpp/pay/{id}", s.servePage)
	mux.HandleFunc("POST /hpp/pay/{id}", s.submitPage)
	mux.HandleFunc("GET /redirect/orders/{id}", s.serveOrderRedirect)

	s.driverRoutes(mux)
	return mux
}

// api wraps an operation in the pipeline described in the package doc.
func (s *Sim) api(op string, h apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		corr := s.newID()
		idx := s.record(r, op, body, corr)

		var rep reply
		limit, remaining, over := 0, 0, false
		authorized := s.authorized(r)
		if authorized {
			limit, remaining, over = s.admit(op)
		}
		switch {
		case !authorized:
			rep = fail(http.StatusUnauthorized, "UNAUTHORIZED", "Unauthorized").
				withHeader("WWW-Authenticate", `Basic realm="Klarna"`)
		case over:
			rep = rateLimited() // nothing is processed (FACTS 8.5)
		case readErr != nil:
			rep = badValue([]string{"Bad value: request body"})
		case len(body) > 0 && !isJSON(r):
			rep = badValue([]string{"Bad value: Content-Type"})
		default:
			var done bool
			rep, done = s.withFaults(r.Context(), op, func() reply {
				return h(&call{r: r, body: body, idemKey: r.Header.Get("Klarna-Idempotency-Key")})
			})
			if !done {
				s.finishRecord(idx, 0, "")
				s.log.Debug("request abandoned", "op", op, "correlation_id", corr)
				return
			}
		}
		if authorized {
			rep = rateHeaders(rep, limit, remaining)
		}
		s.write(w, op, corr, rep)
		s.finishRecord(idx, rep.status, rep.errCode)
		s.log.Debug("request", "op", op, "status", rep.status, "error_code", rep.errCode, "correlation_id", corr)
	})
}

func isJSON(r *http.Request) bool {
	ct := strings.ToLower(strings.TrimSpace(strings.SplitN(r.Header.Get("Content-Type"), ";", 2)[0]))
	return ct == "application/json"
}

// authorized checks HTTP Basic credentials in constant time.
func (s *Sim) authorized(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	uOK := subtle.ConstantTimeCompare([]byte(u), []byte(s.opts.Username))
	pOK := subtle.ConstantTimeCompare([]byte(p), []byte(s.opts.Password))
	return ok && uOK&pOK == 1
}

func (s *Sim) record(r *http.Request, op string, body []byte, corr string) int {
	rec := RequestRecord{
		Time:           s.Now(),
		Method:         r.Method,
		Path:           r.URL.Path,
		Operation:      op,
		IdempotencyKey: r.Header.Get("Klarna-Idempotency-Key"),
		ContentType:    r.Header.Get("Content-Type"),
		UserAgent:      r.Header.Get("User-Agent"),
		Body:           string(body),
		CorrelationID:  corr,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, rec)
	return len(s.requests) - 1
}

func (s *Sim) finishRecord(idx, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if idx < len(s.requests) {
		s.requests[idx].Status = status
		s.requests[idx].ErrorCode = code
	}
}

// Requests returns every request received on a Klarna path, in arrival
// order.
func (s *Sim) Requests() []RequestRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RequestRecord(nil), s.requests...)
}

// rateWindow counts requests of one rate-limit category in one second.
type rateWindow struct {
	second int64
	count  int
}

// write sends rep with Klarna's headers.
func (s *Sim) write(w http.ResponseWriter, op, corr string, rep reply) {
	h := w.Header()
	h.Set("Klarna-Correlation-Id", corr)
	for k, v := range rep.header {
		h.Set(k, v)
	}
	if rep.raw != nil {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		_, _ = w.Write(rep.raw)
		return
	}
	var body any
	switch {
	case rep.errCode != "":
		body = klarna.ErrorBody{ErrorCode: rep.errCode, ErrorMessages: rep.errMsgs, CorrelationID: corr}
	case rep.body != nil:
		body = rep.body
	}
	if body == nil {
		w.WriteHeader(rep.status)
		return
	}
	b, err := marshal(body)
	if err != nil {
		s.log.Error("encode reply", "op", op, "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	_, _ = w.Write(b)
}

// marshal encodes v as JSON without HTML escaping (URLs stay readable).
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
