package bench

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine is what the report says about where it was measured.
type Machine struct {
	CPU        string // model name from /proc/cpuinfo
	Cores      int    // online CPUs (nproc)
	MemTotal   int64  // bytes, from /proc/meminfo
	Kernel     string // /proc/sys/kernel/osrelease
	Go         string // go version of the toolchain
	HPPD       string // hppd version output of the binary under test
	Date       time.Time
	Command    string
	LoadBefore string // 1-, 5- and 15-minute load averages at the start
}

// ReadMachine describes this machine.
func ReadMachine(ctx context.Context, goCmd, bin, command string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Date: time.Now().UTC(), Command: command, Go: runtime.Version(), CPU: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				fs := strings.Fields(v)
				if kb, err := strconv.ParseInt(fs[0], 10, 64); err == nil {
					m.MemTotal = kb << 10
				}
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, goCmd, "version").Output(); err == nil {
		m.Go = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	if out, err := exec.CommandContext(cctx, bin, "version").Output(); err == nil {
		m.HPPD = strings.TrimSpace(string(out))
	}
	m.LoadBefore = loadAverage()
	return m
}

// loadAverage is /proc/loadavg's first three fields: a busy machine makes
// every figure worse, so the report says how busy it was.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
