package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FootprintConfig configures benchmark 4.
type FootprintConfig struct {
	Bin  string
	Dir  string
	Big  *BigFile
	Runs int
	Log  io.Writer
}

// FootprintResult is benchmark 4's outcome.
type FootprintResult struct {
	BinarySize int64
	// Idle memory one second after /readyz answered, on an empty data file
	// and on the big file (per run).
	IdleEmpty, IdleBig []Mem
	// Startup is the time from exec to /readyz 200 with the big file, ms,
	// after a clean stop (the store writes bbolt's freelist at Close) and
	// after a SIGKILL (Open reads the freelist the last commit wrote, or
	// rebuilds it by walking the file when commits skip a long one).
	Startup, StartupAfterCrash []float64
	// Disk: the big file's size and pages.
	FileSize  int64
	Sessions  int
	FileStats FileStats
	// LoadPeak is hppd's peak memory during each run of benchmark 1.
	LoadPeak []Mem
}

// RunFootprint runs benchmark 4 (except the memory under load, which
// benchmark 1 samples; addLoadRSS copies it in).
func RunFootprint(ctx context.Context, cfg FootprintConfig) (*FootprintResult, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	res := &FootprintResult{FileSize: cfg.Big.Size, Sessions: cfg.Big.Sessions, FileStats: cfg.Big.Stats}
	fi, err := os.Stat(cfg.Bin)
	if err != nil {
		return nil, err
	}
	res.BinarySize = fi.Size()
	for i := 0; i < cfg.Runs; i++ {
		empty := filepath.Join(cfg.Dir, fmt.Sprintf("empty%d.db", i+1))
		m, _, err := startIdle(ctx, cfg, empty, fmt.Sprintf("empty%d", i+1))
		if err != nil {
			return nil, fmt.Errorf("idle on an empty file: %w", err)
		}
		res.IdleEmpty = append(res.IdleEmpty, m)
		m, up, err := startIdle(ctx, cfg, cfg.Big.Path, fmt.Sprintf("big%d", i+1))
		if err != nil {
			return nil, fmt.Errorf("start on the big file: %w", err)
		}
		res.IdleBig = append(res.IdleBig, m)
		res.Startup = append(res.Startup, ms(up))
	}
	if res.StartupAfterCrash, err = startupAfterCrash(ctx, cfg, cfg.Runs); err != nil {
		return nil, fmt.Errorf("start-up after a crash: %w", err)
	}
	fmt.Fprintf(cfg.Log, "bench 4: start-up with %d sessions %s ms (after a SIGKILL %s ms); idle RSS %s MiB (empty file), %s MiB (big file)\n",
		cfg.Big.Sessions, SpreadOf(res.Startup).Format("%.0f"), SpreadOf(res.StartupAfterCrash).Format("%.0f"),
		SpreadOf(memField(res.IdleEmpty, func(m Mem) int64 { return m.RSS })).Format("%.1f"),
		SpreadOf(memField(res.IdleBig, func(m Mem) int64 { return m.RSS })).Format("%.1f"))
	return res, nil
}

// startIdle starts hppd on db, waits for /readyz, lets it idle for a second
// and reads its memory; it returns that and the start-up time.
func startIdle(ctx context.Context, cfg FootprintConfig, db, name string) (Mem, time.Duration, error) {
	addr, err := FreeAddr()
	if err != nil {
		return Mem{}, 0, err
	}
	p, err := StartProc(cfg.Bin, []string{"serve"}, hppdEnv(addr, db, cfg.Big.SimURL, nil), filepath.Join(cfg.Dir, name+".log"))
	if err != nil {
		return Mem{}, 0, err
	}
	defer p.Kill()
	up, err := p.WaitReady("http://"+addr+"/readyz", 30*time.Second)
	if err != nil {
		return Mem{}, 0, err
	}
	if err := waitCtx(ctx, time.Second); err != nil {
		return Mem{}, 0, err
	}
	m, err := ReadMem(p.Pid())
	if err != nil {
		return Mem{}, 0, err
	}
	if err := p.Stop(20 * time.Second); err != nil {
		return Mem{}, 0, fmt.Errorf("stop: %w", err)
	}
	return m, up, nil
}

// startupAfterCrash starts hppd runs+1 times on a copy of the big file,
// each time commits one callback and SIGKILLs it; every start after the
// first is a start after a crash, and its time to /readyz is returned (ms).
func startupAfterCrash(ctx context.Context, cfg FootprintConfig, runs int) ([]float64, error) {
	path := filepath.Join(cfg.Dir, "crash.db")
	if err := copyFile(cfg.Big.Path, path); err != nil {
		return nil, err
	}
	defer os.Remove(path)
	var out []float64
	for i := 0; i <= runs && i < len(cfg.Big.DueTargets); i++ {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		p, err := StartProc(cfg.Bin, []string{"serve"}, hppdEnv(addr, path, cfg.Big.SimURL, nil), filepath.Join(cfg.Dir, fmt.Sprintf("crash%d.log", i)))
		if err != nil {
			return nil, err
		}
		up, err := p.WaitReady("http://"+addr+"/readyz", time.Minute)
		if err != nil {
			p.Kill()
			return nil, err
		}
		if i > 0 {
			out = append(out, ms(up))
		}
		// One committed callback, so that the file's last commit is an
		// ordinary one, not Close's.
		t := cfg.Big.DueTargets[i]
		body := `{"event_id":"crash-` + fmt.Sprint(i) + `","session":{"session_id":"` + t.HPPID + `","status":"IN_PROGRESS"}}`
		resp, err := http.Post("http://"+addr+"/klarna/hpp/"+t.ID+"/status?secret="+t.Secret+"&hppId="+t.HPPID, "application/json", strings.NewReader(body))
		if err != nil {
			p.Kill()
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		p.Kill()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("callback answered %d", resp.StatusCode)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// addLoadRSS takes benchmark 1's memory peaks.
func (f *FootprintResult) addLoadRSS(cb *CallbackResult) {
	for _, r := range cb.Runs {
		f.LoadPeak = append(f.LoadPeak, r.Peak)
	}
}

// memField picks one field of each Mem, in MiB.
func memField(ms []Mem, f func(Mem) int64) []float64 {
	out := make([]float64, len(ms))
	for i, m := range ms {
		out[i] = mib(f(m))
	}
	return out
}
