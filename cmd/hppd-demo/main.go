// Command hppd-demo is `make demo`: hppd and the Klarna simulator on a fresh
// machine, with no Klarna account and no network.
//
//	go run ./cmd/hppd-demo -bin bin/hppd [-once] [-shop 127.0.0.1:0]
//
// It makes a temporary data directory with a random storefront JWT key and a
// random simulator password (files readable only by the user; hppd reads
// them through the *_FILE variables), starts `hppd sim` and `hppd serve` as
// child processes on free local ports with their logs prefixed [sim] and
// [hppd] on stderr, and waits until both answer. It then walks one
// hosted-payment-page purchase through hppd's storefront API and the
// simulator's test-driver API, printing every step on stdout (see
// internal/demo.Walk), and serves the demo storefront (internal/demo) until
// interrupted: it prints the address to open in a browser.
//
// With -once it exits after the scripted purchase: 0 when the order was
// placed, 1 on any failure. Ctrl-C (or SIGTERM) stops the storefront, then
// hppd, then the simulator, each child with SIGTERM so it shuts down
// gracefully, and removes the data directory. The children run in their own
// process group, so the terminal's Ctrl-C reaches only this program, which
// stops them in that order; on Linux they also get SIGTERM should this
// program die without cleaning up.
//
// Like cmd/hppd, main only parses flags and wires; the storefront and the
// scripted purchase live in internal/demo.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hppd/hppd/internal/demo"
	"github.com/hppd/hppd/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "hppd-demo:", err)
		}
		os.Exit(1)
	}
}

// Timeouts of the demo's own waits (bounds, not expectations).
const (
	readyTimeout = 30 * time.Second
	walkTimeout  = 60 * time.Second
	stopTimeout  = 15 * time.Second
)

const (
	simUser    = "demo"
	naSimUser  = "demo-na"
	storefront = "demo-shop"
)

// demoConfig is the demo's HPPD_CONFIG_FILE: two Klarna accounts at the
// simulator, told apart by their credentials.
func demoConfig(simURL, euPassFile, naPassFile string) string {
	return `klarna_accounts:
  - name: eu
    base_url: ` + simURL + `
    username: ` + simUser + `
    password_file: ` + euPassFile + `
    countries: [SE, NO, FI, DK, DE]
  - name: na
    base_url: ` + simURL + `
    username: ` + naSimUser + `
    password_file: ` + naPassFile + `
    countries: [US, CA]
`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("hppd-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", "bin/hppd", "the hppd binary (make build)")
	once := fs.Bool("once", false, "exit after the scripted purchase (0: order placed)")
	shopAddr := fs.String("shop", "127.0.0.1:0", "address of the demo storefront")
	if err := fs.Parse(args); err != nil {
		return err
	}
	binPath, err := filepath.Abs(*bin)
	if err != nil {
		return fmt.Errorf("-bin: %w", err)
	}
	if st, err := os.Stat(binPath); err != nil || st.IsDir() {
		return fmt.Errorf("-bin %s: no such binary (run make build first)", *bin)
	}

	dir, err := os.MkdirTemp("", "hppd-demo-*")
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	defer os.RemoveAll(dir)
	jwtKey, simPass, naPass := randomHex(32), randomHex(16), randomHex(16)
	keyFile, passFile, naPassFile := filepath.Join(dir, "jwt.key"), filepath.Join(dir, "klarna.password"), filepath.Join(dir, "klarna-na.password")
	if err := os.WriteFile(keyFile, []byte(jwtKey), 0o600); err != nil {
		return fmt.Errorf("write the JWT key: %w", err)
	}
	if err := os.WriteFile(passFile, []byte(simPass), 0o600); err != nil {
		return fmt.Errorf("write the simulator password: %w", err)
	}
	if err := os.WriteFile(naPassFile, []byte(naPass), 0o600); err != nil {
		return fmt.Errorf("write the simulator password: %w", err)
	}

	logs := newLogSink(stderr)
	shopLn, err := net.Listen("tcp", *shopAddr)
	if err != nil {
		return fmt.Errorf("-shop: %w", err)
	}
	defer shopLn.Close()
	simAddr, err := freeAddr()
	if err != nil {
		return err
	}
	hppdAddr, err := freeAddr()
	if err != nil {
		return err
	}
	simURL, hppdURL, shopURL := "http://"+simAddr, "http://"+hppdAddr, "http://"+shopLn.Addr().String()

	// Deferred stops run in reverse: hppd first, then the simulator.
	// Two Klarna accounts, as a merchant selling in Sweden and the United
	// States holds: eu serves the Nordic countries, na the US and Canada.
	sim, err := startChild("sim", binPath, []string{"sim", "--listen", simAddr,
		"--account", "eu:" + simUser + ":" + passFile, "--account", "na:" + naSimUser + ":" + naPassFile}, nil, logs)
	if err != nil {
		return err
	}
	defer stopChild(sim, stderr, &err)
	cfgFile := filepath.Join(dir, "hppd.yaml")
	if err := os.WriteFile(cfgFile, []byte(demoConfig(simURL, passFile, naPassFile)), 0o600); err != nil {
		return fmt.Errorf("write the configuration file: %w", err)
	}
	hppd, err := startChild("hppd", binPath, []string{"serve"}, []string{
		"HPPD_LISTEN=" + hppdAddr,
		"HPPD_METRICS_LISTEN=127.0.0.1:0",
		"HPPD_DB=" + filepath.Join(dir, "hppd.db"),
		"HPPD_CONFIG_FILE=" + cfgFile,
		"HPPD_JWT_HS256_KEY_FILE=" + keyFile,
		"HPPD_LOG_FORMAT=text",
		"HPPD_POLL_SCHEDULE=@every 5s",
		"HPPD_STALE_AFTER=10s",
		"HPPD_SHUTDOWN_TIMEOUT=5s",
	}, logs)
	if err != nil {
		return err
	}
	defer stopChild(hppd, stderr, &err)

	shopLog := slog.New(slog.NewTextHandler(logs.writer("shop"), nil))
	opts := demo.Options{
		HPPDURL: hppdURL, SimURL: simURL, SimUser: simUser, SimPass: simPass, PublicURL: shopURL,
		Token: func() string {
			tok, err := webhook.IssueToken([]byte(jwtKey), storefront, "hppd", 10*time.Minute, time.Now())
			if err != nil {
				shopLog.Error("issue a storefront JWT", "err", err)
			}
			return tok
		},
		Logger: shopLog,
	}
	if err := waitReady(ctx, simURL+"/_sim/clock", simPass, sim, hppd); err != nil {
		return err
	}
	if err := waitReady(ctx, hppdURL+"/healthz", "", hppd, sim); err != nil {
		return err
	}
	shop, err := demo.New(opts)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: shop, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, WriteTimeout: 60 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(shopLn) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	fmt.Fprintf(stdout, "hppd demo (data in %s)\n  Klarna simulator  %s\n  hppd              %s\n  demo storefront   %s\n\n", dir, simURL, hppdURL, shopURL)
	wctx, cancel := context.WithTimeout(ctx, walkTimeout)
	res, err := demo.Walk(wctx, opts, stdout)
	cancel()
	if err != nil {
		return fmt.Errorf("scripted purchase: %w", err)
	}
	fmt.Fprintf(stdout, "\nThe storefront's result page of this purchase: %s\n", res.ReturnURL)
	fmt.Fprintf(stdout, "\nThe same storefront sells in the United States: hppd sends the purchase to the na account.\n\n")
	usOpts := opts
	usOpts.SimUser, usOpts.SimPass, usOpts.Cart = naSimUser, naPass, demo.USCart
	wctx, cancel = context.WithTimeout(ctx, walkTimeout)
	usRes, err := demo.Walk(wctx, usOpts, stdout)
	cancel()
	if err != nil {
		return fmt.Errorf("scripted US purchase: %w", err)
	}
	if res.Account != "eu" || usRes.Account != "na" || res.Order.Account != "eu" || usRes.Order.Account != "na" {
		return fmt.Errorf("purchases went to accounts %s/%s (orders at %s/%s); want eu and na", res.Account, usRes.Account, res.Order.Account, usRes.Order.Account)
	}
	if *once {
		return nil
	}
	fmt.Fprintf(stdout, "\nOpen %s/ in a browser: pick a scenario, press Buy, pay or decline on the simulator's page.\n", shopURL)
	sess, err := demo.Checkout(ctx, opts)
	if err != nil {
		return fmt.Errorf("a session to pay by hand: %w", err)
	}
	fmt.Fprintf(stdout, "Or pay a fresh session (%s) yourself on the simulator's page: %s\n", sess.ID, sess.RedirectURL)
	fmt.Fprintf(stdout, "hppd's API takes a storefront JWT: HPPD_JWT_HS256_KEY_FILE=%s %s token --issuer %s\n", keyFile, *bin, storefront)
	fmt.Fprintf(stdout, "Press Ctrl-C to stop.\n")
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nstopping")
		return nil
	case err := <-serveErr:
		return fmt.Errorf("storefront: %w", err)
	case <-sim.done:
		return fmt.Errorf("the simulator exited: %v", sim.err)
	case <-hppd.done:
		return fmt.Errorf("hppd exited: %v", hppd.err)
	}
}

// stopChild stops c and reports a failed stop, unless run already failed.
func stopChild(c *child, stderr io.Writer, runErr *error) {
	if err := c.stop(stopTimeout); err != nil {
		if *runErr == nil {
			*runErr = err
		} else {
			fmt.Fprintln(stderr, "hppd-demo:", err)
		}
	}
}

// waitReady polls url until it answers 200, failing early when c (or other)
// exits. pass, when set, is the simulator's Basic password.
func waitReady(ctx context.Context, url, pass string, c, other *child) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if pass != "" {
			req.SetBasicAuth(simUser, pass)
		}
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not become ready: %w", c.name, ctx.Err())
		case <-c.done:
			return fmt.Errorf("%s exited before it was ready: %v", c.name, c.err)
		case <-other.done:
			return fmt.Errorf("%s exited: %v", other.name, other.err)
		case <-t.C:
		}
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
// A child started right after gets it; should another process take it in
// between, the child fails to listen and the demo says so.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}

// childEnv is this process's environment without HPPD_* variables (so a
// developer's settings cannot leak into the demo), plus extra.
func childEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HPPD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
