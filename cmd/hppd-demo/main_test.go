package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the demo's concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// buildHPPD builds the real hppd binary, as `make build` does for `make demo`.
func buildHPPD(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build hppd: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "hppd")
	cmd := exec.Command(gobin, "build", "-o", bin, "github.com/hppd/hppd/cmd/hppd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build hppd: %v\n%s", err, out)
	}
	return bin
}

// TestDemoOnce runs what `make demo` runs, with -once: the real hppd and
// simulator as child processes, the scripted purchase, a clean stop.
func TestDemoOnce(t *testing.T) {
	bin := buildHPPD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var stdout, stderr syncBuffer
	if err := run(ctx, []string{"-bin", bin, "-once"}, &stdout, &stderr); err != nil {
		t.Fatalf("demo -once: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"Step 1.", "/hpp/pay/", "Step 4.", "status order_placed", "Step 7.", "Done: one purchase, one order", "/result?",
		"purchase country SE: Klarna account eu", "purchase country US: Klarna account na", "held by Klarna account eu", "held by Klarna account na"} {
		if !strings.Contains(out, want) {
			t.Fatalf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Open http") {
		t.Fatalf("-once offered the storefront:\n%s", out)
	}
	logs := stderr.String()
	if !strings.Contains(logs, "[hppd] ") || !strings.Contains(logs, "[sim ] ") {
		t.Fatalf("child logs are not prefixed:\n%s", logs)
	}
	if strings.Contains(logs, "did not stop") || strings.Contains(logs, "killed") {
		t.Fatalf("a child did not stop gracefully:\n%s", logs)
	}
	// The children are gone and the data directory is removed.
	m := regexp.MustCompile(`(?m)^hppd demo \(data in (\S+)\)\n.*simulator\s+http://(\S+)\n\s+hppd\s+http://(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no banner:\n%s", out)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Fatalf("data directory %s left behind: %v", m[1], err)
	}
	for _, addr := range m[2:] {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still listening after the demo ended", addr)
		}
	}
}

// TestDemoServesUntilStopped runs the demo without -once: after the walk it
// serves the storefront, and a stop (Ctrl-C) ends it cleanly.
func TestDemoServesUntilStopped(t *testing.T) {
	bin := buildHPPD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(runCtx, []string{"-bin", bin}, &stdout, &stderr) }()

	open := regexp.MustCompile(`Open (http://\S+)/ in a browser`)
	var shop string
	for shop == "" {
		select {
		case err := <-done:
			t.Fatalf("demo ended before serving: %v\n%s\n%s", err, stdout.String(), stderr.String())
		case <-ctx.Done():
			t.Fatalf("demo did not serve:\n%s\n%s", stdout.String(), stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if m := open.FindStringSubmatch(stdout.String()); m != nil && strings.Contains(stdout.String(), "Press Ctrl-C") {
			shop = m[1]
		}
	}
	resp, err := http.Get(shop + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `id="buy-token-unavailable"`) {
		t.Fatalf("storefront: %d %s", resp.StatusCode, body)
	}
	m := regexp.MustCompile(`yourself on the simulator's page: (\S+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no session to pay by hand:\n%s", stdout.String())
	}
	if resp, err := http.Get(m[1]); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the payment page to pay by hand: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}

	stop() // Ctrl-C
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo stopped with %v\n%s", err, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("demo did not stop")
	}
	if _, err := http.Get(shop + "/"); err == nil {
		t.Fatal("storefront still serving after the stop")
	}
	if !strings.Contains(stderr.String(), "[hppd] ") || !strings.Contains(stderr.String(), `msg=stopped`) {
		t.Fatalf("hppd did not shut down gracefully:\n%s", stderr.String())
	}
}

func TestDemoFailsWithoutHPPD(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, args := range map[string][]string{
		"no binary":           {"-bin", filepath.Join(t.TempDir(), "nope"), "-once"},
		"binary is not hppd":  {"-bin", "/bin/false", "-once"},
		"bad storefront addr": {"-bin", "/bin/true", "-shop", "nowhere", "-once"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := os.Stat(args[1]); err != nil && strings.HasPrefix(args[1], "/bin/") {
				t.Skipf("no %s", args[1])
			}
			var stdout, stderr syncBuffer
			err := run(ctx, args, &stdout, &stderr)
			if err == nil {
				t.Fatalf("demo succeeded:\n%s", stdout.String())
			}
			if strings.Contains(stdout.String(), "Step 1.") {
				t.Fatalf("the walk started: %v\n%s", err, stdout.String())
			}
		})
	}
}
