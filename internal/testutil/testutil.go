// Package testutil holds the small helpers that hppd's tests in several
// packages share: a clock that tests move, and a buffer that concurrent
// writers (loggers, child processes) may share.
package testutil

import (
	"bytes"
	"sync"
	"time"
)

// Clock is the wall clock plus an offset that tests move forward; hppd and
// the simulator share one so that lifetimes pass together. The zero value is
// ready to use.
type Clock struct {
	mu  sync.Mutex
	off time.Duration
}

// Now is the wall clock plus the offset.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// Buffer is a bytes.Buffer safe for concurrent writers. The zero value is
// ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
