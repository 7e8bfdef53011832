package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one child process (the simulator or hppd) that can be killed
// and started again with the same command line and environment. Output of
// every start is appended to one log file.
type process struct {
	name    string
	bin     string
	args    []string
	env     []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
	// stopping is set before the driver kills or stops the process; an
	// exit without it is the process's own doing.
	stopping bool
	// crashes lists the exits nobody asked for.
	crashes []string
}

// start runs the process; it does not wait for it to be ready.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited != nil {
		select {
		case <-p.exited:
		default:
			return fmt.Errorf("start %s: still running", p.name)
		}
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.starts++
	fmt.Fprintf(f, "=== chaos: start %d of %s at %s ===\n", p.starts, p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	n := p.starts
	p.stopping = false
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		if !p.stopping {
			p.crashes = append(p.crashes, fmt.Sprintf("%s (start %d) exited by itself: %v", p.name, n, err))
		}
		p.mu.Unlock()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	return nil
}

// unexpectedExits returns the exits nobody asked for.
func (p *process) unexpectedExits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.crashes...)
}

// running reports whether the last start is still alive.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits until the process is gone (so its file lock
// is released).
func (p *process) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.stopping = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop asks the process to shut down (SIGTERM) and kills it if it has not
// exited within grace. It reports whether the shutdown was clean.
func (p *process) stop(grace time.Duration) bool {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.stopping = true
	p.mu.Unlock()
	if cmd == nil {
		return true
	}
	select {
	case <-exited:
		return true
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		return cmd.ProcessState != nil && cmd.ProcessState.Success()
	case <-t.C:
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		return false
	}
}

// childEnv is the parent's environment without HPPD_* and GORACE (so the
// operator's own settings cannot leak into the run) plus vars.
func childEnv(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HPPD_") || strings.HasPrefix(kv, "GORACE=") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// freePort returns a loopback address with a port nothing listens on now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// waitReady polls url (with basic auth when user is set) until it answers
// 200, the process exits, or timeout passes.
func waitReady(ctx context.Context, p *process, url, user, pass string, timeout time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", p.name, err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !p.running() {
			return fmt.Errorf("wait for %s: it exited (see %s)", p.name, p.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %s: not ready after %s (see %s)", p.name, timeout, p.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// issueToken runs `hppd token` for the storefront JWT the driver uses.
func issueToken(ctx context.Context, bin string, env []string, issuer string, ttl time.Duration) (string, error) {
	cmd := exec.CommandContext(ctx, bin, "token", "--issuer", issuer, "--ttl", ttl.String())
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hppd token: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	tok := strings.TrimSpace(out.String())
	if tok == "" {
		return "", errors.New("hppd token: printed nothing")
	}
	return tok, nil
}
