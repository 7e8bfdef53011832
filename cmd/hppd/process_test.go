package main

// Tests of the real binary as an operator runs it: built once, `hppd sim`
// and `hppd serve` started as processes, signals sent with kill(2), the data
// file read back with the store package after the daemon exits.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/hppd/hppd/internal/testutil"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
	"github.com/hppd/hppd/webhook"
)

const procKey = "0123456789abcdef0123456789abcdef-process-key"

// proc is a running hppd child process.
type proc struct {
	cmd    *exec.Cmd
	stderr *testutil.Buffer
	stdout *testutil.Buffer
	done   chan struct{}
	err    error // Wait's result, once done is closed
}

func procStart(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stderr: &testutil.Buffer{}, stdout: &testutil.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stderr, p.cmd.Stdout = p.stderr, p.stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to exit (bounded, as a guard against a hang,
// not a speed assertion) and returns its exit code.
func (p *proc) wait(t *testing.T, what string) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit; stderr:\n%s", what, p.stderr)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("%s: %v", what, p.err)
		return -1
	}
}

func procFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func procWaitReady(t *testing.T, p *proc, u string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("process exited early: %v\n%s", p.err, p.stderr)
		default:
		}
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered 200; stderr:\n%s", u, p.stderr)
}

// procWorld is a built binary, a running `hppd sim` and the environment of
// `hppd serve`.
type procWorld struct {
	bin     string
	sim     string // base URL of the simulator
	simPass string
	hppd    string // base URL of hppd
	db      string
	env     []string
	jwt     string
	serve   *proc
	simProc *proc
	dir     string
	listen  string
}

func newProcWorld(t *testing.T) *procWorld {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	w := &procWorld{dir: t.TempDir(), simPass: "sim-pw-" + fmt.Sprint(time.Now().UnixNano())}
	w.bin = filepath.Join(w.dir, "hppd")
	build := exec.Command("go", "build", "-o", w.bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	simAddr := procFreeAddr(t)
	w.sim = "http://" + simAddr
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + w.dir, "TMPDIR=" + os.TempDir()}
	w.simProc = procStart(t, w.bin, base, "sim", "--listen", simAddr, "--username", "merchant", "--password", w.simPass, "--seed", "9")
	procWaitReady(t, w.simProc, w.sim+"/favicon.ico")
	w.listen = procFreeAddr(t)
	w.hppd = "http://" + w.listen
	w.db = filepath.Join(w.dir, "data", "hppd.db")
	w.env = append(base,
		"HPPD_LISTEN="+w.listen,
		"HPPD_METRICS_LISTEN=127.0.0.1:0",
		"HPPD_DB="+w.db,
		"HPPD_KLARNA_BASE_URL="+w.sim,
		"HPPD_KLARNA_USERNAME=merchant",
		"HPPD_KLARNA_PASSWORD="+w.simPass,
		"HPPD_JWT_HS256_KEY="+procKey,
		"HPPD_POLL_SCHEDULE=@every 1h",
		"HPPD_LOG_LEVEL=debug",
		"HPPD_SHUTDOWN_TIMEOUT=20s",
	)
	var err error
	if w.jwt, err = webhook.IssueToken([]byte(procKey), "shop-a", "hppd", time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	w.serve = procStart(t, w.bin, w.env, "serve")
	procWaitReady(t, w.serve, w.hppd+"/readyz")
	return w
}

// simGet reads a /_sim/ driver endpoint.
func (w *procWorld) simGet(t *testing.T, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", w.sim+path, nil)
	req.SetBasicAuth("merchant", w.simPass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func (w *procWorld) simPost(t *testing.T, path, body string) {
	t.Helper()
	req, _ := http.NewRequest("POST", w.sim+path, strings.NewReader(body))
	req.SetBasicAuth("merchant", w.simPass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %d", path, resp.StatusCode)
	}
}

type procRequest struct {
	Operation string `json:"operation"`
	Body      string `json:"body"`
	Status    int    `json:"status"`
}

// callbackTargets creates n sessions and returns their ids, each one's HPP
// session id and its status_update path (from what Klarna was sent).
func (w *procWorld) callbackTargets(t *testing.T, client *http.Client, n int) (ids []string, hppOf, paths map[string]string) {
	t.Helper()
	hppOf = map[string]string{}
	for range n {
		st, s := w.createSession(client)
		if st != http.StatusCreated {
			t.Fatalf("create session: %d %v", st, s)
		}
		id := s["id"].(string)
		ids = append(ids, id)
		hppOf[id] = procHPP(s)
	}
	return ids, hppOf, w.statusPaths(t, hppOf)
}

// statusPaths maps hppd session ids to the callback path hppd gave Klarna,
// with the HPP session id filled in as Klarna does.
func (w *procWorld) statusPaths(t *testing.T, hppOf map[string]string) map[string]string {
	t.Helper()
	var reqs []procRequest
	w.simGet(t, "/_sim/requests", &reqs)
	out := map[string]string{}
	for _, r := range reqs {
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
		id := strings.Split(u.Path, "/")[3]
		out[id] = strings.ReplaceAll(u.RequestURI(), "{{session_id}}", hppOf[id])
	}
	return out
}

var procSessionBody = []byte(`{"purchase_country":"SE","purchase_currency":"SEK","locale":"sv-SE","order_amount":10000,"order_tax_amount":2000,` +
	`"order_lines":[{"type":"physical","name":"Cup","quantity":2,"unit_price":5000,"tax_rate":2500,"total_amount":10000,"total_tax_amount":2000}],` +
	`"return_urls":{"success":"https://shop.example/ok","failure":"https://shop.example/fail"}}`)

// createSession posts a session; it returns the status and the session.
func (w *procWorld) createSession(client *http.Client) (int, map[string]any) {
	req, _ := http.NewRequest("POST", w.hppd+"/v1/sessions", bytes.NewReader(procSessionBody))
	req.Header.Set("Authorization", "Bearer "+w.jwt)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func procHPP(s map[string]any) string {
	return s["klarna"].(map[string]any)["hpp_session_id"].(string)
}

// TestProcess builds the binary once and runs the process tests on it, in
// order (the last one stops the daemon).
func TestProcess(t *testing.T) {
	w := newProcWorld(t)
	t.Run("second serve on the same data file", func(t *testing.T) { testSecondServe(t, w) })
	t.Run("production with a plain-http public URL", func(t *testing.T) { testProductionNeedsHTTPS(t, w) })
	t.Run("compact while serve runs", func(t *testing.T) { testCompactRefusedWhileServing(t, w) })
	t.Run("SIGHUP reloads storefront keys", func(t *testing.T) { testSIGHUPReloadsKeys(t, w) })
	t.Run("SIGHUP reloads the global key files", func(t *testing.T) { testSIGHUPReloadsGlobalKeys(t, w) })
	t.Run("SIGTERM under load", func(t *testing.T) { testSIGTERMUnderLoad(t, w) })
	t.Run("compact after the daemon stopped", func(t *testing.T) { testCompactAfterStop(t, w) })
}

// `hppd compact` on the file a running daemon holds exits non-zero with a
// message telling the operator to stop hppd, and leaves no copy behind; the
// daemon carries on.
func testCompactRefusedWhileServing(t *testing.T, w *procWorld) {
	c := procStart(t, w.bin, w.env, "compact")
	if code := c.wait(t, "hppd compact"); code == 0 {
		t.Fatalf("hppd compact on a held file exited 0; stdout:\n%s", c.stdout)
	}
	if msg := c.stderr.String(); !strings.Contains(msg, w.db) || !strings.Contains(msg, "stop hppd first") {
		t.Fatalf("the message does not name the file and say to stop hppd:\n%s", msg)
	}
	if _, err := os.Stat(w.db + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a copy was left beside the data file: %v", err)
	}
	if st, _ := w.createSession(http.DefaultClient); st != http.StatusCreated {
		t.Fatalf("the daemon after a refused compact: %d", st)
	}
}

// After the daemon stopped, `hppd compact` rewrites the file and prints the
// sizes; every session is still there and the file passes the store's check.
func testCompactAfterStop(t *testing.T, w *procWorld) {
	count := func() int {
		db, err := boltstore.Open(w.db, boltstore.Options{})
		if err != nil {
			t.Fatalf("open the data file: %v", err)
		}
		defer db.Close()
		if err := db.Check(); err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := db.View(func(tx store.Tx) error {
			return tx.AllSessions(func(*core.Session) error { n++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	c := procStart(t, w.bin, w.env, "compact")
	if code := c.wait(t, "hppd compact"); code != 0 {
		t.Fatalf("hppd compact exited %d:\n%s", code, c.stderr)
	}
	if out := c.stdout.String(); !strings.Contains(out, "compacted "+w.db) || !strings.Contains(out, " -> ") {
		t.Fatalf("hppd compact printed %q", out)
	}
	if after := count(); after != before || before == 0 {
		t.Fatalf("%d sessions before compact, %d after", before, after)
	}
}

// Key rotation as an operator does it: rewrite a storefront's key file and
// send SIGHUP; the new key is accepted and the removed one refused, and the
// daemon keeps running.
func testSIGHUPReloadsKeys(t *testing.T, w *procWorld) {
	oldKey, newKey := "kid=k1 "+strings.Repeat("o", 40), "kid=k2 "+strings.Repeat("n", 40)
	keyFile := filepath.Join(w.dir, "shop-r-jwt")
	if err := os.WriteFile(keyFile, []byte(oldKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(w.dir, "sighup.yaml")
	if err := os.WriteFile(cfgFile, []byte("storefronts:\n  - name: shop-r\n    jwt_hs256_key_file: "+keyFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := procFreeAddr(t)
	env := append(append([]string(nil), w.env...), "HPPD_LISTEN="+listen, "HPPD_DB="+filepath.Join(w.dir, "sighup", "hppd.db"), "HPPD_CONFIG_FILE="+cfgFile)
	p := procStart(t, w.bin, env, "serve")
	base := "http://" + listen
	procWaitReady(t, p, base+"/readyz")
	status := func(key string) int {
		t.Helper()
		tok, err := webhook.IssueToken([]byte(key), "shop-r", "hppd", time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("GET", base+"/v1/sessions", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st, st2 := status(oldKey), status(newKey); st != http.StatusOK || st2 != http.StatusUnauthorized {
		t.Fatalf("before the reload: old key %d, new key %d", st, st2)
	}
	if err := os.WriteFile(keyFile, []byte(newKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	procWaitLog(t, p, "JWT keys reloaded", 1)
	if st, st2 := status(oldKey), status(newKey); st != http.StatusUnauthorized || st2 != http.StatusOK {
		t.Fatalf("after the reload: old key %d, new key %d", st, st2)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, "hppd after SIGHUP and SIGTERM"); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, tail(p.stderr.String()))
	}
}

// procWaitLog waits until p has logged a line holding text n times: a
// signal is handled after kill(2) returns (bounded, a guard against a hang).
func procWaitLog(t *testing.T, p *proc, text string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(p.stderr.String(), text) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q not logged %d times; stderr:\n%s", text, n, tail(p.stderr.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Rotation of the global keys as an operator does it: rewrite
// HPPD_JWT_HS256_KEY_FILE and HPPD_JWT_PUBLIC_KEYS_FILE and send SIGHUP; the
// new keys are accepted and the old ones refused. A broken file then keeps
// the keys in use, and the error names the file.
func testSIGHUPReloadsGlobalKeys(t *testing.T, w *procWorld) {
	oldHS, newHS := strings.Repeat("o", 40), strings.Repeat("n", 40)
	oldEd, newEd := procEd25519(t), procEd25519(t)
	hsFile, pemFile := filepath.Join(w.dir, "global-jwt"), filepath.Join(w.dir, "global-jwt.pem")
	write := func(path string, body []byte) {
		t.Helper()
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(hsFile, []byte(oldHS+"\n"))
	write(pemFile, oldEd.pem)
	listen := procFreeAddr(t)
	var env []string
	for _, kv := range w.env {
		if !strings.HasPrefix(kv, "HPPD_JWT_HS256_KEY=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HPPD_LISTEN="+listen, "HPPD_DB="+filepath.Join(w.dir, "sighup-global", "hppd.db"),
		"HPPD_JWT_HS256_KEY_FILE="+hsFile, "HPPD_JWT_PUBLIC_KEYS_FILE="+pemFile)
	p := procStart(t, w.bin, env, "serve")
	base := "http://" + listen
	procWaitReady(t, p, base+"/readyz")
	status := func(tok string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/v1/sessions", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	hsTok := func(key string) string {
		t.Helper()
		tok, err := webhook.IssueToken([]byte(key), "shop-g", "hppd", time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	expect := func(when string, want map[string]int) {
		t.Helper()
		toks := map[string]string{"old HS256": hsTok(oldHS), "new HS256": hsTok(newHS), "old Ed25519": oldEd.token(t), "new Ed25519": newEd.token(t)}
		for name, st := range want {
			if got := status(toks[name]); got != st {
				t.Fatalf("%s: %s key %d, want %d", when, name, got, st)
			}
		}
	}
	const ok, refused = http.StatusOK, http.StatusUnauthorized
	expect("before the reload", map[string]int{"old HS256": ok, "old Ed25519": ok, "new HS256": refused, "new Ed25519": refused})

	write(hsFile, []byte(newHS+"\n"))
	write(pemFile, newEd.pem)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	procWaitLog(t, p, "JWT keys reloaded", 1)
	expect("after the reload", map[string]int{"old HS256": refused, "old Ed25519": refused, "new HS256": ok, "new Ed25519": ok})

	// Broken files, one at a time: each reload is refused as a whole and
	// logged with the file's name; the keys in use stay.
	write(pemFile, []byte("-----BEGIN PUBLIC KEY-----\nbroken\n-----END PUBLIC KEY-----\n"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	procWaitLog(t, p, "keys not reloaded", 1)
	write(pemFile, newEd.pem)
	write(hsFile, []byte("short\n"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	procWaitLog(t, p, "keys not reloaded", 2)
	logged := p.stderr.String()
	for _, f := range []string{pemFile, hsFile} {
		if !strings.Contains(logged, "HPPD_JWT_") || !strings.Contains(logged, f) {
			t.Fatalf("the refused reloads do not name %s; stderr:\n%s", f, tail(logged))
		}
	}
	expect("after refused reloads", map[string]int{"new HS256": ok, "new Ed25519": ok, "old HS256": refused})
	if n := strings.Count(logged, "JWT keys reloaded"); n != 1 {
		t.Fatalf("%d reloads logged, want 1", n)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, "hppd after SIGHUPs and SIGTERM"); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, tail(p.stderr.String()))
	}
}

// procEdKey is an Ed25519 key pair: the public key as a PEM file.
type procEdKey struct {
	priv ed25519.PrivateKey
	pem  []byte
}

func procEd25519(t *testing.T) procEdKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return procEdKey{priv: priv, pem: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}
}

// token is an EdDSA storefront token for shop-g.
func (k procEdKey) token(t *testing.T) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.RegisteredClaims{
		Issuer: "shop-g", Audience: jwt.ClaimStrings{"hppd"},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}).SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A second `hppd serve` on the same data file exits non-zero at once with a
// message naming the file and the lock; the first one is not disturbed.
func testSecondServe(t *testing.T, w *procWorld) {
	env := append(append([]string(nil), w.env...), "HPPD_LISTEN="+procFreeAddr(t))
	start := time.Now()
	second := procStart(t, w.bin, env, "serve")
	code := second.wait(t, "the second hppd")
	t.Logf("the second hppd exited with %d after %v", code, time.Since(start).Round(time.Millisecond))
	if code == 0 {
		t.Fatalf("the second hppd exited 0; stderr:\n%s", second.stderr)
	}
	msg := second.stderr.String()
	if !strings.Contains(msg, w.db) || !strings.Contains(msg, "locked by another process") {
		t.Fatalf("the message does not name the file and the lock:\n%s", msg)
	}
	if st, _ := w.createSession(http.DefaultClient); st != http.StatusCreated {
		t.Fatalf("the first hppd after the second one gave up: %d", st)
	}
}

// Klarna sends callbacks over HTTPS only (FACTS 8.6): in production a
// plain-http HPPD_PUBLIC_URL, or none, stops start-up with a message naming
// the variable, before the data file is opened.
func testProductionNeedsHTTPS(t *testing.T, w *procWorld) {
	for _, public := range []string{"HPPD_PUBLIC_URL=http://shop.example", ""} {
		env := append(append([]string(nil), w.env...), "HPPD_LISTEN="+procFreeAddr(t), "HPPD_KLARNA_ENV=production",
			"HPPD_DB="+filepath.Join(t.TempDir(), "prod.db"))
		if public != "" {
			env = append(env, public)
		} else {
			env = append(env, "HPPD_PUBLIC_URL=")
		}
		p := procStart(t, w.bin, env, "serve")
		if code := p.wait(t, "hppd in production"); code == 0 {
			t.Fatalf("%q: hppd started; stderr:\n%s", public, p.stderr)
		}
		if msg := p.stderr.String(); !strings.Contains(msg, "HPPD_PUBLIC_URL") || !strings.Contains(msg, "https") {
			t.Fatalf("%q: the message does not name HPPD_PUBLIC_URL and https:\n%s", public, msg)
		}
	}
}

// SIGTERM while Klarna's callbacks pour in and a storefront request is in
// the middle of its Klarna calls: the daemon exits 0, the request in flight
// gets its full answer, and every callback that got a 2xx is in the data
// file. `hppd backup` taken under the same load restores every session.
func testSIGTERMUnderLoad(t *testing.T, w *procWorld) {
	client := &http.Client{Timeout: 30 * time.Second}
	ids, hppOf, paths := w.callbackTargets(t, client, 6)

	var mu sync.Mutex
	accepted := map[string]string{} // event id → HPP session id
	var answered, errorAnswers atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for k := 0; k < 8; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[(k+n)%len(ids)]
				ev := fmt.Sprintf("sigterm-%d-%d", k, n)
				body := fmt.Sprintf(`{"event_id":%q,"session":{"session_id":%q,"status":%q}}`, ev, hppOf[id], []string{"IN_PROGRESS", "BACK", "FAILED", "ERROR"}[n%4])
				resp, err := c.Post(w.hppd+paths[id], "application/json", strings.NewReader(body))
				if err != nil {
					continue // refused or cut off: not acknowledged, Klarna resends
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					answered.Add(1)
					mu.Lock()
					accepted[ev] = hppOf[id]
					mu.Unlock()
				} else {
					errorAnswers.Add(1)
				}
			}
		}(k)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("callbacks under load", func() bool { return answered.Load() >= 50 })

	// `hppd backup` under the same load, through the running daemon.
	backup := filepath.Join(w.dir, "backup", "copy.db")
	var before []string
	waitFor("more sessions", func() bool {
		st, s := w.createSession(client)
		if st == http.StatusCreated {
			ids2 := s["id"].(string)
			before = append(before, ids2)
		}
		return len(before) >= 5
	})
	before = append(before, ids...)
	bc := exec.Command(w.bin, "backup", backup)
	bc.Env = w.env
	out, err := bc.CombinedOutput()
	if err != nil {
		t.Fatalf("hppd backup: %v\n%s", err, out)
	}

	// A storefront request that is inside its Klarna calls when SIGTERM comes.
	w.simPost(t, "/_sim/faults", `{"create_hpp_session": [{"latency": "500ms"}]}`)
	type result struct {
		status int
		body   map[string]any
	}
	slow := make(chan result, 1)
	go func() {
		st, s := w.createSession(client)
		slow <- result{st, s}
	}()
	waitFor("the slow request to reach Klarna", func() bool {
		var reqs []procRequest
		w.simGet(t, "/_sim/requests", &reqs)
		for _, r := range reqs {
			if r.Operation == "create_hpp_session" && r.Status == 0 {
				return true
			}
		}
		return false
	})
	if err := w.serve.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := w.serve.wait(t, "hppd after SIGTERM")
	close(stop)
	wg.Wait()
	inflight := <-slow
	logs := w.serve.stderr.String()
	if code != 0 {
		t.Fatalf("hppd exited %d after SIGTERM; stderr:\n%s", code, tail(logs))
	}
	if inflight.status != http.StatusCreated {
		t.Fatalf("the request in flight at SIGTERM got %d %v", inflight.status, inflight.body)
	}
	if n := errorAnswers.Load(); n > 0 {
		t.Errorf("%d callbacks got an error answer", n)
	}
	for _, want := range []string{`"msg":"shutting down"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	if strings.Contains(logs, w.simPass) {
		t.Error("the log shows the Klarna password")
	}
	for id, p := range paths {
		u, _ := url.Parse(p)
		if s := u.Query().Get("secret"); s == "" || strings.Contains(logs, s) {
			t.Errorf("the log shows the callback secret of %s (or it is empty)", id)
		}
	}

	db, err := boltstore.Open(w.db, boltstore.Options{})
	if err != nil {
		t.Fatalf("reopen the data file: %v", err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx store.Tx) error {
		for ev, hpp := range accepted {
			if seen, err := tx.SeenEvent(hpp, ev); err != nil || !seen {
				return fmt.Errorf("acknowledged callback %s is not in the data file (%v)", ev, err)
			}
		}
		s, err := tx.Session(inflight.body["id"].(string))
		if err != nil || s.HPPSessionID == "" || s.Status != core.SessionPending {
			return fmt.Errorf("the session created during the shutdown: %+v %v", s, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d callbacks acknowledged, all in the data file", answered.Load())

	// Restore the backup: a daemon on it serves every session made before it.
	restored := append(append([]string(nil), w.env...), "HPPD_DB="+backup, "HPPD_ADMIN_SOCKET="+filepath.Join(w.dir, "r.sock"))
	r := procStart(t, w.bin, restored, "serve")
	procWaitReady(t, r, w.hppd+"/readyz")
	for _, id := range before {
		req, _ := http.NewRequest("GET", w.hppd+"/v1/sessions/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+w.jwt)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("restored daemon: session %s: %d", id, resp.StatusCode)
		}
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t, "the restored hppd"); code != 0 {
		t.Fatalf("the restored hppd exited %d", code)
	}
}

func tail(s string) string {
	if len(s) > 3000 {
		return "…" + s[len(s)-3000:]
	}
	return s
}
