package bench

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hppd/hppd/klarna/klarnasim"
)

// buildHPPD builds cmd/hppd into dir, as `make build` does but unstripped.
func buildHPPD(t *testing.T, dir string) string {
	t.Helper()
	return buildCmd(t, dir, "hppd")
}

// buildCmd builds the command cmd/name into dir, unstripped.
func buildCmd(t *testing.T, dir, name string) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to build " + name + " with")
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command(goCmd, "build", "-o", bin, "github.com/hppd/hppd/cmd/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin
}

// A callback answered 2xx survives a SIGKILL of hppd right after: the real
// binary takes callbacks on 16 connections and is killed while they are
// still sending; every callback it had answered 2xx is then found in the
// file (event marked, session status), and the file passes store.Check.
// This is benchmark 1's check, on a small file.
func TestCallbackAnsweredSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the hppd binary")
	}
	dir := t.TempDir()
	bin := buildHPPD(t, dir)
	seed := filepath.Join(dir, "hppd.db")
	targets, err := BuildFile(seed, Plan{Sessions: 3000, Watched: 1000, EventsPerSession: 2, Now: time.Now().Add(time.Hour), Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	sim := klarnasim.New(klarnasim.Options{Seed: 9, Unlimited: true}) // measures hppd, not Klarna's limits
	simSrv := httptest.NewServer(sim.Handler())
	defer func() { simSrv.Close(); sim.Close() }()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartProc(bin, []string{"serve"}, hppdEnv(addr, seed, simSrv.URL, nil), filepath.Join(dir, "hppd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if _, err := p.WaitReady("http://"+addr+"/readyz", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	g := newCallbackGen(targets, 16, 0)
	res, err := Load(context.Background(), LoadConfig{
		Addr: addr, Conns: 16, Warmup: 200 * time.Millisecond, Duration: time.Second,
		Next: g.next, Answered: g.answered,
		AtEnd: func() { _ = p.Signal(syscall.SIGKILL) },
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	inflight := 0
	for _, c := range g.current {
		if c.target >= 0 && c.event != "" {
			inflight++
		}
	}
	n, err := g.verify(seed, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK == 0 || n < res.OK {
		t.Fatalf("%d callbacks checked, %d answered 2xx in the window", n, res.OK)
	}
	t.Logf("%d callbacks answered 2xx (%d in the measured window), all in the file; %d connections had a callback in flight at the SIGKILL", n, res.OK, inflight)
}

// Benchmark 6's machinery on a small scale: the outsiders connect, every
// genuine callback of each phase is answered 2xx, and memory is read from
// /proc.
func TestOutsidersMachinery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the hppd binary")
	}
	bin := buildHPPD(t, t.TempDir())
	res, err := RunOutsiders(context.Background(), OutsiderConfig{Bin: bin, Dir: t.TempDir(), Hostile: 30, Genuine: 5, Gap: time.Millisecond, Runs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 1 || len(res.Runs[0].Phases) != 3 {
		t.Fatalf("%d runs", len(res.Runs))
	}
	for _, ph := range res.Runs[0].Phases {
		if len(ph.Latencies) != 5 || ph.Failed != 0 {
			t.Errorf("%s: %d genuine callbacks answered 2xx, %d not", ph.Name, len(ph.Latencies), ph.Failed)
		}
		if ph.Peak.HWM < ph.Before.RSS || ph.Before.RSS == 0 {
			t.Errorf("%s: memory before %d, peak %d", ph.Name, ph.Before.RSS, ph.Peak.HWM)
		}
		if !(ph.SlowestHandlerMS > 0 && ph.SlowestHandlerMS <= ph.SlowestMS) || !(ph.OutsideMaxMS >= 0) {
			t.Errorf("%s: the access log split the slowest callback (%.2f ms) into %.2f ms in the handler, at most %.2f ms outside", ph.Name, ph.SlowestMS, ph.SlowestHandlerMS, ph.OutsideMaxMS)
		}
		if ph.Hostile > 0 && ph.Open+ph.Redials == 0 {
			t.Errorf("%s: no outsider held a connection", ph.Name)
		}
	}
	if got := res.Runs[0].Phases[2].MaxConns; got != 15 {
		t.Errorf("the cap phase caps at %d, want half the outsiders", got)
	}
}
