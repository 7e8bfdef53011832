package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a child process under test (hppd serve, or the ceiling server),
// its stderr kept in a file.
type Proc struct {
	cmd     *exec.Cmd
	Started time.Time
	LogPath string
	logFile *os.File
	done    chan struct{}
	waitErr error
}

// StartProc starts bin with args and exactly env (no inherited variables),
// its stdout and stderr appended to logPath.
func StartProc(bin string, args, env []string, logPath string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{}, env...) // never nil: nil would inherit this process's environment
	cmd.Stdout = f
	cmd.Stderr = f
	p := &Proc{cmd: cmd, LogPath: logPath, logFile: f, done: make(chan struct{})}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitReady polls url every millisecond until it answers 200 and returns the
// time from exec to that answer. It fails when the process ends first or
// timeout passes.
func (p *Proc) WaitReady(url string, timeout time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return 0, fmt.Errorf("process exited before %s answered: %v (log %s: %s)", url, p.waitErr, p.LogPath, tail(p.LogPath))
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.Started), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("%s not ready after %v (log %s: %s)", url, timeout, p.LogPath, tail(p.LogPath))
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout, then SIGKILLs.
func (p *Proc) Stop(timeout time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		var ee *exec.ExitError
		if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
			return p.waitErr
		}
		return nil
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("did not stop within %v after SIGTERM; killed", timeout)
	}
}

// Mem is a process's memory as /proc/<pid>/status reports it, in bytes.
// RSS = RssAnon (heap, stacks) + RssFile (file pages mapped and touched; for
// hppd mostly the bbolt file, which the kernel can drop and re-read at will)
// + RssShmem.
type Mem struct {
	RSS, HWM, Anon, File int64
}

// ReadMem reads /proc/<pid>/status.
func ReadMem(pid int) (Mem, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Mem{}, err
	}
	var m Mem
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(value)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "VmRSS":
			m.RSS = kb << 10
		case "VmHWM":
			m.HWM = kb << 10
		case "RssAnon":
			m.Anon = kb << 10
		case "RssFile":
			m.File = kb << 10
		}
	}
	if m.RSS == 0 {
		return m, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}

// MemSampler samples a process's memory every interval and keeps the peaks.
type MemSampler struct {
	mu       sync.Mutex
	peak     Mem // field-wise maxima
	samples  int
	stop     chan struct{}
	finished chan struct{}
}

// SampleMem starts sampling pid.
func SampleMem(pid int, every time.Duration) *MemSampler {
	s := &MemSampler{stop: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(s.finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if m, err := ReadMem(pid); err == nil {
				s.mu.Lock()
				s.peak.RSS = max(s.peak.RSS, m.RSS)
				s.peak.HWM = max(s.peak.HWM, m.HWM)
				s.peak.Anon = max(s.peak.Anon, m.Anon)
				s.peak.File = max(s.peak.File, m.File)
				s.samples++
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peaks and the number of samples.
func (s *MemSampler) Stop() (Mem, int) {
	close(s.stop)
	<-s.finished
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.samples
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// waitCtx sleeps d or until ctx ends.
func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
