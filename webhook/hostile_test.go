package webhook_test

// Hostile input against the real daemon (internal/daemon.Main on port 0, its
// real http.Server and timeouts) and the in-process Klarna simulator. Every
// row names the answer it expects and asserts that the store, compared
// bucket by bucket and key by key, did not change; the few rows that are
// legitimately acknowledged say which buckets they may touch.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/hppd/hppd/internal/testutil"
	"github.com/hppd/hppd/store/boltstore"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/testenv"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/webhook"
)

const hsKey = "0123456789abcdef0123456789abcdef-hostile-key"

// clock is a settable clock shared by hppd and the simulator.
type clock struct {
	mu    sync.Mutex
	off   time.Duration
	fixed time.Time // when set, the clock stands still there
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.fixed.IsZero() {
		return c.fixed
	}
	return time.Now().Add(c.off)
}

func (c *clock) Freeze(at time.Time) {
	c.mu.Lock()
	c.fixed = at
	c.mu.Unlock()
}

// jwtKeys are the storefront signing keys of the tests: private keys for
// RS256, ES256 and EdDSA, and the PEM file of their public keys that hppd is
// configured with.
type jwtKeys struct {
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
	pem     []byte // every public key
	rsaPEM  []byte // the RSA public key alone
	ecPEM   []byte
	pemFile string
}

var (
	keysOnce sync.Once
	keys     *jwtKeys
	keysErr  error
)

func testKeys(t *testing.T) *jwtKeys {
	t.Helper()
	keysOnce.Do(func() {
		k := &jwtKeys{}
		if k.rsa, keysErr = rsa.GenerateKey(rand.Reader, 2048); keysErr != nil {
			return
		}
		if k.ec, keysErr = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); keysErr != nil {
			return
		}
		if _, k.ed, keysErr = ed25519.GenerateKey(rand.Reader); keysErr != nil {
			return
		}
		enc := func(pub any) []byte {
			der, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				keysErr = err
				return nil
			}
			return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		}
		k.rsaPEM, k.ecPEM = enc(&k.rsa.PublicKey), enc(&k.ec.PublicKey)
		k.pem = append(append(append([]byte{}, k.rsaPEM...), k.ecPEM...), enc(k.ed.Public())...)
		dir, err := os.MkdirTemp("", "hppd-jwt-keys")
		if err != nil {
			keysErr = err
			return
		}
		k.pemFile = filepath.Join(dir, "storefronts.pem")
		keysErr = os.WriteFile(k.pemFile, k.pem, 0o600)
		keys = k
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return keys
}

// henv is a running simulator plus a running hppd.
type henv struct {
	t      *testing.T
	clock  *clock
	sim    *klarnasim.Sim
	simURL string
	m      *daemon.Main
	base   string
	http   *http.Client
	logs   *testutil.Buffer
	keys   *jwtKeys

	// secrets maps hppd session ids to the callback secret hppd gave Klarna.
	secrets map[string]string
}

func newHostileEnv(t *testing.T, timeouts daemon.Timeouts) *henv {
	t.Helper()
	e := &henv{t: t, clock: &clock{}, logs: &testutil.Buffer{}, keys: testKeys(t), secrets: map[string]string{}}
	te := testenv.New(t, testenv.Options{
		Seed: 3, Now: e.clock.Now, Logger: newDebugLogger(e.logs), Timeouts: timeouts,
		Sim: func(o *klarnasim.Options) {
			o.CallbackTimeout, o.CallbackRetryDelay = 2*time.Second, 20*time.Millisecond
		},
		Vars: map[string]string{
			"HPPD_JWT_HS256_KEY":        hsKey,
			"HPPD_JWT_PUBLIC_KEYS_FILE": e.keys.pemFile,
			"HPPD_STALE_AFTER":          "",
		},
	})
	e.sim, e.simURL, e.m, e.base = te.Sim, te.SimURL, te.Main, te.Base
	e.http = &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

// newDebugLogger logs everything, as HPPD_LOG_LEVEL=debug does, without the
// command's redaction of secret-named attributes: what hppd's packages log
// must be clean by itself.
func newDebugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (e *henv) token(storefront string) string {
	e.t.Helper()
	tok, err := webhook.IssueToken([]byte(hsKey), storefront, "hppd", time.Hour, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// response is what hppd answered.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	out := map[string]any{}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("answer %d is not JSON: %q", r.status, r.body)
	}
	return out
}

// do sends a request; hdr values replace the defaults, "" removes a header.
// Storefront paths get a fresh shop-a token unless hdr says otherwise.
func (e *henv) do(method, path string, body []byte, hdr map[string]string) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatalf("build %s %s: %v", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if strings.HasPrefix(path, "/v1/") {
		req.Header.Set("Authorization", "Bearer "+e.token("shop-a"))
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: raw}
}

// createSession creates a session through the API and returns its resource.
func (e *henv) createSession(storefront string, body map[string]any) map[string]any {
	e.t.Helper()
	b, _ := json.Marshal(body)
	r := e.do("POST", "/v1/sessions", b, map[string]string{"Authorization": "Bearer " + e.token(storefront)})
	if r.status != http.StatusCreated {
		e.t.Fatalf("create session: %d %s", r.status, r.body)
	}
	s := r.json(e.t)
	e.learnSecrets()
	return s
}

// learnSecrets reads the callback secrets hppd gave Klarna from the status
// URLs the simulator recorded, keyed by hppd's session id in their path.
func (e *henv) learnSecrets() {
	e.t.Helper()
	for _, r := range e.sim.Requests() {
		if r.Operation != "create_hpp_session" || r.Status != http.StatusCreated {
			continue
		}
		var body struct {
			MerchantURLs struct {
				StatusUpdate string `json:"status_update"`
			} `json:"merchant_urls"`
		}
		if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
			e.t.Fatal(err)
		}
		u, err := url.Parse(body.MerchantURLs.StatusUpdate)
		if err != nil {
			e.t.Fatal(err)
		}
		parts := strings.Split(u.Path, "/") // "", klarna, hpp, id, status
		e.secrets[parts[3]] = u.Query().Get("secret")
	}
}

func purchase(amount int64) map[string]any {
	return map[string]any{
		"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
		"order_amount": amount, "order_tax_amount": amount / 5,
		"order_lines": []any{map[string]any{
			"type": "physical", "name": "Espresso cups", "quantity": 2, "unit_price": amount / 2,
			"tax_rate": 2500, "total_amount": amount, "total_tax_amount": amount / 5,
		}},
	}
}

func sessionBody(amount int64) map[string]any {
	b := purchase(amount)
	b["return_urls"] = map[string]any{"success": "https://shop.example/ok", "failure": "https://shop.example/fail"}
	return b
}

func chargeBody(token string, present bool) map[string]any {
	b := purchase(5000)
	b["customer_token"] = token
	b["customer_present"] = present
	b["return_urls"] = map[string]any{"success": "https://shop.example/ok", "failure": "https://shop.example/fail"}
	return b
}

// with returns a copy of b (a JSON object) with the edits applied; a nil
// value removes the key. Keys of order_lines[0] are written "line.key".
func with(b map[string]any, edits map[string]any) []byte {
	var c map[string]any
	raw, _ := json.Marshal(b)
	_ = json.Unmarshal(raw, &c)
	for k, v := range edits {
		m := c
		if lk, ok := strings.CutPrefix(k, "line."); ok {
			m, k = c["order_lines"].([]any)[0].(map[string]any), lk
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	out, _ := json.Marshal(c)
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func hppOf(s map[string]any) string {
	return s["klarna"].(map[string]any)["hpp_session_id"].(string)
}

// eventually waits (bounded) for cond; it is a wait, not a speed assertion.
func (e *henv) eventually(what string, cond func() bool) {
	e.t.Helper()
	testenv.Eventually(e.t, what, cond)
}

// quiet waits until the simulator has delivered every callback and hppd has
// no job left, so that nothing changes the store behind a row's back.
func (e *henv) quiet() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := e.sim.WaitCallbacks(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.eventually("hppd's jobs to finish", func() bool {
		n := 0
		_ = e.m.DB.View(func(tx store.Tx) error {
			return tx.AllJobs(func(*core.Job) error { n++; return nil })
		})
		return n == 0
	})
}

// dump is every key and value of every bucket of the store, read from a
// consistent backup of the live file (hex keys, hex values).
type dump map[string]map[string]string

func (e *henv) dump() dump {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), fmt.Sprintf("dump-%d.db", time.Now().UnixNano()))
	if err := e.m.DB.BackupFile(path); err != nil {
		e.t.Fatal(err)
	}
	defer os.Remove(path)
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	defer bdb.Close()
	d := dump{eventMarks: {}}
	err = bdb.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			m := map[string]string{}
			d[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				if string(name) == "sessions" {
					marks, value, err := boltstore.SplitEventMarks(v)
					if err != nil {
						return err
					}
					d[eventMarks][hex.EncodeToString(k)] = hex.EncodeToString(marks)
					v = value
				}
				m[hex.EncodeToString(k)] = hex.EncodeToString(v)
				return nil
			})
		})
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// eventMarks is the dump's pseudo-bucket of the callback de-duplication
// marks that session records carry: a session's key → its marks.
const eventMarks = "sessions (event marks)"

// diff lists what changed from d to after outside the allowed buckets.
func (d dump) diff(after dump, allow ...string) []string {
	allowed := map[string]bool{}
	for _, a := range allow {
		allowed[a] = true
	}
	var out []string
	names := map[string]bool{}
	for n := range d {
		names[n] = true
	}
	for n := range after {
		names[n] = true
	}
	for n := range names {
		if allowed[n] {
			continue
		}
		a, b := d[n], after[n]
		for k, v := range a {
			if w, ok := b[k]; !ok {
				out = append(out, fmt.Sprintf("%s: key %s removed", n, printable(k)))
			} else if w != v {
				out = append(out, fmt.Sprintf("%s: key %s changed", n, printable(k)))
			}
		}
		for k := range b {
			if _, ok := a[k]; !ok {
				out = append(out, fmt.Sprintf("%s: key %s added", n, printable(k)))
			}
		}
	}
	sort.Strings(out)
	return out
}

// printable shows a hex key as text when it is text.
func printable(hexKey string) string {
	b, _ := hex.DecodeString(hexKey)
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return hexKey
		}
	}
	return string(b)
}

// row is one hostile request and what hppd must answer.
type row struct {
	name         string
	method, path string
	body         []byte
	hdr          map[string]string
	want         int
	field        string   // the error's field, when the answer is a 4xx that names one
	allow        []string // buckets the row may change (acknowledged events)
	plain        bool     // the answer comes from net/http itself, not hppd (no JSON)
	check        func(t *testing.T, r response)
}

// run sends each row to hppd and checks its answer and the store.
func (e *henv) run(t *testing.T, rows []row) {
	t.Helper()
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			e.quiet()
			before := e.dump()
			res := e.do(r.method, r.path, r.body, r.hdr)
			if res.status != r.want {
				t.Errorf("%s %s: %d %s, want %d", r.method, strings.SplitN(r.path, "?", 2)[0], res.status, trim(res.body), r.want)
			}
			if res.status >= 400 && !r.plain {
				checkErrorBody(t, res, r.field)
			}
			if r.check != nil {
				r.check(t, res)
			}
			e.quiet()
			if changes := before.diff(e.dump(), r.allow...); len(changes) > 0 {
				t.Errorf("the store changed:\n  %s", strings.Join(changes, "\n  "))
			}
		})
	}
}

func trim(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// goType matches Go type names in a message ("[]core.OrderLine",
// "webhook.sessionBody", "int64"), which no API client knows.
var goType = regexp.MustCompile(`\[\][A-Za-z*]|\b[a-z]+\.[A-Za-z]+[A-Z]\w*|\b(u?int(8|16|32|64)?|float(32|64)|map\[)\b`)

// checkErrorBody asserts hppd's error shape: JSON {"error":{code,message,field}}.
func checkErrorBody(t *testing.T, res response, field string) {
	t.Helper()
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error answer has Content-Type %q", ct)
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	if err := json.Unmarshal(res.body, &body); err != nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Errorf("error answer %q is not {\"error\":{code,message}}", trim(res.body))
	}
	if goType.MatchString(body.Error.Message) {
		t.Errorf("error message %q names a Go type, not a JSON one", body.Error.Message)
		return
	}
	if res.status == http.StatusInternalServerError {
		t.Errorf("internal error for hostile input: %s", res.body)
	}
	if field != "" && body.Error.Field != field {
		t.Errorf("error names field %q (%s), want %q", body.Error.Field, body.Error.Message, field)
	}
	if res.status == http.StatusBadRequest && body.Error.Field == "" {
		t.Errorf("a 400 that names no field: %s", res.body)
	}
}

// fixtures are the records the hostile rows aim at.
type fixtures struct {
	a, b, final, sdk, other map[string]any // sessions: two pending of shop-a, one order_placed, one sdk, one of shop-b
	charged, needsCustomer  string         // charge ids of shop-a
	openedAt                time.Time      // updated_at of the genuine IN_PROGRESS callback on a
}

func (e *henv) fixtures() *fixtures {
	e.t.Helper()
	f := &fixtures{}
	f.a = e.createSession("shop-a", sessionBody(10000))
	f.b = e.createSession("shop-a", sessionBody(20000))
	f.final = e.createSession("shop-a", sessionBody(30000))
	sdk := purchase(10000)
	sdk["integration"] = "sdk"
	f.sdk = e.createSession("shop-a", sdk)
	f.other = e.createSession("shop-b", sessionBody(40000))

	// The shopper pays session final; Klarna's callback and the re-read
	// place the order.
	if _, _, err := e.sim.Act(hppOf(f.final), "pay"); err != nil {
		e.t.Fatal(err)
	}
	e.eventually("the order of the paid session", func() bool {
		var st core.SessionStatus
		_ = e.m.DB.View(func(tx store.Tx) error {
			s, err := tx.Session(f.final["id"].(string))
			if err == nil {
				st = s.Status
			}
			return err
		})
		return st == core.SessionOrderPlaced
	})

	// A genuine IN_PROGRESS callback on a, as Klarna would send it.
	f.openedAt = e.clock.Now().UTC().Truncate(time.Millisecond)
	res := e.callback(f.a, e.secrets[f.a["id"].(string)], hppOf(f.a), callbackBody("ev-open", hppOf(f.a), "IN_PROGRESS", f.openedAt))
	if res.status != http.StatusOK {
		e.t.Fatalf("genuine callback: %d %s", res.status, res.body)
	}

	ok := e.sim.CreateToken("ok", 0)
	unavailable := e.sim.CreateToken("unavailable", 0)
	for _, c := range []struct {
		token string
		want  string
		dst   *string
	}{{ok, "charged", &f.charged}, {unavailable, "needs_customer", &f.needsCustomer}} {
		r := e.do("POST", "/v1/charges", mustJSON(chargeBody(c.token, false)), map[string]string{"Idempotency-Key": "fixture-" + c.want})
		out := r.json(e.t)
		if r.status != http.StatusCreated || out["status"] != c.want {
			e.t.Fatalf("fixture charge: %d %s", r.status, r.body)
		}
		*c.dst = out["id"].(string)
	}
	e.quiet()
	return f
}

func callbackBody(event, hpp, status string, updated time.Time) []byte {
	s := map[string]any{"session_id": hpp, "status": status}
	if !updated.IsZero() {
		s["updated_at"] = updated.Format(time.RFC3339Nano)
	}
	return mustJSON(map[string]any{"event_id": event, "session": s})
}

func callbackPath(id, secret, hpp string) string {
	return "/klarna/hpp/" + url.PathEscape(id) + "/status?secret=" + url.QueryEscape(secret) + "&hppId=" + url.QueryEscape(hpp)
}

func (e *henv) callback(s map[string]any, secret, hpp string, body []byte) response {
	return e.do("POST", callbackPath(s["id"].(string), secret, hpp), body, nil)
}

func TestHostileInput(t *testing.T) {
	e := newHostileEnv(t, daemon.Timeouts{})
	f := e.fixtures()
	idA, idB, idF, idSDK, idOther := f.a["id"].(string), f.b["id"].(string), f.final["id"].(string), f.sdk["id"].(string), f.other["id"].(string)
	hA, hB, hF := hppOf(f.a), hppOf(f.b), hppOf(f.final)
	secA, secB, secF := e.secrets[idA], e.secrets[idB], e.secrets[idF]
	if secA == "" || secB == "" || secF == "" || secA == secB {
		t.Fatalf("callback secrets not found: %q %q %q", secA, secB, secF)
	}
	cbA := func(secret, hpp string) string { return callbackPath(idA, secret, hpp) }
	good := func(event, status string) []byte { return callbackBody(event, hA, status, time.Time{}) }
	wrongSecret := strings.Repeat("A", len(secA))
	big := bytes.Repeat([]byte("x"), 64<<10+1)
	okBody := sessionBody(10000)
	long := func(n int) string { return strings.Repeat("x", n) }

	// An authenticated callback whose body hppd cannot act on is
	// acknowledged and answered with a re-read (FACTS 8.8, 8.9): the re-read
	// may move the session's next check and run a job, nothing else.
	resyncBuckets := []string{"event_ids", "events_by_time", eventMarks, "sessions", "sessions_due", "jobs", "jobs_due"}
	resynced := func(t *testing.T, r response) {
		if r.json(t)["resync"] != true {
			t.Errorf("unusable body not answered with a re-read: %s", r.body)
		}
	}

	// An unknown session and a wrong secret get the same answer, so the
	// callback URL does not say which session ids exist.
	unknown := e.do("POST", callbackPath("ses_"+strings.Repeat("a", 26), secA, hA), good("e0", "COMPLETED"), nil)
	sameAsUnknown := func(t *testing.T, r response) {
		if r.status != unknown.status || string(r.body) != string(unknown.body) {
			t.Errorf("answer %d %s differs from an unknown session's %d %s", r.status, r.body, unknown.status, unknown.body)
		}
	}

	t.Run("callback", func(t *testing.T) {
		e.run(t, []row{
			{name: "missing secret", method: "POST", path: "/klarna/hpp/" + idA + "/status?hppId=" + hA, body: good("e1", "COMPLETED"), want: 404, check: sameAsUnknown},
			{name: "empty secret", method: "POST", path: cbA("", hA), body: good("e1", "COMPLETED"), want: 404, check: sameAsUnknown},
			{name: "wrong secret", method: "POST", path: cbA(wrongSecret, hA), body: good("e1", "COMPLETED"), want: 404, check: sameAsUnknown},
			{name: "truncated secret", method: "POST", path: cbA(secA[:len(secA)-1], hA), body: good("e1", "COMPLETED"), want: 404, check: sameAsUnknown},
			{name: "secret with one more character", method: "POST", path: cbA(secA+"A", hA), body: good("e1", "COMPLETED"), want: 404, check: sameAsUnknown},
			{name: "secret in another case", method: "POST", path: cbA(strings.ToUpper(secA), hA), body: good("e1", "COMPLETED"), want: 404, check: sameAsUnknown},
			{name: "other session's secret", method: "POST", path: cbA(secB, hA), body: good("e1", "COMPLETED"), want: 404, check: sameAsUnknown},
			{name: "secret given twice, wrong first", method: "POST", path: "/klarna/hpp/" + idA + "/status?secret=" + wrongSecret + "&secret=" + url.QueryEscape(secA) + "&hppId=" + hA, body: good("e1", "COMPLETED"), want: 404, check: sameAsUnknown},
			{name: "right secret on another session's id", method: "POST", path: callbackPath(idB, secA, hB), body: callbackBody("e1", hB, "COMPLETED", time.Time{}), want: 404, check: sameAsUnknown},
			{name: "unknown session id", method: "POST", path: callbackPath("ses_unknown", secA, hA), body: good("e1", "COMPLETED"), want: 404},
			{name: "unknown session id of hppd's format", method: "POST", path: callbackPath("ses_"+strings.Repeat("a", 26), secA, hA), body: good("e1", "COMPLETED"), want: 404, check: sameAsUnknown},
			{name: "malformed session id", method: "POST", path: callbackPath("../../v1/sessions", secA, hA), body: good("e1", "COMPLETED"), want: 404},
			{name: "NUL in the session id", method: "POST", path: "/klarna/hpp/ses%00x/status?secret=" + url.QueryEscape(secA), body: good("e1", "COMPLETED"), want: 404},
			{name: "very long session id", method: "POST", path: callbackPath(long(4000), secA, hA), body: good("e1", "COMPLETED"), want: 404},
			{name: "mismatched hppId in the URL", method: "POST", path: cbA(secA, hB), body: good("e1", "COMPLETED"), want: 404, field: "hppId"},
			{name: "missing hppId in the URL", method: "POST", path: "/klarna/hpp/" + idA + "/status?secret=" + url.QueryEscape(secA), body: good("e1", "COMPLETED"), want: 404, field: "hppId"},
			{name: "mismatched session_id in the body", method: "POST", path: cbA(secA, hA), body: callbackBody("e1", hB, "COMPLETED", time.Time{}), want: 404, field: "session.session_id"},
			{name: "invalid JSON", method: "POST", path: cbA(secA, hA), body: []byte(`{"event_id":"e1","session":`), want: 200, check: resynced, allow: resyncBuckets},
			{name: "empty body", method: "POST", path: cbA(secA, hA), body: []byte{}, want: 200, check: resynced, allow: resyncBuckets},
			{name: "not an object", method: "POST", path: cbA(secA, hA), body: []byte(`["COMPLETED"]`), want: 200, check: resynced, allow: resyncBuckets},
			{name: "wrong type of event_id", method: "POST", path: cbA(secA, hA), body: []byte(`{"event_id":42,"session":{"session_id":"` + hA + `","status":"COMPLETED"}}`), want: 200, check: resynced, allow: resyncBuckets},
			{name: "wrong type of session", method: "POST", path: cbA(secA, hA), body: []byte(`{"event_id":"e1","session":"COMPLETED"}`), want: 200, check: resynced, allow: resyncBuckets},
			{name: "huge number as updated_at", method: "POST", path: cbA(secA, hA), body: []byte(`{"event_id":"e1","session":{"session_id":"` + hA + `","status":"BACK","updated_at":1e999}}`), want: 200, check: resynced, allow: resyncBuckets},
			{name: "missing event_id", method: "POST", path: cbA(secA, hA), body: []byte(`{"session":{"session_id":"` + hA + `","status":"BACK"}}`), want: 200, check: resynced, allow: resyncBuckets},
			{name: "event_id too long", method: "POST", path: cbA(secA, hA), body: good(long(201), "BACK"), want: 200, check: resynced, allow: resyncBuckets},
			{name: "missing session", method: "POST", path: cbA(secA, hA), body: []byte(`{"event_id":"e1"}`), want: 200, check: resynced, allow: resyncBuckets},
			{name: "unknown status", method: "POST", path: cbA(secA, hA), body: good("e-paid", "PAID"), want: 200, check: resynced, allow: resyncBuckets},
			{name: "lower-case status", method: "POST", path: cbA(secA, hA), body: good("e-lower", "completed"), want: 200, check: resynced, allow: resyncBuckets},
			{name: "data after the object", method: "POST", path: cbA(secA, hA), body: append(good("e1", "BACK"), []byte(` {"event_id":"e2"}`)...), want: 200, check: resynced, allow: resyncBuckets},
			{name: "body over the limit", method: "POST", path: cbA(secA, hA), body: big, want: 413, field: "body",
				check: func(t *testing.T, r response) {
					if !strings.Contains(string(r.body), "64 KiB") {
						t.Errorf("413 does not say the limit: %s", r.body)
					}
				}},
			// Refused on the secret before the body is read.
			{name: "body over the limit without a secret", method: "POST", path: "/klarna/hpp/" + idA + "/status", body: big, want: 404, check: sameAsUnknown},
			{name: "GET instead of POST", method: "GET", path: cbA(secA, hA), want: 405},
			{name: "empty session id and kind", method: "POST", path: "/klarna/hpp//", body: good("e1", "COMPLETED"), want: 404},
			{name: "trailing slash", method: "POST", path: "/klarna/hpp/" + idA + "/status/?secret=" + url.QueryEscape(secA) + "&hppId=" + hA, body: good("e1", "COMPLETED"), want: 404},
			{name: "doubled slash", method: "POST", path: "/klarna//hpp/" + idA + "/status?secret=" + url.QueryEscape(secA) + "&hppId=" + hA, body: good("e1", "COMPLETED"), want: 404},
			{name: "replayed event with another body", method: "POST", path: cbA(secA, hA), body: good("ev-open", "BACK"), want: 200,
				check: func(t *testing.T, r response) {
					if r.json(t)["duplicate"] != true {
						t.Errorf("replay not reported as a duplicate: %s", r.body)
					}
				}},
			// An event older than what hppd knows is acknowledged (Klarna must
			// stop resending it) and changes nothing but the de-duplication mark.
			{name: "an earlier status after a later one", method: "POST", path: cbA(secA, hA), body: callbackBody("ev-old", hA, "BACK", f.openedAt.Add(-time.Minute)), want: 200,
				allow: []string{"event_ids", "events_by_time", eventMarks}},
			// Once final, even the genuine secret changes nothing: Klarna's
			// repeats are acknowledged and ignored.
			{name: "final session, the final status again", method: "POST", path: callbackPath(idF, secF, hF), body: callbackBody("ev-final-2", hF, "COMPLETED", time.Time{}), want: 200,
				check: func(t *testing.T, r response) {
					if r.json(t)["duplicate"] != true {
						t.Errorf("repeat after final not reported as a duplicate: %s", r.body)
					}
				}},
			{name: "final session, an earlier status", method: "POST", path: callbackPath(idF, secF, hF), body: callbackBody("ev-final-3", hF, "IN_PROGRESS", time.Time{}), want: 200},
			{name: "final session, cancelled", method: "POST", path: callbackPath(idF, secF, hF), body: callbackBody("ev-final-4", hF, "CANCELLED", time.Time{}), want: 200},
			{name: "final session, wrong secret", method: "POST", path: callbackPath(idF, wrongSecret, hF), body: callbackBody("ev-final-5", hF, "CANCELLED", time.Time{}), want: 404, check: sameAsUnknown},
			{name: "final session, invalid body", method: "POST", path: callbackPath(idF, secF, hF), body: []byte(`{`), want: 200,
				check: func(t *testing.T, r response) {
					if r.json(t)["duplicate"] != true {
						t.Errorf("unusable body after final not acknowledged as a duplicate: %s", r.body)
					}
				}},
		})
	})

	t.Run("shopper", func(t *testing.T) {
		e.run(t, []row{
			{name: "unknown kind", method: "GET", path: "/shopper/" + idA + "/pay?hppId=" + hA, want: 404},
			{name: "unknown session id", method: "GET", path: "/shopper/ses_unknown/success?hppId=" + hA, want: 404},
			{name: "malformed session id", method: "GET", path: "/shopper/%2e%2e%2fv1/success?hppId=" + hA, want: 404},
			{name: "very long session id", method: "GET", path: "/shopper/" + long(4000) + "/success", want: 404},
			{name: "mismatched hppId", method: "GET", path: "/shopper/" + idA + "/success?hppId=" + hB, want: 404, field: "hppId"},
			// Only the session id (guessed or leaked): no redirect to the
			// storefront's return URL.
			{name: "no hppId", method: "GET", path: "/shopper/" + idF + "/success", want: 404, field: "hppId", check: noLocation},
			{name: "empty hppId", method: "GET", path: "/shopper/" + idF + "/success?hppId=", want: 404, field: "hppId", check: noLocation},
			{name: "hppId of another case", method: "GET", path: "/shopper/" + idF + "/success?hppId=" + strings.ToUpper(hF), want: 404, field: "hppId", check: noLocation},
			{name: "hppId template left unfilled", method: "GET", path: "/shopper/" + idF + "/success?hppId={{session_id}}", want: 404, field: "hppId", check: noLocation},
			{name: "extra path element", method: "GET", path: "/shopper/" + idA + "/success/again?hppId=" + hA, want: 404},
			{name: "POST instead of GET", method: "POST", path: "/shopper/" + idA + "/success?hppId=" + hA, want: 405},
			{name: "trailing slash", method: "GET", path: "/shopper/" + idA + "/success/?hppId=" + hA, want: 404},
			{name: "upper-case kind", method: "GET", path: "/shopper/" + idA + "/SUCCESS?hppId=" + hA, want: 404},
			{name: "path that looks like another host", method: "GET", path: "//evil.example/", want: 404,
				check: func(t *testing.T, r response) {
					if loc := r.header.Get("Location"); loc != "" {
						t.Errorf("redirects to %q", loc)
					}
				}},
			// A shopper coming back to a final session is sent on, and nothing changes.
			{name: "back to a final session", method: "GET", path: "/shopper/" + idF + "/success?hppId=" + hF, want: 303,
				check: func(t *testing.T, r response) {
					if loc := r.header.Get("Location"); !strings.HasPrefix(loc, "https://shop.example/ok?") || !strings.Contains(loc, "hppd_session="+idF) {
						t.Errorf("Location %q", loc)
					}
				}},
		})
	})

	t.Run("storefront", func(t *testing.T) {
		ik := func(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }
		cb := chargeBody("tok-x", false)
		e.run(t, []row{
			{name: "sessions: invalid JSON", method: "POST", path: "/v1/sessions", body: []byte(`{"purchase_country":`), want: 400, field: "body"},
			{name: "sessions: a form, not JSON", method: "POST", path: "/v1/sessions", body: mustJSON(okBody), hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, want: 415, field: "Content-Type"},
			{name: "sessions: text, not JSON", method: "POST", path: "/v1/sessions", body: mustJSON(okBody), hdr: map[string]string{"Content-Type": "text/plain; charset=utf-8"}, want: 415, field: "Content-Type"},
			{name: "sessions: an unparsable Content-Type", method: "POST", path: "/v1/sessions", body: mustJSON(okBody), hdr: map[string]string{"Content-Type": "application/json; ===="}, want: 415, field: "Content-Type"},
			{name: "sessions: empty body", method: "POST", path: "/v1/sessions", body: []byte{}, want: 400, field: "body"},
			{name: "sessions: null", method: "POST", path: "/v1/sessions", body: []byte(`null`), want: 400, field: "purchase_country"},
			{name: "sessions: array", method: "POST", path: "/v1/sessions", body: []byte(`[]`), want: 400, field: "body"},
			{name: "sessions: two objects", method: "POST", path: "/v1/sessions", body: append(mustJSON(okBody), []byte(`{}`)...), want: 400, field: "body"},
			{name: "sessions: unknown field", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"colour": "red"}), want: 400, field: "colour"},
			{name: "sessions: field with an empty name", method: "POST", path: "/v1/sessions", body: []byte(`{"":""}`), want: 400, field: "body"},
			{name: "sessions: field of the embedded Go struct", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"Purchase": map[string]any{}}), want: 400, field: "Purchase"},
			{name: "sessions: amount as a string", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"order_amount": "10000"}), want: 400, field: "order_amount"},
			{name: "sessions: fractional amount", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"order_amount": 100.5}), want: 400, field: "order_amount"},
			{name: "sessions: huge number", method: "POST", path: "/v1/sessions", body: bytes.Replace(mustJSON(okBody), []byte(`"order_amount":10000`), []byte(`"order_amount":1e30`), 1), want: 400, field: "order_amount"},
			{name: "sessions: just above int64", method: "POST", path: "/v1/sessions", body: bytes.Replace(mustJSON(okBody), []byte(`"order_amount":10000`), []byte(`"order_amount":9223372036854775808`), 1), want: 400, field: "order_amount"},
			{name: "sessions: quantity as a string", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"line.quantity": "2"}), want: 400, field: "order_lines[0].quantity"},
			{name: "sessions: unknown field in a line", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"line.sku": "A-1"}), want: 400, field: "order_lines[0].sku"},
			{name: "sessions: a line that is not an object", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"order_lines": []any{"cup"}}), want: 400, field: "order_lines[0]"},
			{name: "sessions: return URL as a number", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"return_urls": map[string]any{"success": 1}}), want: 400, field: "return_urls.success"},
			{name: "sessions: lines not an array", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"order_lines": "cups"}), want: 400, field: "order_lines"},
			{name: "sessions: negative amount", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"order_amount": -10000}), want: 400, field: "order_amount"},
			{name: "sessions: negative quantity", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"line.quantity": -2}), want: 400, field: "order_lines[0].quantity"},
			{name: "sessions: negative unit price", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"line.unit_price": -5000}), want: 400, field: "order_lines[0].unit_price"},
			{name: "sessions: negative discount", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"line.total_discount_amount": -1}), want: 400, field: "order_lines[0].total_discount_amount"},
			{name: "sessions: lines do not sum", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"order_amount": 10001}), want: 400, field: "order_amount"},
			{name: "sessions: tax does not sum", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"order_tax_amount": 1999}), want: 400, field: "order_tax_amount"},
			{name: "sessions: line total is not quantity times price", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"line.unit_price": 5001}), want: 400, field: "order_lines[0].total_amount"},
			{name: "sessions: line tax off by two", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"line.total_tax_amount": 2002, "order_tax_amount": 2002}), want: 400, field: "order_lines[0].total_tax_amount"},
			{name: "sessions: quantity times price overflows", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"line.quantity": int64(1) << 62, "line.unit_price": 4, "line.total_amount": 0}), want: 400, field: "order_lines[0].total_amount"},
			{name: "sessions: unit price above the ceiling", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"line.unit_price": 100_000_001}), want: 400, field: "order_lines[0].unit_price"},
			{name: "sessions: no lines", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"order_lines": []any{}}), want: 400, field: "order_lines"},
			{name: "sessions: currency of another country", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"purchase_currency": "EUR"}), want: 400, field: "purchase_currency"},
			{name: "sessions: not a Klarna market", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"purchase_country": "ZZ"}), want: 400, field: "purchase_country"},
			{name: "sessions: malformed locale", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"locale": "sv_SE"}), want: 400, field: "locale"},
			{name: "sessions: unknown place_order_mode", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"place_order_mode": "PLACE"}), want: 400, field: "place_order_mode"},
			{name: "sessions: unknown integration", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"integration": "kco"}), want: 400, field: "integration"},
			{name: "sessions: no return URLs", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"return_urls": nil}), want: 400, field: "return_urls.success"},
			{name: "sessions: script return URL", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"return_urls": map[string]any{"success": "javascript:alert(1)", "failure": "https://shop.example/f"}}), want: 400, field: "return_urls.success"},
			{name: "sessions: relative return URL", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"return_urls": map[string]any{"success": "https://shop.example/ok", "failure": "/fail"}}), want: 400, field: "return_urls.failure"},
			{name: "sessions: customer token too long", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"customer_token": long(256)}), want: 400, field: "customer_token"},
			{name: "sessions: address field too long", method: "POST", path: "/v1/sessions", body: with(okBody, map[string]any{"billing_address": map[string]any{"given_name": long(100)}}), want: 400, field: "billing_address.given_name"},
			{name: "sessions: body over the limit", method: "POST", path: "/v1/sessions", body: bytes.Repeat([]byte(" "), webhook.MaxAPIBody+1), want: 413, field: "body"},
			{name: "sessions: bad status filter", method: "GET", path: "/v1/sessions?status=paid", want: 400, field: "status"},
			{name: "sessions: limit zero", method: "GET", path: "/v1/sessions?limit=0", want: 400, field: "limit"},
			{name: "sessions: limit not a number", method: "GET", path: "/v1/sessions?limit=1e3", want: 400, field: "limit"},
			{name: "sessions: limit huge", method: "GET", path: "/v1/sessions?limit=99999999999999999999", want: 400, field: "limit"},
			{name: "sessions: cursor not base64", method: "GET", path: "/v1/sessions?cursor=%21%21%21", want: 400, field: "cursor"},
			{name: "sessions: cursor too short", method: "GET", path: "/v1/sessions?cursor=AAAA", want: 400, field: "cursor"},
			{name: "session: unknown id", method: "GET", path: "/v1/sessions/ses_unknown", want: 404},
			{name: "session: another storefront's", method: "GET", path: "/v1/sessions/" + idOther, want: 404},
			{name: "cancel: unknown id", method: "POST", path: "/v1/sessions/ses_unknown/cancel", want: 404},
			{name: "cancel: another storefront's", method: "POST", path: "/v1/sessions/" + idOther + "/cancel", want: 404},
			{name: "cancel: body over the limit", method: "POST", path: "/v1/sessions/" + idA + "/cancel", body: bytes.Repeat([]byte(" "), webhook.MaxAPIBody+1), want: 413, field: "body"},
			{name: "authorization: hosted page session", method: "POST", path: "/v1/sessions/" + idA + "/authorization", body: []byte(`{"authorization_token":"forged"}`), want: 409},
			{name: "authorization: missing token", method: "POST", path: "/v1/sessions/" + idSDK + "/authorization", body: []byte(`{}`), want: 400, field: "authorization_token"},
			{name: "authorization: token of the wrong type", method: "POST", path: "/v1/sessions/" + idSDK + "/authorization", body: []byte(`{"authorization_token":5}`), want: 400, field: "authorization_token"},
			{name: "authorization: token too long", method: "POST", path: "/v1/sessions/" + idSDK + "/authorization", body: mustJSON(map[string]any{"authorization_token": long(1025)}), want: 400, field: "authorization_token"},
			{name: "authorization: another storefront's session", method: "POST", path: "/v1/sessions/" + idOther + "/authorization", body: []byte(`{"authorization_token":"x"}`), want: 404},
			{name: "decline: hosted page session", method: "POST", path: "/v1/sessions/" + idA + "/decline", body: []byte(`{}`), want: 409},
			{name: "decline: reason too long", method: "POST", path: "/v1/sessions/" + idSDK + "/decline", body: mustJSON(map[string]any{"reason": long(256)}), want: 400, field: "reason"},
			{name: "decline: invalid JSON", method: "POST", path: "/v1/sessions/" + idSDK + "/decline", body: []byte(`{"reason":`), want: 400, field: "body"},
			{name: "charges: no Idempotency-Key", method: "POST", path: "/v1/charges", body: mustJSON(cb), want: 400, field: "Idempotency-Key"},
			{name: "charges: Idempotency-Key too long", method: "POST", path: "/v1/charges", body: mustJSON(cb), hdr: ik(long(256)), want: 400, field: "Idempotency-Key"},
			{name: "charges: invalid JSON", method: "POST", path: "/v1/charges", body: []byte(`{"customer_token":`), hdr: ik("bad-json"), want: 400, field: "body"},
			{name: "charges: no customer_present", method: "POST", path: "/v1/charges", body: with(cb, map[string]any{"customer_present": nil}), hdr: ik("no-present"), want: 400, field: "customer_present"},
			{name: "charges: customer_present as a string", method: "POST", path: "/v1/charges", body: with(cb, map[string]any{"customer_present": "yes"}), hdr: ik("present-string"), want: 400, field: "customer_present"},
			{name: "charges: no customer token", method: "POST", path: "/v1/charges", body: with(cb, map[string]any{"customer_token": nil}), hdr: ik("no-token"), want: 400, field: "customer_token"},
			{name: "charges: lines do not sum", method: "POST", path: "/v1/charges", body: with(cb, map[string]any{"order_amount": 4999}), hdr: ik("no-sum"), want: 400, field: "order_amount"},
			{name: "charges: body over the limit", method: "POST", path: "/v1/charges", body: bytes.Repeat([]byte(" "), webhook.MaxAPIBody+1), hdr: ik("too-big"), want: 413, field: "body"},
			{name: "charges: bad status filter", method: "GET", path: "/v1/charges?status=paid", want: 400, field: "status"},
			{name: "charge: unknown id", method: "GET", path: "/v1/charges/chg_unknown", want: 404},
			{name: "fallback: unknown charge", method: "POST", path: "/v1/charges/chg_unknown/fallback", want: 404},
			{name: "fallback: charged charge", method: "POST", path: "/v1/charges/" + f.charged + "/fallback", want: 409},
			{name: "fallback: unknown integration", method: "POST", path: "/v1/charges/" + f.needsCustomer + "/fallback", body: []byte(`{"integration":"kco"}`), want: 400, field: "integration"},
			{name: "fallback: bad return URL", method: "POST", path: "/v1/charges/" + f.needsCustomer + "/fallback", body: mustJSON(map[string]any{"return_urls": map[string]any{"success": "ftp://shop.example", "failure": "https://shop.example/f"}}), want: 400, field: "return_urls.success"},
			{name: "fallback: unknown field", method: "POST", path: "/v1/charges/" + f.needsCustomer + "/fallback", body: []byte(`{"colour":1}`), want: 400, field: "colour"},
			{name: "fallback: another storefront", method: "POST", path: "/v1/charges/" + f.needsCustomer + "/fallback", hdr: map[string]string{"Authorization": "Bearer " + e.token("shop-b")}, want: 404},
			{name: "token: too long", method: "GET", path: "/v1/tokens/" + long(256), want: 400, field: "customer_token"},
			{name: "token: unknown", method: "GET", path: "/v1/tokens/tok-unknown", want: 404},
			{name: "no such route", method: "GET", path: "/v1/nothing", want: 404},
			{name: "trailing slash on a collection", method: "GET", path: "/v1/sessions/", want: 404},
			{name: "trailing slash on a POST", method: "POST", path: "/v1/sessions/", body: mustJSON(okBody), want: 404},
			{name: "DELETE a collection", method: "DELETE", path: "/v1/sessions", want: 405},
			{name: "no Authorization", method: "POST", path: "/v1/sessions", body: mustJSON(okBody), hdr: map[string]string{"Authorization": ""}, want: 401, field: "Authorization"},
		})
	})

	// After every row above, the Idempotency-Keys of refused charges were
	// not used up: the corrected request goes through under the same key.
	t.Run("refused request does not use up its Idempotency-Key", func(t *testing.T) {
		r := e.do("POST", "/v1/charges", mustJSON(chargeBody(e.sim.CreateToken("ok", 0), false)), map[string]string{"Idempotency-Key": "no-sum"})
		if r.status != http.StatusCreated {
			t.Fatalf("corrected charge under the same key: %d %s", r.status, r.body)
		}
	})

	// No log line holds a callback secret or a query string.
	logs := e.logs.String()
	for id, s := range e.secrets {
		if strings.Contains(logs, s) || strings.Contains(logs, url.QueryEscape(s)) {
			t.Errorf("the callback secret of %s appears in the logs", id)
		}
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"path":`) && strings.Contains(line, "secret=") {
			t.Errorf("a log line shows a query string: %s", line)
		}
	}
}

// The server's timeouts cut a client that trickles its headers.
func TestSlowHeadersAreCut(t *testing.T) {
	e := newHostileEnv(t, daemon.Timeouts{ReadHeader: 300 * time.Millisecond, Read: time.Second})
	slow := e.createSession("shop-a", sessionBody(10000))
	slowID := slow["id"].(string)
	e.learnSecrets()
	e.quiet()
	before := e.dump()
	conn, err := net.Dial("tcp", e.m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /klarna/hpp/ses_x/status?secret=x HTTP/1.1\r\nHost: hppd\r\n"); err != nil {
		t.Fatal(err)
	}
	// Trickle one header line at a time, never finishing the headers, for
	// far longer than the read-header timeout; the server must close the
	// connection long before the trickle ends.
	closed := make(chan error, 1)
	go func() {
		buf := make([]byte, 1024)
		n, err := conn.Read(buf)
		if n > 0 {
			err = fmt.Errorf("the server answered a request whose headers never ended: %q", buf[:n])
		}
		closed <- err
	}()
	cut := false
	for i := 0; i < 200 && !cut; i++ {
		select {
		case err := <-closed:
			if !errors.Is(err, io.EOF) && !isReset(err) {
				t.Fatalf("connection: %v", err)
			}
			cut = true
		case <-time.After(50 * time.Millisecond):
			if _, err := fmt.Fprintf(conn, "X-Slow-%d: x\r\n", i); err != nil {
				cut = true // the server closed it
			}
		}
	}
	if !cut {
		t.Fatal("the server kept a connection that trickled headers for 10s")
	}
	// A slow body is cut by the read timeout.
	conn2, err := net.Dial("tcp", e.m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	// With a real session's secret, so the body is read (an outsider's is
	// refused before).
	fmt.Fprintf(conn2, "POST %s HTTP/1.1\r\nHost: hppd\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", callbackPath(slowID, e.secrets[slowID], hppOf(slow)))
	done := make(chan struct{})
	var answer string
	go func() {
		defer close(done)
		resp, err := http.ReadResponse(bufio.NewReader(conn2), nil)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			answer = fmt.Sprintf("%d %s", resp.StatusCode, b)
			resp.Body.Close()
		}
	}()
	cut = false
	for i := 0; i < 200 && !cut; i++ {
		select {
		case <-done:
			cut = true
		case <-time.After(50 * time.Millisecond):
			if _, err := conn2.Write([]byte(" ")); err != nil {
				cut = true
			}
		}
	}
	if !cut {
		t.Fatal("the server kept a connection that trickled its body for 10s")
	}
	<-done
	if answer != "" && !strings.HasPrefix(answer, "400") && !strings.HasPrefix(answer, "408") {
		t.Fatalf("answer to a trickled body: %s", answer)
	}
	// The server still serves, and nothing was written.
	if r := e.do("GET", "/healthz", nil, nil); r.status != http.StatusOK {
		t.Fatalf("healthz after the slow clients: %d", r.status)
	}
	if changes := before.diff(e.dump()); len(changes) > 0 {
		t.Fatalf("the store changed: %v", changes)
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && strings.Contains(ne.Err.Error(), "reset")
}
