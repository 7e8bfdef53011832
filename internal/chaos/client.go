package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hppd/hppd/api"
)

// Bounds of the driver's retries. A storefront request outlives a kill and
// hppd's one-minute "in progress" window of an Idempotency-Key whose first
// request died with the process.
const (
	apiDeadline      = 3 * time.Minute
	shopperDeadline  = 20 * time.Second
	retryBackoffBase = 100 * time.Millisecond
	retryBackoffMax  = 2 * time.Second
)

// apiStats counts what the storefront and shopper requests met.
type apiStats struct {
	requests atomic.Int64 // logical requests (each with its retries)
	attempts atomic.Int64
	retries  atomic.Int64

	mu       sync.Mutex
	problems []string // gave up, HTTP 500, unexpected answers
}

func (s *apiStats) problem(format string, args ...any) {
	s.mu.Lock()
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// hppdClient talks to hppd as a storefront (JWT) and as a shopper's
// browser (no redirects followed).
type hppdClient struct {
	base  string
	jwt   string
	http  *http.Client
	stats *apiStats
}

func newHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// backoff sleeps before retry n (1-based), bounded, with jitter from the
// wall clock (the schedule of retries is not part of what a seed replays).
func backoff(ctx context.Context, n int) error {
	d := retryBackoffBase << min(n-1, 5)
	d = min(d, retryBackoffMax)
	d = d/2 + time.Duration(time.Now().UnixNano()%int64(d/2+1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errGaveUp is returned when a request got no usable answer in its deadline.
var errGaveUp = errors.New("no answer before the deadline")

// call sends a storefront request and decodes a 2xx JSON answer into out.
// It retries with the same Idempotency-Key while hppd is unreachable,
// answers 5xx, or reports the key's first request still in progress; any
// other answer is returned with its status and error body.
func (c *hppdClient) call(ctx context.Context, method, path, key string, body any, out any) (int, *api.ErrorBody, error) {
	c.stats.requests.Add(1)
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return 0, nil, fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, apiDeadline)
	defer cancel()
	for n := 1; ; n++ {
		c.stats.attempts.Add(1)
		status, respBody, err := c.once(ctx, method, path, key, raw)
		var eb *api.ErrorBody
		if err == nil && status >= 300 {
			eb = &api.ErrorBody{}
			if json.Unmarshal(respBody, eb) != nil {
				eb = nil
			}
		}
		retry := false
		switch {
		case err != nil:
			retry = true
		case status == http.StatusInternalServerError:
			c.stats.problem("%s %s answered 500 (internal error)", method, path)
			retry = true
		case status >= 500:
			retry = true
		case status == http.StatusConflict && eb != nil && strings.Contains(eb.Error.Message, "in progress"):
			retry = true
		}
		if !retry {
			if status >= 200 && status < 300 && out != nil {
				if err := json.Unmarshal(respBody, out); err != nil {
					return status, nil, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
				}
			}
			return status, eb, nil
		}
		c.stats.retries.Add(1)
		if backoff(ctx, n) != nil {
			if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				c.stats.problem("%s %s: %v (last: status %d, err %v)", method, path, errGaveUp, status, err)
				return status, eb, fmt.Errorf("%s %s: %w", method, path, errGaveUp)
			}
			return status, eb, ctx.Err()
		}
	}
}

// once sends one attempt.
func (c *hppdClient) once(ctx context.Context, method, path, key string, raw []byte) (int, []byte, error) {
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.jwt)
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// follow is the shopper's browser loading an hppd shopper URL: it retries
// (reloads) while hppd is unreachable or answers 5xx, for a while, and
// returns the status and Location of the answer.
func (c *hppdClient) follow(ctx context.Context, u string) (int, string, error) {
	c.stats.requests.Add(1)
	ctx, cancel := context.WithTimeout(ctx, shopperDeadline)
	defer cancel()
	for n := 1; ; n++ {
		c.stats.attempts.Add(1)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return 0, "", fmt.Errorf("shopper URL: %w", err)
		}
		resp, err := c.http.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return resp.StatusCode, resp.Header.Get("Location"), nil
			}
			if resp.StatusCode == http.StatusInternalServerError {
				c.stats.problem("shopper redirect answered 500 (internal error)")
			}
		}
		c.stats.retries.Add(1)
		if backoff(ctx, n) != nil {
			// A shopper who gives up is part of the run, not a failure of it.
			return 0, "", fmt.Errorf("shopper URL: %w", errGaveUp)
		}
	}
}

// simClient talks to the simulator: the /_sim/ driver API and, once the
// faults are cleared, Klarna's read-session call.
type simClient struct {
	base, user, pass string
	http             *http.Client
}

// do sends one request; the simulator is never down, so there is no retry.
func (s *simClient) do(ctx context.Context, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("sim %s %s: encode: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("sim %s %s: %w", method, path, err)
	}
	req.SetBasicAuth(s.user, s.pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("sim %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("sim %s %s: read: %w", method, path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 && out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("sim %s %s: decode: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}
