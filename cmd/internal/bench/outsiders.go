package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hppd/hppd/klarna/klarnasim"
)

// OutsiderConfig configures benchmark 6: genuine callbacks while outsiders
// hold many slow connections open.
type OutsiderConfig struct {
	// Bin is the hppd binary under test; Dir a work directory.
	Bin, Dir string
	// Hostile connections held open (default 2,000, the figure).
	Hostile int
	// Genuine callbacks per phase, one at a time, Gap apart (defaults 200
	// and 20 ms).
	Genuine int
	Gap     time.Duration
	// Runs of the three phases (default 3).
	Runs int
	Log  io.Writer
}

func (c *OutsiderConfig) defaults() {
	if c.Hostile <= 0 {
		c.Hostile = 2000
	}
	if c.Genuine <= 0 {
		c.Genuine = 200
	}
	if c.Gap <= 0 {
		c.Gap = 20 * time.Millisecond
	}
	if c.Runs <= 0 {
		c.Runs = 3
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// OutsiderPhase is one phase of a run: a fresh hppd, Hostile outsiders,
// then the genuine callbacks.
type OutsiderPhase struct {
	Name string
	// MaxConns is HPPD_MAX_CONNECTIONS of the phase; Hostile the outsiders.
	MaxConns, Hostile int
	// Latencies of the genuine callbacks answered 2xx, each on a new
	// connection: dial to the end of the answer. Failed counts the others.
	Latencies Latencies
	Failed    int
	// Open is the outsiders' connections open when the genuine callbacks
	// ended; Redials how often hppd had cut one and it came back.
	Open, Redials int64
	// Before is hppd's memory before the outsiders came; Peak its peaks
	// (sampled every 50 ms, and VmHWM) until the end of the phase.
	Before, Peak Mem
	// Where the time went, from hppd's access log (duration_ms of each
	// genuine callback, by its X-Request-Id): the slowest genuine
	// callback's latency and the part of it inside hppd's handler (its
	// checks and the commit with its fdatasyncs); and the longest any
	// genuine callback spent outside the handler (in the kernel's accept
	// queue, being accepted, its request read, its answer sent). NaN when
	// the log did not say.
	SlowestMS, SlowestHandlerMS, OutsideMaxMS float64
}

// OutsiderRun is one run of the three phases.
type OutsiderRun struct {
	Phases []OutsiderPhase
}

// OutsiderResult is benchmark 6's outcome.
type OutsiderResult struct {
	Config OutsiderConfig
	Runs   []OutsiderRun
}

// Phase returns phase i of every run.
func (r *OutsiderResult) Phase(i int) []OutsiderPhase {
	var out []OutsiderPhase
	for _, run := range r.Runs {
		if i < len(run.Phases) {
			out = append(out, run.Phases[i])
		}
	}
	return out
}

// outsiderPhases are the phases of each run: no outsiders (the machine's
// baseline), the outsiders under the default cap of 4,096 connections, and
// the outsiders with the cap at half their number, so that every slot hppd
// has is wanted by an outsider.
func outsiderPhases(hostile int) []OutsiderPhase {
	return []OutsiderPhase{
		{Name: "no outsiders", MaxConns: 4096},
		{Name: fmt.Sprintf("%s outsiders, default cap", thousands(hostile)), MaxConns: 4096, Hostile: hostile},
		{Name: fmt.Sprintf("%s outsiders, cap %s", thousands(hostile), thousands(hostile/2)), MaxConns: hostile / 2, Hostile: hostile},
	}
}

// RunOutsiders runs benchmark 6. Each phase starts the real binary with its
// defaults (but HPPD_MAX_CONNECTIONS) on a fresh copy of a small data file,
// opens the outsiders' connections (a third trickle headers that never end,
// a third trickle a 64 KiB body to a callback with a wrong secret, a third
// sit idle on keep-alive; each comes back a second after hppd cuts it),
// waits until all have connected once, and then sends the genuine
// status_update callbacks one by one, each on a new connection as a
// callback sender without a pool does, so that each one passes hppd's
// accept loop and its connection cap.
func RunOutsiders(ctx context.Context, cfg OutsiderConfig) (*OutsiderResult, error) {
	cfg.defaults()
	res := &OutsiderResult{Config: cfg}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	seed := filepath.Join(cfg.Dir, "outsiders-seed.db")
	// The file's clock is an hour ahead: nothing falls due for the poller.
	targets, err := BuildFile(seed, Plan{Sessions: 2000, Watched: 500, EventsPerSession: 2, Now: time.Now().Add(time.Hour), Seed: 17})
	if err != nil {
		return nil, err
	}
	sim := klarnasim.New(klarnasim.Options{Seed: 17, Unlimited: true})
	simSrv := httptest.NewServer(sim.Handler())
	defer func() { simSrv.Close(); sim.Close() }()
	for i := 0; i < cfg.Runs; i++ {
		var run OutsiderRun
		for j, ph := range outsiderPhases(cfg.Hostile) {
			dir := filepath.Join(cfg.Dir, fmt.Sprintf("outsiders-run%d-phase%d", i+1, j+1))
			if err := outsiderPhase(ctx, &cfg, dir, seed, simSrv.URL, targets, &ph); err != nil {
				return nil, fmt.Errorf("run %d, %s: %w", i+1, ph.Name, err)
			}
			l := ph.Latencies
			fmt.Fprintf(cfg.Log, "bench 6 run %d, %s: genuine p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (%.1f ms of it in the handler; at most %.1f ms outside it) (%d answered, %d failed); outsiders open %d (%d redials); peak RSS %.1f MiB\n",
				i+1, ph.Name, ms(l.Quantile(0.5)), ms(l.Quantile(0.9)), ms(l.Quantile(0.99)), ms(l.Max()), ph.SlowestHandlerMS, ph.OutsideMaxMS, len(l), ph.Failed, ph.Open, ph.Redials, mib(ph.Peak.HWM))
			run.Phases = append(run.Phases, ph)
		}
		res.Runs = append(res.Runs, run)
	}
	return res, nil
}

func outsiderPhase(ctx context.Context, cfg *OutsiderConfig, dir, seed, simURL string, targets []Target, ph *OutsiderPhase) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	db := filepath.Join(dir, "hppd.db")
	if err := copyFile(seed, db); err != nil {
		return err
	}
	addr, err := FreeAddr()
	if err != nil {
		return err
	}
	p, err := StartProc(cfg.Bin, []string{"serve"}, hppdEnv(addr, db, simURL, map[string]string{
		"HPPD_MAX_CONNECTIONS": strconv.Itoa(ph.MaxConns),
		"HPPD_POLL_SCHEDULE":   "@every 1h",
		// The access log (debug) gives each genuine callback's time in the
		// handler; about a thousand lines a second with the outsiders.
		"HPPD_LOG_LEVEL": "debug",
	}), filepath.Join(dir, "hppd.log"))
	if err != nil {
		return err
	}
	defer p.Kill()
	if _, err := p.WaitReady("http://"+addr+"/readyz", 30*time.Second); err != nil {
		return err
	}
	if ph.Before, err = ReadMem(p.Pid()); err != nil {
		return err
	}
	sampler := SampleMem(p.Pid(), 50*time.Millisecond)

	// A target whose callbacks hppd refuses (wrong secret) for the
	// outsiders' bodies; the genuine callbacks go to the other targets.
	wrong := "/klarna/hpp/" + targets[0].ID + "/status?secret=AAAA" + targets[0].Secret[4:] + "&hppId=" + targets[0].HPPID
	out := startOutsiders(addr, ph.Hostile, wrong)
	defer out.stop()
	deadline := time.Now().Add(60 * time.Second)
	for out.dialled.Load() < int64(ph.Hostile) {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d outsiders connected in 60 s", out.dialled.Load(), ph.Hostile)
		}
		if err := waitCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	if ph.Hostile > 0 {
		// Let every outsider start trickling.
		if err := waitCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	var lat []time.Duration
	byID := map[string]time.Duration{}
	for n := 0; n < cfg.Genuine; n++ {
		t := targets[1+n%(len(targets)-1)]
		id := fmt.Sprintf("genuine-%d", n)
		d, err := genuineCallback(addr, t, id, callbackStatuses[n%len(callbackStatuses)])
		if err != nil {
			ph.Failed++
			fmt.Fprintf(cfg.Log, "bench 6: genuine callback %d: %v\n", n, err)
		} else {
			lat = append(lat, d)
			byID[id] = d
		}
		if err := waitCtx(ctx, cfg.Gap); err != nil {
			return err
		}
	}
	ph.Latencies = NewLatencies(lat)
	ph.Open, ph.Redials = out.open.Load(), out.redials.Load()
	ph.Peak, _ = sampler.Stop()
	if m, err := ReadMem(p.Pid()); err == nil {
		ph.Peak.HWM = max(ph.Peak.HWM, m.HWM)
	}
	// hppd logs a request before its answer leaves, so every answered
	// genuine callback is in the log by now.
	ph.SlowestMS, ph.SlowestHandlerMS, ph.OutsideMaxMS = splitLatencies(p.LogPath, byID)
	return nil
}

// splitLatencies reads the handler time of each callback in byID (by
// request id) from hppd's access log at logPath and returns the slowest
// callback's latency and handler time, and the longest time any callback
// spent outside the handler, in ms (NaN where the log does not say).
func splitLatencies(logPath string, byID map[string]time.Duration) (slowest, slowestHandler, outsideMax float64) {
	slowest, slowestHandler, outsideMax = math.NaN(), math.NaN(), math.NaN()
	f, err := os.Open(logPath)
	if err != nil {
		return
	}
	defer f.Close()
	handler := map[string]float64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"request_id":"genuine-`)) {
			continue
		}
		var rec struct {
			Msg       string  `json:"msg"`
			RequestID string  `json:"request_id"`
			Duration  float64 `json:"duration_ms"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "request" {
			handler[rec.RequestID] = rec.Duration
		}
	}
	var slowID string
	for id, d := range byID {
		if slowID == "" || d > byID[slowID] {
			slowID = id
		}
		if h, ok := handler[id]; ok {
			out := ms(d) - h
			if math.IsNaN(outsideMax) || out > outsideMax {
				outsideMax = out
			}
		}
	}
	if slowID != "" {
		slowest = ms(byID[slowID])
		if h, ok := handler[slowID]; ok {
			slowestHandler = h
		}
	}
	return
}

// genuineCallback sends one valid status_update callback for t on a new
// connection and returns the time from dial to the end of a 2xx answer.
func genuineCallback(addr string, t Target, event, status string) (time.Duration, error) {
	now := time.Now().UTC()
	body := fmt.Sprintf(`{"event_id":%q,"session":{"session_id":%q,"status":%q,"updated_at":%q,"expires_at":%q}}`,
		event, t.HPPID, status, now.Format(time.RFC3339Nano), now.Add(47*time.Hour).Format(time.RFC3339Nano))
	req := "POST /klarna/hpp/" + t.ID + "/status?secret=" + t.Secret + "&hppId=" + t.HPPID + " HTTP/1.1\r\nHost: hppd\r\nX-Request-Id: " + event + "\r\n" +
		"Content-Type: application/json\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 60*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(60 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("answered %d", resp.StatusCode)
	}
	return d, nil
}

// outsiders are the hostile connections of a phase.
type outsiders struct {
	open, dialled, redials atomic.Int64
	done                   chan struct{}
	wg                     sync.WaitGroup
	once                   sync.Once
}

func startOutsiders(addr string, n int, wrongCallback string) *outsiders {
	o := &outsiders{done: make(chan struct{})}
	for i := 0; i < n; i++ {
		o.wg.Add(1)
		go func(kind int) {
			defer o.wg.Done()
			for first := true; ; {
				select {
				case <-o.done:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					if waitDone(o.done, 100*time.Millisecond) {
						return
					}
					continue
				}
				o.open.Add(1)
				if first {
					o.dialled.Add(1)
					first = false
				} else {
					o.redials.Add(1)
				}
				Outsider(c, kind, wrongCallback, o.done)
				o.open.Add(-1)
				c.Close()
				// A slow client comes back at its own pace, not in a
				// flood (that is another attack).
				if waitDone(o.done, time.Second) {
					return
				}
			}
		}(i % 3)
	}
	return o
}

func (o *outsiders) stop() {
	o.once.Do(func() { close(o.done) })
	o.wg.Wait()
}

// waitDone waits d and reports whether done closed meanwhile.
func waitDone(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Outsider plays one hostile client of kind on c until hppd cuts it or done
// closes, and closes c: 0 trickles headers that never end (slowloris), 1
// trickles a 64 KiB body to a callback with a wrong secret, 2 sends one
// request and then sits idle on keep-alive. The memory test of cmd/hppd plays
// the same clients.
func Outsider(c net.Conn, kind int, wrongCallback string, done <-chan struct{}) {
	var err error
	switch kind {
	case 0:
		_, err = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: hppd\r\n")
	case 1:
		_, err = io.WriteString(c, "POST "+wrongCallback+" HTTP/1.1\r\nHost: hppd\r\nContent-Type: application/json\r\nContent-Length: 65536\r\n\r\n{")
	case 2:
		if _, err = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: hppd\r\n\r\n"); err == nil {
			var resp *http.Response
			if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	if err != nil {
		return
	}
	closed := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, c); close(closed) }()
	defer func() { c.Close(); <-closed }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-done:
			return
		case <-closed:
			return
		case <-tick.C:
			switch kind {
			case 0:
				_, err = fmt.Fprintf(c, "X-Slow-%d: x\r\n", i)
			case 1:
				_, err = c.Write([]byte(" "))
			}
			if err != nil {
				return
			}
		}
	}
}
