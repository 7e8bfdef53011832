package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hppd/hppd/cmd/internal/bench"
)

// hostileConns is how many slow connections TestOutsidersAreCheap holds
// open against the daemon (before the hardening, 3,000 took RSS to 487 MB).
const hostileConns = 2000

// TestOutsidersAreCheap runs the real binary with its defaults and holds
// 2,000 hostile connections open against it: a third trickle headers that
// never end (slowloris), a third trickle a 64 KiB body to a callback with a
// wrong secret (hppd answers 404 without reading it and closes), a third sit
// idle on keep-alive. Each reconnects a second after hppd cuts it. Meanwhile
// genuine callbacks must still be answered 2xx, and the process's peak RSS
// (VmHWM, from /proc) must stay under 128 MiB. The latencies are only
// logged: benchmark 6 of `make bench` (cmd/internal/bench/outsiders.go)
// measures them on the same load.
func TestOutsidersAreCheap(t *testing.T) {
	w := newProcWorld(t)
	client := &http.Client{Timeout: 30 * time.Second}
	st, s := w.createSession(client)
	if st != http.StatusCreated {
		t.Fatalf("create session: %d %v", st, s)
	}
	id := s["id"].(string)
	hpp := procHPP(s)
	cbPath := w.statusPaths(t, map[string]string{id: hpp})[id]
	if cbPath == "" {
		t.Fatal("no callback URL for the session")
	}
	addr := strings.TrimPrefix(w.hppd, "http://")
	before := procStatus(t, w.serve.cmd.Process.Pid)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var open, redials, dialled atomic.Int64
	wrong := strings.Replace(cbPath, "secret=", "secret=AAAA", 1)
	for i := 0; i < hostileConns; i++ {
		wg.Add(1)
		go func(kind int) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				open.Add(1)
				dialled.Add(1)
				bench.Outsider(c, kind, wrong, stop)
				open.Add(-1)
				redials.Add(1)
				// A slow client: it comes back at its own pace, not
				// in a flood (that is a different attack).
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
		}(i % 3)
	}
	// Let every client connect and start trickling.
	deadline := time.Now().Add(60 * time.Second)
	for dialled.Load() < hostileConns && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)

	var lat []time.Duration
	for n := 0; n < 50; n++ {
		body := fmt.Sprintf(`{"event_id":"real-%d","session":{"session_id":%q,"status":"IN_PROGRESS"}}`, n, hpp)
		start := time.Now()
		resp, err := client.Post(w.hppd+cbPath, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("genuine callback %d under load: %v", n, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
		if resp.StatusCode/100 != 2 {
			t.Fatalf("genuine callback %d under load: %d", n, resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	during := procStatus(t, w.serve.cmd.Process.Pid)
	held, reopened := open.Load(), redials.Load()
	close(stop)
	wg.Wait()

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("hostile connections open: %d of %d (reopened after hppd cut one: %d)", held, hostileConns, reopened)
	t.Logf("RSS before: %d KiB; during: %d KiB; peak (VmHWM): %d KiB; threads: %d",
		before["VmRSS"], during["VmRSS"], during["VmHWM"], during["Threads"])
	t.Logf("genuine callback latency over %d: p50 %v, p90 %v, max %v", len(lat), lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)-1])
	if peak := during["VmHWM"]; peak >= 128<<10 {
		t.Fatalf("peak RSS %d KiB with %d hostile connections, want under 128 MiB", peak, hostileConns)
	}
}

// procStatus reads the numeric fields of /proc/<pid>/status (kB values in
// KiB, counts as they are).
func procStatus(t *testing.T, pid int) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}
