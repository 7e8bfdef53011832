package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/gctune"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/webhook"
)

// E2EConfig configures benchmark 3, the fallback path end to end.
type E2EConfig struct {
	Dir string
	// MemDir, when set, is a directory in memory (tmpfs, MemoryDir): each
	// run is repeated with the data file there, which is what the path costs
	// without the disk.
	MemDir string
	// Runs of Requests measured requests each, after Warmup unmeasured
	// ones (defaults 3, 300, 30).
	Runs, Requests, Warmup int
	Log                    io.Writer
}

// E2EResult is benchmark 3's outcome: per run, the latency a storefront
// sees, the time spent inside the simulator's handlers, and their
// difference, hppd's own time (all in ms).
type E2EResult struct {
	Requests    int
	KlarnaCalls int // simulator requests per fallback request (3)
	// Per run: the latency, the simulator's time and hppd's own time.
	Total, Sim, Own []E2ERun
	// Health is the p50 round trip of GET /healthz per run, ms: the
	// client's and the loopback's share of every request.
	Health []float64
	// The Klarna rate limits of the run (lifted).
	CreateRate, OtherRate string

	// OwnMem is hppd's own time per run with the data file in memory
	// (E2EConfig.MemDir; empty without one).
	OwnMem []E2ERun
	// Per run on disk, per measured request: the store's commits
	// (boltstore.DB.Commits, background work included) and the KiB hppd
	// wrote (/proc/self/io write_bytes: the pages its commits dirtied).
	Commits, KiB []float64
	// DataKiB is, per run on disk, the data file's pages up to its
	// high-water mark when the run ended: the span its commits wrote in.
	DataKiB []float64
	// CommitPages and CommitProbe: the pages of an average commit of the
	// runs, and the disk probe's time for a commit of that many pages of a
	// file of DataKiB (the median) on the data file's disk (ms per try).
	CommitPages int
	CommitProbe []float64
}

// E2ERun is one run's quantiles of one series, in ms.
type E2ERun struct{ P50, P99, Max float64 }

// RunE2E runs benchmark 3 in process: the daemon as daemon.Main wires it,
// on a fresh data file, against the simulator answering at once. Each
// request is a storefront's POST /v1/charges for a customer token whose
// payment method is unavailable, with the customer present: hppd charges
// the token (403 UNAVAILABLE_PAYMENT_METHOD), creates the KP session and the
// HPP session of the fallback, and answers with the redirect URL. Requests
// are sequential, so the simulator's handler time during a request is that
// request's: hppd's own time is the latency minus it. Klarna's rate limits
// are lifted for this benchmark (they pace by design: at the production 40
// creations/s the HPP creation waits 25 ms behind the KP one; benchmark 2
// shows the limiter at work).
func RunE2E(ctx context.Context, cfg E2EConfig) (*E2EResult, error) {
	if cfg.Runs <= 0 {
		cfg.Runs = 3
	}
	if cfg.Requests <= 0 {
		cfg.Requests = 300
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = 30
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	// hppd serve paces its collector by the live heap (internal/gctune);
	// the daemon here shares its process with the simulator and the
	// client, and the process is paced the same way.
	gc := gctune.Start(os.Getenv)
	defer gc.Stop()
	res := &E2EResult{Requests: cfg.Requests, CreateRate: "1000000", OtherRate: "1000000"}
	for i := 0; i < cfg.Runs; i++ {
		r, err := e2eRun(ctx, &cfg, filepath.Join(cfg.Dir, fmt.Sprintf("run%d", i+1)), i, res)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		res.KlarnaCalls = r.calls
		res.Total = append(res.Total, r.total)
		res.Sim = append(res.Sim, r.sim)
		res.Own = append(res.Own, r.own)
		res.Health = append(res.Health, r.health)
		res.Commits = append(res.Commits, r.commits)
		res.KiB = append(res.KiB, r.kib)
		fs, err := ReadFileStats(filepath.Join(cfg.Dir, fmt.Sprintf("run%d", i+1), "hppd.db"))
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		res.DataKiB = append(res.DataKiB, float64(fs.PagesInUse)/1024)
		fmt.Fprintf(cfg.Log, "bench 3 run %d: latency p50 %.2f ms p99 %.2f ms; simulator p50 %.2f ms; hppd's own p50 %.2f ms p99 %.2f ms; %.2f commits and %.1f KiB written per request\n",
			i+1, r.total.P50, r.total.P99, r.sim.P50, r.own.P50, r.own.P99, r.commits, r.kib)
		if cfg.MemDir == "" {
			continue
		}
		memDir, err := os.MkdirTemp(cfg.MemDir, "hppd-bench-e2e-")
		if err != nil {
			return nil, err
		}
		m, err := e2eRun(ctx, &cfg, memDir, i, res)
		os.RemoveAll(memDir)
		if err != nil {
			return nil, fmt.Errorf("run %d in memory: %w", i+1, err)
		}
		res.OwnMem = append(res.OwnMem, m.own)
		fmt.Fprintf(cfg.Log, "bench 3 run %d, data file in memory: hppd's own p50 %.2f ms p99 %.2f ms\n", i+1, m.own.P50, m.own.P99)
	}
	commits, kib := SpreadOf(res.Commits).Median, SpreadOf(res.KiB).Median
	if commits > 0 && kib > 0 {
		res.CommitPages = max(1, int(math.Round(kib*1024/probePageSize/commits)))
		probe, err := MeasureCommit(cfg.Dir, int64(SpreadOf(res.DataKiB).Median*1024), res.CommitPages, 50)
		if err != nil {
			return nil, fmt.Errorf("commit probe: %w", err)
		}
		res.CommitProbe = probe
		fmt.Fprintf(cfg.Log, "bench 3: a commit of %d pages takes %s ms on this disk\n", res.CommitPages, SpreadOf(probe).Format("%.2f"))
	}
	return res, nil
}

// e2eRunResult is one run's figures.
type e2eRunResult struct {
	total, sim, own E2ERun
	calls           int     // simulator requests per fallback request
	health          float64 // p50 of GET /healthz, ms
	commits, kib    float64 // per measured request
}

// timedHandler adds the time spent in next to a counter.
type timedHandler struct {
	next  http.Handler
	nanos atomic.Int64
	calls atomic.Int64
}

func (h *timedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h.next.ServeHTTP(w, r)
	h.nanos.Add(int64(time.Since(start)))
	h.calls.Add(1)
}

func e2eRun(ctx context.Context, cfg *E2EConfig, dir string, n int, res *E2EResult) (out e2eRunResult, err error) {
	if err = os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	s := klarnasim.New(klarnasim.Options{Seed: int64(33 + n), Unlimited: true}) // Klarna's limits are lifted here on purpose (see the report)
	th := &timedHandler{next: s.Handler()}
	srv := httptest.NewServer(th)
	s.SetPublicURL(srv.URL)
	defer func() { srv.Close(); s.Close() }()
	vars := map[string]string{
		"HPPD_LISTEN":             "127.0.0.1:0",
		"HPPD_DB":                 filepath.Join(dir, "hppd.db"),
		"HPPD_KLARNA_BASE_URL":    srv.URL,
		"HPPD_KLARNA_USERNAME":    "sim",
		"HPPD_KLARNA_PASSWORD":    "sim",
		"HPPD_JWT_HS256_KEY":      benchJWTKey,
		"HPPD_KLARNA_CREATE_RATE": res.CreateRate,
		"HPPD_KLARNA_OTHER_RATE":  res.OtherRate,
		// Token orders have a bucket of their own (5/s in playground):
		// left on, it paces these sequential requests 200 ms apart.
		"HPPD_KLARNA_TOKEN_ORDER_RATE": res.OtherRate,
	}
	c, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		return
	}
	// hppd logs JSON at info, as in production; the lines are formatted and
	// dropped.
	m := &daemon.Main{Config: c, Logger: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	if err = m.Run(ctx); err != nil {
		return
	}
	defer m.Close(context.Background())
	base := "http://" + m.Addr()
	tok, err := webhook.IssueToken([]byte(benchJWTKey), "shop-bench", "hppd", time.Hour, time.Now())
	if err != nil {
		return
	}
	customer := s.CreateToken("unavailable", 0)
	client := &http.Client{Timeout: 30 * time.Second}
	body, err := json.Marshal(fallbackCharge(customer))
	if err != nil {
		return
	}
	var tot, own0, sim0 []time.Duration
	var commits0 int64
	var io0 IO
	for i := 0; i < cfg.Warmup+cfg.Requests; i++ {
		if i == cfg.Warmup {
			if m.DB != nil {
				commits0 = m.DB.Commits()
			}
			if io0, err = ReadIO(os.Getpid()); err != nil {
				return out, err
			}
		}
		simBefore, callsBefore := th.nanos.Load(), th.calls.Load()
		req, rerr := http.NewRequestWithContext(ctx, "POST", base+"/v1/charges", bytes.NewReader(body))
		if rerr != nil {
			return out, rerr
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Idempotency-Key", "bench-"+strconv.Itoa(n)+"-"+strconv.Itoa(i))
		start := time.Now()
		resp, derr := client.Do(req)
		if derr != nil {
			return out, derr
		}
		answer, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if rerr != nil {
			return out, rerr
		}
		if err := checkFallback(resp.StatusCode, answer); err != nil {
			return out, err
		}
		simD := time.Duration(th.nanos.Load() - simBefore)
		out.calls = int(th.calls.Load() - callsBefore)
		if i < cfg.Warmup {
			continue
		}
		tot = append(tot, d)
		sim0 = append(sim0, simD)
		own0 = append(own0, d-simD)
	}
	io1, err := ReadIO(os.Getpid())
	if err != nil {
		return out, err
	}
	if m.DB != nil {
		out.commits = float64(m.DB.Commits()-commits0) / float64(cfg.Requests)
	}
	out.kib = float64(io1.WriteBytes-io0.WriteBytes) / 1024 / float64(cfg.Requests)
	// The floor: a request hppd answers without work, on the same client.
	var hs []time.Duration
	for i := 0; i < cfg.Requests; i++ {
		start := time.Now()
		resp, herr := client.Get(base + "/healthz")
		if herr != nil {
			return out, herr
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		hs = append(hs, time.Since(start))
	}
	q := func(ds []time.Duration) E2ERun {
		l := NewLatencies(ds)
		return E2ERun{P50: ms(l.Quantile(0.5)), P99: ms(l.Quantile(0.99)), Max: ms(l.Max())}
	}
	out.total, out.sim, out.own, out.health = q(tot), q(sim0), q(own0), q(hs).P50
	return out, nil
}

// fallbackCharge is a storefront's charge of a customer token with the
// customer present (so a refusal falls back to the hosted payment page).
func fallbackCharge(customerToken string) map[string]any {
	return map[string]any{
		"customer_token": customerToken, "customer_present": true,
		"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
		"order_amount": 25000, "order_tax_amount": 5000,
		"order_lines": []any{map[string]any{
			"type": "physical", "reference": "SKU-000042", "name": "Rain jacket", "quantity": 1, "unit_price": 25000,
			"tax_rate": 2500, "total_amount": 25000, "total_tax_amount": 5000,
		}},
		"merchant_reference1": "order-bench",
		"return_urls": map[string]any{
			"success": "https://shop.example/ok", "failure": "https://shop.example/fail",
			"back": "https://shop.example/back", "cancel": "https://shop.example/cancel",
		},
	}
}

// checkFallback checks that hppd answered 201 with a charge in fallback and
// the hosted payment page's URL.
func checkFallback(status int, body []byte) error {
	var c struct {
		Status  string `json:"status"`
		Session *struct {
			RedirectURL string `json:"redirect_url"`
		} `json:"session"`
	}
	if status != http.StatusCreated || json.Unmarshal(body, &c) != nil || c.Status != "fallback" || c.Session == nil || c.Session.RedirectURL == "" {
		return fmt.Errorf("fallback charge: HTTP %d %.300s", status, body)
	}
	return nil
}
