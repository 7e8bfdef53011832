package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one HTTP/1.1 request of a load run.
type Request struct {
	Method string
	// Target is the request target: path and query, already escaped.
	Target string
	// Header holds extra header lines, each ending in "\r\n".
	Header string
	Body   []byte
}

// LoadConfig describes a load run: Conns keep-alive connections, each in its
// own goroutine sending one request at a time (a closed loop, as Klarna's
// callback senders and wrk do), for Warmup and then Duration.
type LoadConfig struct {
	// Addr is host:port of the server. Addrs, when set instead, are several
	// servers (replicas): connection c goes to Addrs[c mod len(Addrs)], so
	// the connections are spread evenly without a balancer in between.
	Addr  string
	Addrs []string
	Conns int
	// Warmup runs before the measured window; its answers are not counted.
	Warmup   time.Duration
	Duration time.Duration
	// Next returns connection conn's next request. It is called only from
	// that connection's goroutine, so per-connection state needs no lock.
	Next func(conn int) Request
	// Answered, when set, is called (from the connection's goroutine) with
	// every complete answer, inside or outside the measured window.
	Answered func(conn int, req *Request, status int)
	// AtStart, when set, is called right when the measured window opens.
	AtStart func()
	// AtEnd, when set, is called right when the measured window closes,
	// while the connections are still sending (e.g. to SIGKILL the server);
	// the run then stops the connections and waits for them.
	AtEnd func()
}

// LoadResult is what a load run measured in its window.
type LoadResult struct {
	// Requests answered within the window (any status), and how many of them
	// were 2xx.
	Requests, OK int
	// Errors are transport failures (connection refused, reset, malformed
	// answer) within the window.
	Errors    int
	Elapsed   time.Duration
	Latencies Latencies
	// FirstError is the first transport error or non-2xx status seen.
	FirstError string
}

// RPS is the rate of 2xx answers in the window.
func (r *LoadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// Load runs cfg against a server and returns what the window measured. The
// client is a minimal HTTP/1.1 implementation (request bytes built in one
// buffer, answers parsed for status, Content-Length or chunked bodies and
// Connection: close), so that the load generator, which shares the machine
// with the server, spends as little CPU as possible; it is tested against
// net/http's server in load_test.go.
func Load(ctx context.Context, cfg LoadConfig) (*LoadResult, error) {
	if cfg.Conns < 1 || cfg.Duration <= 0 || cfg.Next == nil {
		return nil, errors.New("load: Conns, Duration and Next are required")
	}
	addrs := cfg.Addrs
	if len(addrs) == 0 {
		addrs = []string{cfg.Addr}
	}
	var phase atomic.Int32
	type workerOut struct {
		lat        []time.Duration
		n, ok, err int
		firstErr   string
	}
	outs := make([]workerOut, cfg.Conns)
	var wg sync.WaitGroup
	for w := 0; w < cfg.Conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			o := &outs[w]
			o.lat = make([]time.Duration, 0, 4096)
			var c *clientConn
			defer func() {
				if c != nil {
					c.close()
				}
			}()
			for ctx.Err() == nil {
				p := phase.Load()
				if p == phaseStop {
					return
				}
				req := cfg.Next(w)
				if c == nil {
					var err error
					if c, err = dial(ctx, addrs[w%len(addrs)]); err != nil {
						if phase.Load() == phaseMeasure {
							o.err++
							if o.firstErr == "" {
								o.firstErr = err.Error()
							}
						}
						if phase.Load() == phaseStop {
							return
						}
						time.Sleep(10 * time.Millisecond)
						continue
					}
				}
				start := time.Now()
				status, keep, err := c.do(&req)
				d := time.Since(start)
				after := phase.Load()
				if err != nil {
					c.close()
					c = nil
					if p == phaseMeasure && after == phaseMeasure {
						o.err++
						if o.firstErr == "" {
							o.firstErr = err.Error()
						}
					}
					continue
				}
				if cfg.Answered != nil {
					cfg.Answered(w, &req, status)
				}
				if p == phaseMeasure && after == phaseMeasure {
					o.n++
					o.lat = append(o.lat, d)
					if status/100 == 2 {
						o.ok++
					} else if o.firstErr == "" {
						o.firstErr = "HTTP " + strconv.Itoa(status)
					}
				}
				if !keep {
					c.close()
					c = nil
				}
			}
		}(w)
	}
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	ok := wait(cfg.Warmup)
	if cfg.AtStart != nil {
		cfg.AtStart()
	}
	phase.Store(phaseMeasure)
	start := time.Now()
	if ok {
		wait(cfg.Duration)
	}
	elapsed := time.Since(start)
	// Answers that arrive after this point belong to the tail, not the window.
	phase.Store(phaseStop)
	if cfg.AtEnd != nil {
		cfg.AtEnd()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &LoadResult{Elapsed: elapsed}
	var all []time.Duration
	for _, o := range outs {
		res.Requests += o.n
		res.OK += o.ok
		res.Errors += o.err
		all = append(all, o.lat...)
		if res.FirstError == "" {
			res.FirstError = o.firstErr
		}
	}
	res.Latencies = NewLatencies(all)
	return res, nil
}

// clientConn is one keep-alive HTTP/1.1 connection.
type clientConn struct {
	conn net.Conn
	br   *bufio.Reader
	host string
	buf  []byte
}

func dial(ctx context.Context, addr string) (*clientConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &clientConn{conn: c, br: bufio.NewReaderSize(c, 16<<10), host: addr, buf: make([]byte, 0, 2048)}, nil
}

func (c *clientConn) close() { _ = c.conn.Close() }

// do sends req and reads the answer. It returns the status and whether the
// connection may be reused.
func (c *clientConn) do(req *Request) (status int, keep bool, err error) {
	b := c.buf[:0]
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.Target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.host...)
	b = append(b, "\r\n"...)
	if req.Body != nil {
		b = append(b, "Content-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(req.Body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, req.Header...)
	b = append(b, "\r\n"...)
	b = append(b, req.Body...)
	c.buf = b
	if _, err := c.conn.Write(b); err != nil {
		return 0, false, fmt.Errorf("write: %w", err)
	}
	return readResponse(c.br, req.Method == "HEAD")
}

// readResponse reads one HTTP/1.1 answer from br and discards its body.
func readResponse(br *bufio.Reader, head bool) (status int, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, fmt.Errorf("read status line: %w", err)
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	keep = line[7] == '1'
	length := int64(-1)
	chunked := false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, fmt.Errorf("read header: %w", err)
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, found := bytes.Cut(h, []byte(":"))
		if !found {
			return 0, false, fmt.Errorf("bad header line %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	switch {
	case head || status == 204 || status == 304 || status/100 == 1:
	case chunked:
		if err := discardChunked(br); err != nil {
			return 0, false, err
		}
	case length >= 0:
		if _, err := br.Discard(int(length)); err != nil {
			return 0, false, fmt.Errorf("read body: %w", err)
		}
	default:
		// Body until close.
		if _, err := io.Copy(io.Discard, br); err != nil {
			return 0, false, fmt.Errorf("read body: %w", err)
		}
		keep = false
	}
	return status, keep, nil
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read chunk size: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			// Trailers, then the final CRLF.
			for {
				t, err := br.ReadSlice('\n')
				if err != nil {
					return fmt.Errorf("read trailer: %w", err)
				}
				if len(bytes.TrimRight(t, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return fmt.Errorf("read chunk: %w", err)
		}
	}
}
