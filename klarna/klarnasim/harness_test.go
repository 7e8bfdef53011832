package klarnasim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hppd/hppd/internal/klarnaspec"
	"github.com/hppd/hppd/klarna"
)

// t0 is the base wall clock of every test simulator.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// klarnaPaths are the operations the OpenAPI documents describe; every
// response on them is validated.
var klarnaPaths = []struct {
	method string
	re     *regexp.Regexp
}{
	{"POST", regexp.MustCompile(`^/payments/v1/sessions$`)},
	{"GET", regexp.MustCompile(`^/payments/v1/sessions/[^/]+$`)},
	{"POST", regexp.MustCompile(`^/payments/v1/sessions/[^/]+$`)},
	{"POST", regexp.MustCompile(`^/payments/v1/authorizations/[^/]+/order$`)},
	{"DELETE", regexp.MustCompile(`^/payments/v1/authorizations/[^/]+$`)},
	{"POST", regexp.MustCompile(`^/hpp/v1/sessions$`)},
	{"GET", regexp.MustCompile(`^/hpp/v1/sessions/[^/]+$`)},
	{"DELETE", regexp.MustCompile(`^/hpp/v1/sessions/[^/]+$`)},
	{"POST", regexp.MustCompile(`^/hpp/v1/sessions/[^/]+/distribution$`)},
	{"GET", regexp.MustCompile(`^/customer-token/v1/tokens/[^/]+$`)},
	{"POST", regexp.MustCompile(`^/customer-token/v1/tokens/[^/]+/order$`)},
	{"PATCH", regexp.MustCompile(`^/customer-token/v1/tokens/[^/]+/status$`)},
}

func isKlarnaOp(method, path string) bool {
	for _, p := range klarnaPaths {
		if p.method == method && p.re.MatchString(path) {
			return true
		}
	}
	return false
}

// specChecked wraps h so that every response on a Klarna operation is
// validated against the OpenAPI documents; violations go to report.
func specChecked(spec *klarnaspec.Spec, h http.Handler, validated *atomic.Int64, report func(error, []byte)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isKlarnaOp(r.Method, r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if r.Context().Err() == nil { // the client is still there to be answered
			if err := spec.ValidateResponse(r.Method, r.URL.EscapedPath(), r.Header, body, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
				report(err, rec.Body.Bytes())
			}
			validated.Add(1)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// env is a simulator behind an httptest server, with a client.
type env struct {
	t         *testing.T
	sim       *Sim
	srv       *httptest.Server
	validated *atomic.Int64
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	opts := Options{
		Seed:               1,
		Now:                func() time.Time { return t0 },
		CallbackTimeout:    time.Second,
		CallbackRetryDelay: 10 * time.Millisecond,
		// The tests send requests back to back to check one behaviour
		// each; the rate limits have their own tests (ratelimit_test.go).
		Unlimited: true,
	}
	if mod != nil {
		mod(&opts)
	}
	sim := New(opts)
	e := &env{t: t, sim: sim, validated: new(atomic.Int64)}
	report := func(err error, body []byte) { t.Errorf("OpenAPI: %v\nbody: %s", err, body) }
	e.srv = httptest.NewServer(specChecked(klarnaspec.MustLoad(t), sim.Handler(), e.validated, report))
	t.Cleanup(func() {
		sim.Close()
		e.srv.Close()
	})
	return e
}

// resp is an answer read whole.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r resp) errBody(t *testing.T) klarna.ErrorBody {
	t.Helper()
	var e klarna.ErrorBody
	r.json(t, &e)
	return e
}

// do sends a request with the simulator's credentials; body may be a
// string, []byte or a value to encode as JSON.
func (e *env) do(method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	return e.doAuth(method, path, body, "sim", "sim", hdr...)
}

func (e *env) doAuth(method, path string, body any, user, pass string, hdr ...string) resp {
	e.t.Helper()
	r, err := e.send(method, path, body, user, pass, hdr...)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// send is doAuth without t: safe in any goroutine.
func (e *env) send(method, path string, body any, user, pass string, hdr ...string) (resp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return resp{}, err
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		return resp{}, err
	}
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{}, err
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}, nil
}

var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

func expectStatus(t *testing.T, r resp, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
}

// expectBadValue checks a 400 BAD_VALUE naming exactly field among its messages.
func expectBadValue(t *testing.T, r resp, field string) {
	t.Helper()
	expectStatus(t, r, http.StatusBadRequest)
	e := r.errBody(t)
	if e.ErrorCode != "BAD_VALUE" {
		t.Fatalf("error_code %q, want BAD_VALUE", e.ErrorCode)
	}
	for _, m := range e.ErrorMessages {
		if m == "Bad value: "+field {
			return
		}
	}
	t.Fatalf("error_messages %q do not name %q", e.ErrorMessages, field)
}

// line is a valid SE order line: qty*price with 25% VAT.
func line(name string, qty, price int64) map[string]any {
	total := qty * price
	return map[string]any{
		"type": "physical", "name": name, "quantity": qty, "unit_price": price,
		"tax_rate": 2500, "total_amount": total, "total_tax_amount": total * 2500 / 12500,
	}
}

// kpBody is a valid KP session body for SE with the given lines.
func kpBody(lines ...map[string]any) map[string]any {
	if len(lines) == 0 {
		lines = []map[string]any{line("Shoe", 2, 10000), line("Sock", 1, 2500)}
	}
	var amount, tax int64
	for _, l := range lines {
		amount += toInt(l["total_amount"])
		tax += toInt(l["total_tax_amount"])
	}
	return map[string]any{
		"intent": "buy", "acquiring_channel": "ECOMMERCE",
		"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
		"order_amount": amount, "order_tax_amount": tax, "order_lines": lines,
	}
}

// orderBody is the place-order body matching kpBody(lines...).
func orderBody(lines ...map[string]any) map[string]any {
	b := kpBody(lines...)
	delete(b, "intent")
	delete(b, "acquiring_channel")
	return b
}

// tokenOrderBody is a valid customer token order.
func tokenOrderBody() map[string]any {
	b := orderBody()
	delete(b, "purchase_country")
	delete(b, "locale")
	return b
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case int:
		return int64(n)
	case float64:
		return int64(n)
	}
	panic("not a number")
}

// createKP creates a KP session and returns its id.
func (e *env) createKP(body map[string]any) string {
	e.t.Helper()
	r := e.do("POST", "/payments/v1/sessions", body)
	expectStatus(e.t, r, http.StatusOK)
	var s klarna.KPSession
	r.json(e.t, &s)
	if s.SessionID == "" || s.ClientToken == "" {
		e.t.Fatalf("session answer %s", r.body)
	}
	return s.SessionID
}

// createHPP creates an HPP session over kpID.
func (e *env) createHPP(kpID string, urls map[string]string, options map[string]any) klarna.HPPSession {
	e.t.Helper()
	body := map[string]any{"payment_session_url": "https://api.klarna.com/payments/v1/sessions/" + kpID}
	if urls != nil {
		body["merchant_urls"] = urls
	}
	if options != nil {
		body["options"] = options
	}
	r := e.do("POST", "/hpp/v1/sessions", body)
	expectStatus(e.t, r, http.StatusCreated)
	var h klarna.HPPSession
	r.json(e.t, &h)
	return h
}

func (e *env) readHPP(id string) klarna.HPPSessionStatus {
	e.t.Helper()
	r := e.do("GET", "/hpp/v1/sessions/"+id, nil)
	expectStatus(e.t, r, http.StatusOK)
	var st klarna.HPPSessionStatus
	r.json(e.t, &st)
	return st
}

// receiver is a status_update endpoint that records what it gets.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []receivedEvent
	answer func(n int) (status int, delay time.Duration)
}

type receivedEvent struct {
	query       string
	contentType string
	callback    klarna.StatusCallback
	raw         []byte
}

func newReceiver(t *testing.T, answer func(n int) (int, time.Duration)) *receiver {
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var cb klarna.StatusCallback
		if err := json.Unmarshal(b, &cb); err != nil {
			t.Errorf("callback body %s: %v", b, err)
		}
		rc.mu.Lock()
		n := len(rc.events)
		rc.events = append(rc.events, receivedEvent{query: r.URL.RawQuery, contentType: r.Header.Get("Content-Type"), callback: cb, raw: b})
		rc.mu.Unlock()
		status, delay := http.StatusOK, time.Duration(0)
		if rc.answer != nil {
			status, delay = rc.answer(n)
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) got() []receivedEvent {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receivedEvent(nil), rc.events...)
}

func (rc *receiver) statuses() []string {
	var out []string
	for _, ev := range rc.got() {
		out = append(out, ev.callback.Session.Status)
	}
	return out
}

func waitCallbacks(t *testing.T, s *Sim) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitCallbacks(ctx); err != nil {
		t.Fatalf("callbacks still pending: %v", err)
	}
}
