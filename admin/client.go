package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
)

// maxAnswer bounds a JSON answer of the admin API (500 sessions with long
// histories fit many times over).
const maxAnswer = 256 << 20

// Client is the admin API of a running daemon, over its Unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client of the admin socket at path. It does not dial
// until the first call.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
		MaxIdleConns:       2,
	}
	return &Client{socket: path, hc: &http.Client{Transport: tr}}
}

// Source names the socket.
func (c *Client) Source() string { return "running hppd (admin socket " + c.socket + ")" }

// Live is true: a daemon answers.
func (c *Client) Live() bool { return true }

// Close drops idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// do sends one request and returns the response of a 200; any other status is
// turned into the core error the daemon named.
func (c *Client) do(ctx context.Context, method, path string, query url.Values) (*http.Response, error) {
	u := "http://hppd-admin" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", c.socket, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var body api.ErrorBody
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &body) != nil || body.Error.Code == "" {
		return nil, fmt.Errorf("admin socket %s: %s %s answered %d", c.socket, method, path, resp.StatusCode)
	}
	return nil, &core.Error{Code: core.ErrorCode(body.Error.Code), Field: body.Error.Field, Message: body.Error.Message}
}

// get decodes the JSON answer of a request into out.
func (c *Client) get(ctx context.Context, method, path string, query url.Values, out any) error {
	resp, err := c.do(ctx, method, path, query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		return fmt.Errorf("admin socket %s: %s %s: bad answer: %w", c.socket, method, path, err)
	}
	return nil
}

func listQuery(q Query) url.Values {
	v := url.Values{}
	if q.Storefront != "" {
		v.Set("storefront", q.Storefront)
	}
	if q.Status != "" {
		v.Set("status", q.Status)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Sessions lists sessions newest first.
func (c *Client) Sessions(ctx context.Context, q Query) ([]Session, error) {
	var out []Session
	if err := c.get(ctx, http.MethodGet, "/sessions", listQuery(q), &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Session returns one session.
func (c *Client) Session(ctx context.Context, id string) (*Session, error) {
	var out Session
	if err := c.get(ctx, http.MethodGet, "/sessions/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Charges lists charges newest first.
func (c *Client) Charges(ctx context.Context, q Query) ([]Charge, error) {
	var out []Charge
	if err := c.get(ctx, http.MethodGet, "/charges", listQuery(q), &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Charge returns one charge.
func (c *Client) Charge(ctx context.Context, id string) (*Charge, error) {
	var out Charge
	if err := c.get(ctx, http.MethodGet, "/charges/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Jobs lists every job, earliest due first.
func (c *Client) Jobs(ctx context.Context) ([]Job, error) {
	var out []Job
	if err := c.get(ctx, http.MethodGet, "/jobs", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// RetryJob makes the job due now and wakes the daemon's job runner.
func (c *Client) RetryJob(ctx context.Context, id string) (*Job, error) {
	var out Job
	if err := c.get(ctx, http.MethodPost, "/jobs/"+url.PathEscape(id)+"/retry", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RetryFailingJobs makes every failing job due now.
func (c *Client) RetryFailingJobs(ctx context.Context) ([]Job, error) {
	var out []Job
	if err := c.get(ctx, http.MethodPost, "/jobs/retry", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Backup copies the daemon's data file to w and verifies the copy against the
// size and SHA-256 the daemon sends after it.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/backup", nil)
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer resp.Body.Close()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, sum), resp.Body)
	if err != nil {
		return n, fmt.Errorf("backup: copy cut short after %d bytes: %w", n, err)
	}
	wantN, wantSum := resp.Trailer.Get(TrailerBackupBytes), resp.Trailer.Get(TrailerBackupSHA256)
	if wantN == "" || wantSum == "" {
		return n, errors.New("backup: the daemon did not confirm the copy (no size and checksum trailers)")
	}
	if wantN != strconv.FormatInt(n, 10) {
		return n, fmt.Errorf("backup: received %d bytes, the daemon sent %s", n, wantN)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != wantSum {
		return n, errors.New("backup: the copy's SHA-256 differs from the daemon's")
	}
	return n, nil
}

// Check asks the daemon to check its data file.
func (c *Client) Check(ctx context.Context) (*CheckReport, error) {
	var out CheckReport
	if err := c.get(ctx, http.MethodGet, "/check", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
