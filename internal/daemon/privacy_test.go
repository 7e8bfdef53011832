package daemon_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/hppd/hppd/internal/testutil"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
	"github.com/hppd/hppd/webhook"
)

// answer is one HTTP answer of hppd as its client saw it.
type answer struct {
	method, url string
	status      int
	header      http.Header
	body        []byte
}

// recording keeps every answer that passes through it.
type recording struct {
	mu      sync.Mutex
	answers []answer
	next    http.RoundTripper
}

func (r *recording) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	r.answers = append(r.answers, answer{method: req.Method, url: req.URL.String(), status: resp.StatusCode, header: resp.Header.Clone(), body: body})
	r.mu.Unlock()
	return resp, nil
}

func (r *recording) all() []answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]answer(nil), r.answers...)
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newPrivacyEnv is newEnv with a Klarna username and password that appear
// nowhere else, hppd logging at debug level into logs (with no redaction
// added by the command: what the packages log must be clean by itself), and
// a client that records every answer of hppd.
func newPrivacyEnv(t *testing.T, logs io.Writer, user, password string) (*env, *recording) {
	t.Helper()
	rec := &recording{next: http.DefaultTransport}
	e := newEnvWith(t, envOptions{
		vars:    map[string]string{"HPPD_LOG_LEVEL": "debug"},
		logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		simUser: user, simPass: password, seed: 13, transport: rec,
	})
	return e, rec
}

// statusURLOf is the status_update URL hppd gave Klarna for an HPP session
// created by the simulator's n-th create_hpp_session request.
func statusURLs(t *testing.T, e *env) map[string]*url.URL {
	t.Helper()
	out := map[string]*url.URL{}
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
			t.Fatal(err)
		}
		u, err := url.Parse(body.MerchantURLs.StatusUpdate)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.Split(u.Path, "/")[3]] = u
	}
	return out
}

var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}`)

// A full fallback purchase with debug logging, plus the usual mistakes and
// forgeries around it: no callback secret, authorization token, customer
// token, Klarna password or JWT appears in clear in any log line or any
// answer of hppd; the secret is stored only hashed; access logs show paths
// without query strings.
func TestNoSecretInLogsOrAnswers(t *testing.T) {
	t.Parallel()
	logs := &testutil.Buffer{}
	user, password := "merchant-"+randomHex(t, 6), "pw-"+randomHex(t, 16)
	e, rec := newPrivacyEnv(t, logs, user, password)

	customerToken := e.sim.CreateToken("unavailable", 0)
	c := e.charge(customerToken, true)
	if c["status"] != "fallback" {
		t.Fatalf("charge: %v", c["_raw"])
	}
	sid := c["session"].(map[string]any)["id"].(string)
	s := e.session(sid)
	hpp := hppID(s)
	su := statusURLs(t, e)[sid]
	if su == nil {
		t.Fatal("no status_update URL for the fallback session")
	}
	secret := su.Query().Get("secret")

	// Some mistakes and forgeries while the shopper is on the page.
	forgedSecret := secret[:len(secret)-1] + map[bool]string{true: "B", false: "A"}[strings.HasSuffix(secret, "A")]
	forged := "/klarna/hpp/" + sid + "/status?secret=" + url.QueryEscape(forgedSecret) + "&hppId=" + hpp
	if st, out := e.do("POST", forged, []byte(`{"event_id":"f1","session":{"session_id":"`+hpp+`","status":"COMPLETED"}}`), map[string]string{"Authorization": ""}); st != 404 {
		t.Fatalf("forged callback: %d %v", st, out["_raw"])
	}
	expired, err := webhook.IssueToken([]byte(testKey), "shop-a", "hppd", -time.Hour, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := e.do("GET", "/v1/charges/"+c["id"].(string), nil, map[string]string{"Authorization": "Bearer " + expired}); st != 401 {
		t.Fatalf("expired JWT: %d", st)
	}
	if st, _ := e.do("GET", "/v1/tokens/"+customerToken+"x", nil, nil); st != 404 {
		t.Fatalf("unknown token: %d", st)
	}
	if st, _ := e.do("POST", "/v1/charges", with(chargeBody(customerToken, true), "order_amount", 1), map[string]string{"Idempotency-Key": "bad-sum"}); st != 400 {
		t.Fatalf("bad charge: %d", st)
	}

	// The shopper pays; Klarna calls back; hppd places the order.
	e.act(hpp, "open")
	if st, _ := e.follow(e.act(hpp, "pay")); st != http.StatusSeeOther {
		t.Fatalf("shopper redirect: %d", st)
	}
	e.waitStatus(sid, "order_placed")
	e.eventually("the charge to be recovered", func() bool {
		_, out := e.do("GET", "/v1/charges/"+c["id"].(string), nil, nil)
		return out["status"] == "recovered"
	})
	if st, out := e.do("GET", "/v1/tokens/"+customerToken, nil, nil); st != 200 || out["recovered"] != true {
		t.Fatalf("token view: %d %v", st, out["_raw"])
	}
	var authToken string
	for _, o := range e.sim.Orders() {
		if o.HPPSessionID == hpp || o.KPSessionID == s["klarna"].(map[string]any)["kp_session_id"] {
			authToken = o.AuthorizationToken
		}
	}
	if authToken == "" {
		t.Fatal("no authorization token at the simulator")
	}
	if err := e.sim.WaitCallbacks(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Once final, the genuine secret changes nothing: repeats are acknowledged.
	before := sessionJSON(t, e.m.DB, sid)
	for i, status := range []string{"COMPLETED", "IN_PROGRESS", "CANCELLED"} {
		body := fmt.Sprintf(`{"event_id":"after-final-%d","session":{"session_id":"%s","status":"%s"}}`, i, hpp, status)
		st, out := e.do("POST", strings.ReplaceAll(su.RequestURI(), "{{session_id}}", hpp), []byte(body), map[string]string{"Authorization": ""})
		if st != http.StatusOK || out["duplicate"] != true {
			t.Fatalf("repeat %s after final: %d %v", status, st, out["_raw"])
		}
	}
	if after := sessionJSON(t, e.m.DB, sid); after != before {
		t.Fatalf("a callback after the end changed the session:\n%s\n%s", before, after)
	}

	// The secret is stored as its SHA-256 only.
	var stored *core.Session
	if err := e.m.DB.View(func(tx store.Tx) error {
		var err error
		stored, err = tx.Session(sid)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256([]byte(secret)); !bytes.Equal(stored.SecretHash, h[:]) {
		t.Fatal("the stored secret hash is not SHA-256 of the secret")
	}
	if strings.Contains(before, secret) {
		t.Fatal("the stored session holds the callback secret")
	}
	raw, err := os.ReadFile(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secret)) {
		t.Fatal("the data file holds the callback secret")
	}

	secrets := map[string]string{
		"callback secret":            secret,
		"escaped callback secret":    url.QueryEscape(secret),
		"authorization token":        authToken,
		"customer token":             customerToken,
		"Klarna password":            password,
		"Klarna Basic credentials":   base64.StdEncoding.EncodeToString([]byte(user + ":" + password)),
		"JWT key":                    testKey,
		"the JWT the test refused":   expired,
		"the JWT's signature":        expired[strings.LastIndex(expired, ".")+1:],
		"the forged callback secret": forgedSecret,
	}
	check := func(where, text string) {
		t.Helper()
		for what, v := range secrets {
			if strings.Contains(text, v) {
				t.Errorf("%s shows the %s", where, what)
			}
		}
		if m := jwtShape.FindString(text); m != "" {
			t.Errorf("%s shows a JWT: %.40s…", where, m)
		}
	}
	answers := rec.all()
	if len(answers) < 10 {
		t.Fatalf("only %d answers recorded", len(answers))
	}
	for _, a := range answers {
		where := fmt.Sprintf("the answer %d to %s %s", a.status, a.method, redactedURL(a.url))
		check(where, string(a.body))
		for k, vs := range a.header {
			check(where+" (header "+k+")", strings.Join(vs, " "))
		}
	}
	all := logs.String()
	if !strings.Contains(all, `"level":"DEBUG"`) {
		t.Fatal("no debug lines were logged")
	}
	requests := 0
	for _, line := range strings.Split(strings.TrimSpace(all), "\n") {
		check("the log line "+clip(line), line)
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Errorf("log line is not JSON: %s", clip(line))
			continue
		}
		if p, ok := l["path"].(string); ok {
			if strings.ContainsAny(p, "?&") || strings.Contains(p, "secret") {
				t.Errorf("a log line shows a query string: %s", clip(line))
			}
			if l["msg"] == "request" {
				requests++
			}
		}
	}
	if requests == 0 {
		t.Fatal("no access log lines")
	}
	if !strings.Contains(all, `"path":"/klarna/hpp/`+sid+`/status"`) {
		t.Error("the access log does not show the callback's path")
	}
}

func clip(s string) string {
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}

// redactedURL keeps test failure messages themselves free of secrets.
func redactedURL(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

// with returns body with key set to v (the top level of a JSON object).
func with(body map[string]any, key string, v any) map[string]any {
	out := map[string]any{}
	for k, x := range body {
		out[k] = x
	}
	out[key] = v
	return out
}

func sessionJSON(t *testing.T, db *boltstore.DB, id string) string {
	t.Helper()
	var out []byte
	if err := db.View(func(tx store.Tx) error {
		s, err := tx.Session(id)
		if err != nil {
			return err
		}
		out, err = json.Marshal(s)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return string(out)
}
