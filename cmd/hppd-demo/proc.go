package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// child is a started child process.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *prefixWriter
	done chan struct{} // closed once the process has exited
	err  error         // its exit error; read only after done
}

// startChild starts bin with args and the extra environment; its stdout and
// stderr go to logs, each line prefixed with [name].
func startChild(name, bin string, args, env []string, logs *logSink) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv(env)
	out := logs.writer(name)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	// Should a grandchild keep the log pipe open, Wait gives up on it after this.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		out.flush()
		close(c.done)
	}()
	return c, nil
}

// stop sends SIGTERM and waits up to timeout for a graceful exit, then kills.
// A child that exits on SIGTERM with status 0 stopped cleanly; one that had
// already exited by itself is reported.
func (c *child) stop(timeout time.Duration) error {
	select {
	case <-c.done:
		return fmt.Errorf("%s had exited: %v", c.name, c.err)
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s: %w", c.name, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		if c.err != nil {
			return fmt.Errorf("%s did not stop cleanly: %w", c.name, c.err)
		}
		return nil
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within %s and was killed", c.name, timeout)
	}
}

// logSink serialises the log lines of every child (and the storefront) onto
// one writer.
type logSink struct {
	mu sync.Mutex
	w  io.Writer
}

func newLogSink(w io.Writer) *logSink { return &logSink{w: w} }

func (s *logSink) writer(name string) *prefixWriter {
	return &prefixWriter{sink: s, prefix: []byte(fmt.Sprintf("[%-4s] ", name))}
}

// prefixWriter writes whole lines to its sink, each with a prefix.
type prefixWriter struct {
	sink   *logSink
	prefix []byte
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.emit(p.buf[:i+1])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// flush writes a last line that had no newline.
func (p *prefixWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		p.emit(append(p.buf, '\n'))
		p.buf = nil
	}
}

func (p *prefixWriter) emit(line []byte) {
	p.sink.mu.Lock()
	defer p.sink.mu.Unlock()
	_, _ = p.sink.w.Write(append(append([]byte(nil), p.prefix...), line...))
}
