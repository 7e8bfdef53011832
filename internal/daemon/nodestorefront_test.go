package daemon_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/events"
	"github.com/hppd/hppd/internal/testutil"
)

// TestNodeStorefront builds examples/node-storefront (a TypeScript client
// generated from api/openapi.yaml, compiled with tsc --strict) and runs it
// against hppd and the simulator: it mints its JWT with jose, creates a
// session, repeats the creation with a re-serialised body under the same
// Idempotency-Key, reads the session, cancels it and verifies the
// session.cancelled event with the standardwebhooks package. Its requests
// pass through a proxy that validates them and hppd's answers against the
// document. Without node or npm the test skips, except in CI (CI set), where
// it fails.
func TestNodeStorefront(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (required in CI)", tool)
			}
			t.Skipf("%s is not installed; CI would fail here", tool)
		}
	}
	dir, err := filepath.Abs("../../examples/node-storefront")
	if err != nil {
		t.Fatal(err)
	}
	npm(t, dir, installNeeded(dir), "ci", "--no-audit", "--no-fund")
	npm(t, dir, true, "run", "build")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	node := exec.CommandContext(ctx, "node", "dist/main.js")
	node.Dir = dir
	var stderr testutil.Buffer
	node.Stderr = &stderr
	stdin, err := node.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := node.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	first := <-lines
	eventsURL, ok := strings.CutPrefix(first, "events ")
	if !ok {
		_ = node.Wait()
		t.Fatalf("node said %q, want its event URL; stderr: %s", first, stderr.String())
	}

	e := newEnv(t, nil)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("node-storefront-webhook-secret-0123456789"))
	ec, err := events.ParseConfig([]byte(fmt.Sprintf(`{"storefronts": {"shop-a": {"url": %q, "secret": %q}}}`, eventsURL, secret)))
	if err != nil {
		t.Fatal(err)
	}
	e.emitter = events.New(ec, events.Options{Now: e.clock.Now})
	e.restart()
	target, _ := http.NewRequest("GET", e.base, nil)
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target.URL) },
		Transport: validating{t: t, next: http.DefaultTransport},
	})
	defer proxy.Close()

	cfg, _ := json.Marshal(map[string]string{"base": proxy.URL, "storefront": "shop-a", "audience": "hppd",
		"hs256_key": testKey, "webhook_secret": secret})
	if _, err := io.WriteString(stdin, string(cfg)+"\n"); err != nil {
		t.Fatal(err)
	}
	_ = stdin.Close()
	var out []string
	for l := range lines {
		out = append(out, l)
	}
	if err := node.Wait(); err != nil {
		t.Fatalf("node storefront: %v\nstdout: %s\nstderr: %s", err, strings.Join(out, "\n"), stderr.String())
	}
	if len(out) == 0 || !strings.HasPrefix(out[len(out)-1], "ok session ") {
		t.Fatalf("node storefront said %q; stderr: %s", out, stderr.String())
	}
	t.Logf("node storefront: %s", out[len(out)-1])
	if n := e.countRequests("create_kp_session"); n != 1 {
		t.Fatalf("%d KP sessions at Klarna for one session created and replayed", n)
	}
}

// installNeeded reports whether node_modules is missing or older than the
// lock file.
func installNeeded(dir string) bool {
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return true
	}
	inst, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	return err != nil || inst.ModTime().Before(lock.ModTime())
}

func npm(t *testing.T, dir string, run bool, args ...string) {
	t.Helper()
	if !run {
		return
	}
	cmd := exec.Command("npm", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
