package webhook_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
	"github.com/hppd/hppd/webhook"
)

// Fuzz targets of the HTTP layer, run in-process (handler and simulator
// called directly, the store without fsync) so an iteration takes
// microseconds. They hold hppd to the general rule: no input crashes it or
// gets a 5xx, every refusal is JSON, and a refused request changes nothing.

// handlerTransport sends the Klarna client's requests straight to a handler.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil {
		r.Body = http.NoBody // as a server hands a handler a request without a body
	}
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	return w.Result(), nil
}

// fuzzApp is hppd's HTTP handler over a store and the simulator, with one
// pending hosted-page session whose callback secret is known.
type fuzzApp struct {
	h      http.Handler
	db     *boltstore.DB
	sim    *klarnasim.Sim
	id     string // the session
	hppID  string
	secret string
	jwt    string // shop-a
	token  string // a customer token that refuses every charge with 403
}

// fuzzHandler builds the app of one fuzz target (each fuzzing worker
// process builds its own).
func fuzzHandler(f *testing.F) *fuzzApp {
	f.Helper()
	a, err := newFuzzApp(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { a.sim.Close(); _ = a.db.Close() })
	return a
}

func newFuzzApp(dir string) (*fuzzApp, error) {
	a := &fuzzApp{}
	// Fuzzing sends thousands of requests a second; the simulator's rate
	// limit would answer most with 429, which is not what is fuzzed here.
	a.sim = klarnasim.New(klarnasim.Options{Seed: 5, CallbackRetries: -1, Unlimited: true})
	a.sim.SetPublicURL("http://klarna.test")
	kl, err := klarna.New(klarna.Config{BaseURL: "http://klarna.test", Username: "sim", Password: "sim",
		HTTPClient: &http.Client{Transport: handlerTransport{a.sim.Handler()}}, MaxAttempts: 1, CreateSessionRate: -1, OtherRate: -1, TokenOrderRate: -1})
	if err != nil {
		return nil, err
	}
	a.db, err = boltstore.Open(filepath.Join(dir, "fuzz.db"), boltstore.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	svc := hpp.New(a.db, kl, hpp.Config{PublicURL: "http://127.0.0.1:9"})
	auth, err := webhook.NewAuthenticator([]byte(hsKey), nil, "hppd", nil)
	if err != nil {
		return nil, err
	}
	a.h = webhook.New(webhook.Config{Service: svc, Auth: auth})
	a.jwt, err = webhook.IssueToken([]byte(hsKey), "shop-a", "hppd", 24*time.Hour, time.Now())
	if err != nil {
		return nil, err
	}
	var p core.Purchase
	if err := json.Unmarshal(mustJSON(purchase(10000)), &p); err != nil {
		return nil, err
	}
	s, err := svc.CreateSession(context.Background(), "shop-a", hpp.SessionRequest{Purchase: p,
		ReturnURLs: core.ReturnURLs{Success: "https://shop.example/ok", Failure: "https://shop.example/fail"}})
	if err != nil {
		return nil, err
	}
	a.id, a.hppID = s.ID, s.HPPSessionID
	for _, r := range a.sim.Requests() {
		if r.Operation == "create_hpp_session" {
			var body struct {
				MerchantURLs struct {
					StatusUpdate string `json:"status_update"`
				} `json:"merchant_urls"`
			}
			_ = json.Unmarshal([]byte(r.Body), &body)
			u, _ := url.Parse(body.MerchantURLs.StatusUpdate)
			a.secret = u.Query().Get("secret")
		}
	}
	a.token = a.sim.CreateToken("TOKEN_FORBIDDEN", 0)
	return a, nil
}

// serveRaw parses a raw request the way net/http's server does and serves
// it; ok is false when the server would have refused it before hppd.
func (a *fuzzApp) serveRaw(raw string) (res *httptest.ResponseRecorder, req *http.Request, ok bool) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		return nil, nil, false
	}
	req.RemoteAddr = "192.0.2.1:1234"
	w := httptest.NewRecorder()
	a.h.ServeHTTP(w, req)
	return w, req, true
}

// sessionJSON is the stored session, to compare before and after.
func (a *fuzzApp) sessionJSON(t *testing.T) string {
	var out []byte
	err := a.db.View(func(tx store.Tx) error {
		s, err := tx.Session(a.id)
		if err != nil {
			return err
		}
		out, err = json.Marshal(s)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// syncScheduled reports whether a re-read job of the session exists.
func (a *fuzzApp) syncScheduled(t *testing.T) bool {
	var found bool
	if err := a.db.View(func(tx store.Tx) error {
		_, err := tx.Job(core.SyncJobID(a.id))
		if core.IsNotFound(err) {
			return nil
		}
		found = err == nil
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

func (a *fuzzApp) seen(t *testing.T, event string) bool {
	if event == "" || len(event) > 1024 {
		return false
	}
	var seen bool
	if err := a.db.View(func(tx store.Tx) error {
		var err error
		seen, err = tx.SeenEvent(a.hppID, event)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return seen
}

// checkRefusal asserts hppd's JSON error shape on a 4xx.
func checkRefusal(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message, Field string } `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("%d answer is not hppd's error JSON: %q", w.Code, w.Body.String())
	}
	if w.Code == http.StatusBadRequest && body.Error.Field == "" {
		t.Fatalf("a 400 that names no field: %s", w.Body.String())
	}
}

// FuzzCallbackRequest fuzzes the callback URL (path, secret and hppId) and
// body. In the inputs, {ID}, {HPP} and {SECRET} stand for the session's real
// values, so the fuzzer explores around a genuine callback.
func FuzzCallbackRequest(f *testing.F) {
	genuine := `{"event_id":"e-1","session":{"session_id":"{HPP}","status":"IN_PROGRESS"}}`
	f.Add("/klarna/hpp/{ID}/status?secret={SECRET}&hppId={HPP}", genuine)
	f.Add("/klarna/hpp/{ID}/status?secret={SECRET}&hppId={HPP}", `{"event_id":"e-2","session":{"session_id":"{HPP}","status":"COMPLETED","authorization_token":"x"}}`)
	f.Add("/klarna/hpp/{ID}/status?secret={SECRET}", `{"event_id":"e-3","session":{"session_id":"{HPP}","status":"BACK","updated_at":"2000-01-01T00:00:00Z"}}`)
	f.Add("/klarna/hpp/{ID}/status?secret={SECRET}x&hppId={HPP}", genuine)
	f.Add("/klarna/hpp/{ID}/status?secret=&hppId={HPP}", genuine)
	f.Add("/klarna/hpp/{ID}/status?hppId={HPP}&secret={SECRET}&secret=x", genuine)
	f.Add("/klarna/hpp/{ID}%2F../status?secret={SECRET}", genuine)
	f.Add("/klarna/hpp/%00/status?secret=%zz", genuine)
	f.Add("/klarna/hpp//status", genuine)
	f.Add("/klarna/hpp/{ID}/status?secret={SECRET}&hppId={HPP}", `{"event_id":"e-4","session":{"session_id":"{HPP}","status":"PAID"}}`)
	f.Add("/klarna/hpp/{ID}/status?secret={SECRET}&hppId={HPP}", `{"event_id":"","session":{}}`)
	f.Add("/klarna/hpp/{ID}/status?secret={SECRET}&hppId={HPP}", `{"event_id":"e-5","session":{"session_id":"{HPP}","status":"WAITING","updated_at":1e999}}`)
	f.Add("/klarna/hpp/{ID}/status?secret={SECRET}&hppId={HPP}", `{"event_id":"e-6","session":{"session_id":"{HPP}","status":"ERROR"}}trailing`)
	a := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, target, body string) {
		fill := strings.NewReplacer("{ID}", a.id, "{HPP}", a.hppID, "{SECRET}", url.QueryEscape(a.secret))
		target, body = fill.Replace(target), fill.Replace(body)
		if !strings.HasPrefix(target, "/klarna/hpp/") || strings.ContainsAny(target, " \r\n") {
			return
		}
		var event struct {
			EventID string `json:"event_id"`
		}
		_ = json.Unmarshal([]byte(body), &event)
		seenBefore := a.seen(t, event.EventID)
		before := a.sessionJSON(t)
		raw := "POST " + target + " HTTP/1.1\r\nHost: hppd\r\nContent-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
		w, _, ok := a.serveRaw(raw)
		if !ok {
			return
		}
		switch w.Code {
		case http.StatusOK:
			var out struct {
				Status    string `json:"status"`
				Duplicate *bool  `json:"duplicate"`
				Resync    bool   `json:"resync"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Status != "accepted" || out.Duplicate == nil {
				t.Fatalf("2xx answer %q", w.Body.String())
			}
			if out.Resync {
				// An authenticated body hppd cannot act on: acknowledged,
				// and a re-read of the session is on disk instead.
				if !a.syncScheduled(t) {
					t.Fatalf("callback %q answered with a re-read, but none is scheduled", body)
				}
				return
			}
			// Accepted means on disk.
			if !a.seen(t, event.EventID) {
				t.Fatalf("accepted event %q is not recorded", event.EventID)
			}
			if seenBefore && !*out.Duplicate {
				t.Fatalf("a replay of %q was not reported as a duplicate", event.EventID)
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
			checkRefusal(t, w)
			if after := a.sessionJSON(t); after != before {
				t.Fatalf("a refused callback (%d %s) changed the session", w.Code, w.Body.String())
			}
			if !seenBefore && a.seen(t, event.EventID) {
				t.Fatalf("a refused callback (%d) used up event id %q", w.Code, event.EventID)
			}
		default:
			t.Fatalf("POST %s: %d %s", target, w.Code, w.Body.String())
		}
	})
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// FuzzStorefrontRequest fuzzes the JSON bodies of POST /v1/sessions and POST
// /v1/charges: a body is either accepted (201, and Klarna accepted what hppd
// sent) or refused with a 4xx naming the field, and a refusal adds nothing
// to the store.
func FuzzStorefrontRequest(f *testing.F) {
	session := mustJSON(sessionBody(10000))
	f.Add(false, session)
	f.Add(false, with(sessionBody(10000), map[string]any{"integration": "sdk", "return_urls": nil}))
	f.Add(false, with(sessionBody(10000), map[string]any{"place_order_mode": "CAPTURE_ORDER", "billing_address": map[string]any{"given_name": "Å", "country": "SE"}}))
	f.Add(false, with(sessionBody(10000), map[string]any{"line.total_tax_amount": 2001, "order_tax_amount": 2001}))
	f.Add(false, with(sessionBody(10000), map[string]any{"order_amount": 1e30}))
	f.Add(false, []byte(`{"purchase_country":"SE","order_lines":[{"quantity":"1"}]}`))
	f.Add(false, []byte(`null`))
	f.Add(true, mustJSON(chargeBody("{TOKEN}", false)))
	f.Add(true, with(chargeBody("{TOKEN}", true), map[string]any{"integration": "sdk"}))
	f.Add(true, with(chargeBody("{TOKEN}", false), map[string]any{"line.merchant_data": strings.Repeat("m", 300)}))
	f.Add(true, []byte(`{"customer_token":"{TOKEN}","customer_present":"no"}`))
	a := fuzzHandler(f)
	var n int
	var mu sync.Mutex
	f.Fuzz(func(t *testing.T, charge bool, body []byte) {
		body = bytes.ReplaceAll(body, []byte("{TOKEN}"), []byte(a.token))
		path := "/v1/sessions"
		if charge {
			path = "/v1/charges"
		}
		sessions, charges := a.counts(t)
		mu.Lock()
		n++
		key := "fuzz-" + itoa(n) + "-" + itoa(int(time.Now().UnixNano()%1e9))
		mu.Unlock()
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+a.jwt)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		w := httptest.NewRecorder()
		a.h.ServeHTTP(w, req)
		switch {
		case w.Code == http.StatusCreated:
		case w.Code >= 400 && w.Code < 500:
			checkRefusal(t, w)
			if s, c := a.counts(t); s != sessions || c != charges {
				t.Fatalf("a refused request (%d %s) stored something: sessions %d→%d, charges %d→%d", w.Code, w.Body.String(), sessions, s, charges, c)
			}
		default:
			t.Fatalf("POST %s %s: %d %s", path, body, w.Code, w.Body.String())
		}
	})
}

func (a *fuzzApp) counts(t *testing.T) (sessions, charges int) {
	err := a.db.View(func(tx store.Tx) error {
		s, c, _, err := tx.Counts()
		for _, v := range s {
			sessions += v
		}
		for _, v := range c {
			charges += v
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return sessions, charges
}
