package bench

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Targets of the benchmarks (the numbers).
const (
	targetCallbackRPS   = 10_000
	targetCallbackP99   = 20.0 // ms
	targetCeilingRatio  = 1.0 / 3
	targetFindMS        = 20.0
	targetOwnP50        = 2.0 // ms
	targetIdleRSS       = 20  // MiB
	targetLoadRSS       = 64  // MiB
	targetStartupMS     = 300.0
	targetBytesPerSess  = 2048
	targetBytesPerSessK = "2 KiB"
)

// verdict is one line of the summary.
type verdict struct {
	bench, what, target, measured string
	met                           bool
	miss                          string // how far off, when missed
}

// WriteReport writes BENCHMARKS.md from r.
func WriteReport(path string, r *Results) error {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	w("# hppd benchmarks\n\n")
	w("Written by `%s` (`cmd/hppd-bench`, package `cmd/internal/bench`); do not edit by hand, run it again.\n", m.Command)
	w("Every figure below is the median of its runs, then the range (min–max) and the number of runs.\n\n")
	w("## Machine and run\n\n")
	w("| | |\n|---|---|\n")
	w("| Date | %s |\n", m.Date.Format("2006-01-02 15:04 MST"))
	w("| Command | `%s` (%s in all) |\n", m.Command, r.Elapsed.Round(time.Second))
	w("| hppd | `%s` (the binary of `make build`) |\n", orUnknown(m.HPPD))
	w("| CPU | %s, %d cores (`nproc`) |\n", m.CPU, m.Cores)
	w("| Memory | %.1f GiB |\n", float64(m.MemTotal)/(1<<30))
	w("| Kernel | Linux %s |\n", m.Kernel)
	w("| Go | %s |\n", m.Go)
	w("| Load average (1, 5, 15 min) | %s at the start, %s at the end |\n", m.LoadBefore, r.LoadAfter)
	w("\nThe load generator, the Klarna simulator and hppd (in benchmark 7, PostgreSQL too) share these %d cores: what the load generator and the simulator spend, hppd does not get. A load average above the core count at the start means other work was running and every figure is worse for it.\n\n", m.Cores)

	verdicts := summaryVerdicts(r)
	w("## Summary\n\n")
	w("| # | Figure | Target | Measured | |\n|---|---|---|---|---|\n")
	for _, v := range verdicts {
		mark := "met"
		if !v.met {
			mark = "**missed**"
			if v.miss != "" {
				mark += " (" + v.miss + ")"
			}
		}
		if v.target == "" {
			mark = "reported"
		}
		w("| %s | %s | %s | %s | %s |\n", v.bench, v.what, orDash(v.target), v.measured, mark)
	}
	w("\n")
	writeCallbacks(&b, r.Callbacks)
	writePoller(&b, r.Poller)
	writeE2E(&b, r.E2E)
	writeFootprint(&b, r.Footprint, r.Callbacks)
	writeMonth(&b, r.Month)
	writeOutsiders(&b, r.Outsiders)
	writePostgres(&b, r.Postgres, r.Callbacks)
	writeClosing(&b, r, verdicts)
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func summaryVerdicts(r *Results) []verdict {
	var vs []verdict
	if cb := r.Callbacks; cb != nil && len(cb.Runs) > 0 {
		rps := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.HPPD.RPS() }))
		p99 := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.HPPD.Latencies.Quantile(0.99)) }))
		ratio := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.Ratio() }))
		durable := true
		for _, run := range cb.Runs {
			durable = durable && run.Verified == nil
		}
		vs = append(vs,
			verdict{"1", fmt.Sprintf("durable callbacks/s, %d connections", cb.Config.Conns), "≥ 10,000/s", rps.Format("%.0f"), rps.Median >= targetCallbackRPS, missBy(rps.Median, targetCallbackRPS, true)},
			verdict{"1", "callback latency p99", "< 20 ms", p99.Format("%.1f") + " ms", p99.Median < targetCallbackP99, missBy(p99.Median, targetCallbackP99, false)},
			verdict{"1", "durable rate ÷ no-storage ceiling", "≥ 1/3", ratio.Format("%.2f"), ratio.Median >= targetCeilingRatio, missBy(ratio.Median, targetCeilingRatio, true)},
			verdict{"1", "every 2xx callback in the file after SIGKILL", "all", durableText(cb), durable, "a callback answered 2xx was lost"},
		)
		if m := cb.Memory; m != nil {
			vs = append(vs, verdict{"1", "durable callbacks/s with the data file in memory (tmpfs: no disk), 1 run", "",
				fmt.Sprintf("%.0f; p99 %.1f ms; every 2xx present after SIGKILL: %s", m.HPPD.RPS(), ms(m.HPPD.Latencies.Quantile(0.99)), errText(m.Verified)), m.Verified == nil, "a callback answered 2xx was lost"})
		}
		if ws := writerSeries(cb); len(ws) > 0 {
			vs = append(vs, verdict{"1", "the store's single writer during the runs (hppd's metrics): busy share; callbacks and pages per commit; commit and work per commit", "",
				writerSummary(ws), true, ""})
		}
		if hasReference(cb) {
			ref := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.Reference.RPS() }))
			refDurable := true
			for _, run := range cb.Runs {
				refDurable = refDurable && run.RefVerified == nil
			}
			vs = append(vs, verdict{"1", "minimal durable server on these cores and this disk (bare net/http; hppd's decoder, domain and store; nothing else): callbacks/s, ÷ ceiling; hppd ÷ it", "",
				fmt.Sprintf("%s; %s; hppd %s", ref.Format("%.0f"),
					SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.RefRatio() })).Format("%.2f"),
					SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.RefShare() })).Format("%.0f%%")),
				refDurable, "a callback it answered 2xx was lost"})
		}
		if len(cb.Floor) > 0 {
			vs = append(vs, verdict{"1", "floor of the disk and bbolt: transactions that only rewrite k random target sessions of the file (puts + commit of their leaves and branch pages)", "",
				floorSummary(cb, rps.Median), true, ""})
		}
	}
	if p := r.Poller; p != nil {
		find := SpreadOf(p.Find)
		tenth := SpreadOf(p.FindTenth)
		prop := find.Median / math.Max(tenth.Median, 1e-9)
		vs = append(vs, verdict{"2", fmt.Sprintf("find %s due of %s sessions", thousands(p.Due), thousands(p.Sessions)), "< 20 ms", find.Format("%.2f") + " ms", find.Median < targetFindMS, missBy(find.Median, targetFindMS, false)})
		vs = append(vs, verdict{"2", "cost ∝ due sessions, no full scan", "∝ due", fmt.Sprintf("%s due: %.2f ms, %s due: %.2f ms (×%.1f for ×%.0f); full scan %.0f ms", thousands(p.FindTenthN), tenth.Median, thousands(p.Due), find.Median, prop, float64(p.Due)/float64(max(p.FindTenthN, 1)), SpreadOf(p.FullScan).Median), prop < 2*float64(p.Due)/float64(max(p.FindTenthN, 1)) && find.Median < SpreadOf(p.FullScan).Median/10, "not proportional"})
		maxWin, maxSec, reqs, dur := 0, 0, 0, 0.0
		for _, run := range p.Reconcile {
			maxWin = max(maxWin, run.MaxWindow)
			maxSec = max(maxSec, run.MaxSecond)
			reqs += run.Requests
			dur += run.Duration.Seconds()
		}
		ok := float64(maxWin) <= p.Rate && float64(maxSec) <= p.Rate && len(p.Reconcile) > 0
		vs = append(vs, verdict{"2", fmt.Sprintf("Klarna requests per second during reconcile, at the simulator (limit %.0f/s)", p.Rate), fmt.Sprintf("never above %.0f", p.Rate),
			fmt.Sprintf("at most %d in a calendar second, %d in a sliding one; mean %.1f/s (%d runs)", maxSec, maxWin, float64(reqs)/math.Max(dur, 1e-9), len(p.Reconcile)), ok,
			fmt.Sprintf("by %d", max(maxSec, maxWin)-int(p.Rate))})
	}
	if e := r.E2E; e != nil {
		own := SpreadOf(e2eSeries(e.Own, func(x E2ERun) float64 { return x.P50 }))
		own99 := SpreadOf(e2eSeries(e.Own, func(x E2ERun) float64 { return x.P99 }))
		vs = append(vs, verdict{"3", "hppd's own time per fallback request, p50", "< 2 ms", own.Format("%.2f") + " ms", own.Median < targetOwnP50, missBy(own.Median, targetOwnP50, false)})
		vs = append(vs, verdict{"3", "hppd's own time per fallback request, p99", "", own99.Format("%.2f") + " ms", true, ""})
		if len(e.OwnMem) > 0 {
			mem := SpreadOf(e2eSeries(e.OwnMem, func(x E2ERun) float64 { return x.P50 }))
			vs = append(vs, verdict{"3", "hppd's own time per fallback request, p50, data file in memory (tmpfs: no disk)", "", mem.Format("%.2f") + " ms", true, ""})
			if len(e.CommitProbe) > 0 {
				commits, probe := SpreadOf(e.Commits).Median, SpreadOf(e.CommitProbe).Median
				vs = append(vs, verdict{"3", "floor of the fallback path on this disk and these cores: in-memory p50 + commits × probed commit", "",
					fmt.Sprintf("%.2f + %.2f × %.2f = %.2f ms (hppd %.2f ms)", mem.Median, commits, probe, mem.Median+commits*probe, own.Median), true, ""})
			}
		}
	}
	if f := r.Footprint; f != nil {
		idle := SpreadOf(memField(f.IdleEmpty, func(m Mem) int64 { return m.RSS }))
		idleBig := SpreadOf(memField(f.IdleBig, func(m Mem) int64 { return m.RSS }))
		load := SpreadOf(memField(f.LoadPeak, func(m Mem) int64 { return m.RSS }))
		loadAnon := SpreadOf(memField(f.LoadPeak, func(m Mem) int64 { return m.Anon }))
		up := SpreadOf(f.Startup)
		upCrash := SpreadOf(f.StartupAfterCrash)
		per := float64(f.FileSize) / float64(max(f.Sessions, 1))
		vs = append(vs,
			verdict{"4", "idle RSS after start (empty data file)", "< 20 MiB", idle.Format("%.1f") + " MiB", idle.Median < targetIdleRSS, missBy(idle.Median, targetIdleRSS, false)},
			verdict{"4", fmt.Sprintf("idle RSS after start (%s sessions)", thousands(f.Sessions)), "< 20 MiB", idleBig.Format("%.1f") + " MiB", idleBig.Median < targetIdleRSS, missBy(idleBig.Median, targetIdleRSS, false)},
			// The target is judged on the process's own memory; the file
			// pages are the page cache of bbolt's memory map (analysis.go).
			verdict{"4", "peak anonymous RSS during benchmark 1 (heap, stacks; no file pages)", "< 64 MiB", loadAnon.Format("%.1f") + " MiB", loadAnon.Median < targetLoadRSS, missBy(loadAnon.Median, targetLoadRSS, false)},
			verdict{"4", "peak RSS during benchmark 1, with the data file's mapped pages", "", load.Format("%.1f") + " MiB", true, ""},
			verdict{"4", fmt.Sprintf("start-up to /readyz with %s sessions", thousands(f.Sessions)), "< 300 ms", up.Format("%.0f") + " ms", up.Median < targetStartupMS, missBy(up.Median, targetStartupMS, false)},
			verdict{"4", fmt.Sprintf("start-up to /readyz with %s sessions, after a SIGKILL", thousands(f.Sessions)), "< 300 ms", upCrash.Format("%.0f") + " ms", upCrash.Median < targetStartupMS, missBy(upCrash.Median, targetStartupMS, false)},
			verdict{"4", "bytes on disk per session (file size ÷ sessions)", "< " + targetBytesPerSessK, fmt.Sprintf("%.0f B (1 file)", per), per < targetBytesPerSess, missBy(per, targetBytesPerSess, false)},
			verdict{"4", "binary size (`make build`: -trimpath, -s -w)", "", fmt.Sprintf("%.1f MiB", mib(f.BinarySize)), true, ""},
		)
	}
	vs = append(vs, monthVerdicts(r.Month)...)
	vs = append(vs, outsiderVerdicts(r.Outsiders)...)
	vs = append(vs, postgresVerdicts(r.Postgres, r.Callbacks)...)
	return vs
}

func writeCallbacks(b *bytes.Buffer, cb *CallbackResult) {
	if cb == nil {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	c := cb.Config
	w("## 1. Callback ingest\n\n")
	w("**How.** A data file of %s sessions (%.0f MiB; %s of them pending, the rest paid; sessions made and stored the way hppd makes them, the last fifth written in transactions of 100, so that the file ends with the few free pages of a file that grew by hppd's own small commits) is built once. Each run copies it, starts the real binary (`%s serve`, production settings: JSON logs at info, poller every 30 s, fsync on every commit) on the copy, and a Go load generator in `hppd-bench` (keep-alive HTTP/1.1, one request at a time per connection) sends valid `status_update` callbacks over %d connections: warm-up %v, then a measured window of %v. Each callback has a fresh `event_id`, the session's secret and `hppId`, and moves its session through IN_PROGRESS, BACK, FAILED and ERROR (every callback is a real write: de-duplication mark, history entry, `check_at` moved). Final statuses are left out: hppd answers them with a Klarna re-read job (benchmark 2 measures re-reads), and a final session takes later callbacks without writing. hppd answers 2xx only after the group commit holding the callback is fsynced. When the window closes, hppd is SIGKILLed while the connections are still sending; the file is then opened and every callback answered 2xx is looked up (event marked, session status). Before hppd, the same load goes to the no-storage ceiling: `hppd-bench ceiling`, a plain `net/http` handler that reads the body and answers the same JSON, in its own process; then, on its own copy of the file, to the minimal durable server (below).\n\n",
		thousands(c.Sessions), mib(cb.FileSize), thousands(c.Targets), "hppd", c.Conns, c.Warmup, c.Duration)
	w("| Run | Ceiling req/s | hppd callbacks/s | Ratio | hppd ÷ minimal durable server | p50 ms | p99 ms | max ms | Errors | KiB written per callback | 2xx checked after SIGKILL |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i, run := range cb.Runs {
		h := run.HPPD
		w("| %d | %.0f | %.0f | %.2f | %s | %.2f | %.2f | %.1f | %d | %.1f | %s |\n", i+1, run.Ceiling.RPS(), h.RPS(), run.Ratio(), refShareText(run),
			ms(h.Latencies.Quantile(0.5)), ms(h.Latencies.Quantile(0.99)), ms(h.Latencies.Max()), h.Errors+h.Requests-h.OK, run.WritePerCallback()/1024, durableRun(run.Verified, run.Acked))
	}
	ceil50 := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.Ceiling.Latencies.Quantile(0.5)) }))
	w("\nMedians over %d runs: ceiling %s req/s (p50 %s ms), hppd %s callbacks/s, p50 %s ms, p99 %s ms, max %s ms.\n\n",
		len(cb.Runs),
		SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.Ceiling.RPS() })).Format("%.0f"), ceil50.Format("%.2f"),
		SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.HPPD.RPS() })).Format("%.0f"),
		SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.HPPD.Latencies.Quantile(0.5)) })).Format("%.2f"),
		SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.HPPD.Latencies.Quantile(0.99)) })).Format("%.2f"),
		SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.HPPD.Latencies.Max()) })).Format("%.1f"))
	w("\"KiB written\" is hppd's `write_bytes` in `/proc/<pid>/io` over the window (the pages its commits wrote) divided by the callbacks answered 2xx in it. The file as built has %s free pages.\n\n", thousands64(cb.FreePages))
	if d := cb.Disk; d != nil {
		w("**The disk.** After the runs, a probe times commits on a scratch file of %d MiB in the same directory, done the way bbolt commits (write the changed pages, fdatasync, write the meta page, fdatasync), %d tries each: one page: %s ms; %d pages at random offsets (what a batch of %d callbacks would write at the KiB per callback above, were its pages scattered over the file): %s ms.\n\n",
			d.FileMiB, len(d.OnePage), SpreadOf(d.OnePage).Format("%.2f"), d.Pages, c.Conns, SpreadOf(d.Scatter).Format("%.1f"))
	}
	if ws := writerSeries(cb); len(ws) > 0 {
		w("**The writer.** Every callback waits for the group commit that holds it, and one goroutine runs the store's write transactions one after the other. hppd's own metrics, scraped at the window's start and end (`hppd_store_commit_duration_seconds`, `hppd_store_commit_calls_total`, `hppd_store_commit_writes_total`, `hppd_store_writer_busy_seconds_total`), say what it did:\n\n")
		w("| Run | Writer busy | Commits/s | Callbacks per commit | Pages per commit | Commit ms (mean) | Work ms per commit (mean) | Garbage collections/s | GOGC at the end |\n|---|---|---|---|---|---|---|---|---|\n")
		for i, run := range cb.Runs {
			if x := run.Writer; x != nil {
				w("| %d | %.0f%% | %.0f | %.1f | %.1f | %.2f | %.2f | %.1f | %.0f |\n", i+1, 100*x.Busy(), x.Commits/max(x.Window.Seconds(), 1e-9), x.CallsPerCommit(), x.WritesPerCommit(), x.CommitMS(), x.WorkMS(), x.GCsPerSecond(), x.GOGC)
			} else {
				w("| %d | %s | | | | | | | |\n", i+1, errText(run.WriterErr))
			}
		}
		w("\n\"Commit\" is bbolt's commit: the changed pages written, fdatasync, the meta page, fdatasync. \"Work\" is the batch's functions before it (with the session's new value prepared on the request's goroutine: check the stored version, write the value, mark the event). The last two columns are the Go runtime's series of the same scrapes (`go_gc_duration_seconds`' count, `go_gc_gogc_percent`): hppd paces its collector by the live heap (`internal/gctune`).\n\n")
	}
	if hasReference(cb) {
		w("**The minimal durable server.** What these cores and this disk allow a server that stores what hppd stores for these callbacks and does nothing else: `hppd-bench durable`, a bare `net/http` handler in its own process (hppd's store settings and collector pacing) that reads the body, decodes it with hppd's decoder, reads the session and its version, applies the callback as hppd's domain does (Klarna status, history entry, next check), encodes the new value on the request's goroutine, and answers once the group commit that marks the event and writes the session (the same `MarkPrepared` through the same `Batch` as hppd) is fsynced. It leaves out the rest of hppd's path: gin, the secret and `hppId` checks, the access log, metrics. Same load and window, on a fresh copy of the data file, SIGKILLed at the window's end and checked like hppd:\n\n")
		w("| Run | Callbacks/s | ÷ ceiling | p50 ms | p99 ms | CPU µs per callback (hppd's) | Writer busy | Callbacks per commit | Pages per commit | Commit ms (mean) | Work ms per commit (mean) | Garbage collections/s | 2xx checked after SIGKILL |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for i, run := range cb.Runs {
			r := run.Reference
			w("| %d | %.0f | %.2f | %.2f | %.2f | %.0f (%.0f) | ", i+1, r.RPS(), run.RefRatio(), ms(r.Latencies.Quantile(0.5)), ms(r.Latencies.Quantile(0.99)), run.RefCPUPerCallback(), run.CPUPerCallback())
			if x := run.RefWriter; x != nil {
				w("%.0f%% | %.1f | %.1f | %.2f | %.2f | %.1f | ", 100*x.Busy(), x.CallsPerCommit(), x.WritesPerCommit(), x.CommitMS(), x.WorkMS(), x.GCsPerSecond())
			} else {
				w("%s | | | | | | ", errText(run.RefWriterErr))
			}
			w("%s |\n", durableRun(run.RefVerified, run.RefAcked))
		}
		w("\n\"CPU\" is the process's user and system time over the window (`/proc/<pid>/stat`) divided by the callbacks it answered 2xx in it. Medians over %d runs: the minimal durable server %s callbacks/s, p99 %s ms; hppd reached %s of it.\n\n", len(cb.Runs),
			SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.Reference.RPS() })).Format("%.0f"),
			SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.Reference.Latencies.Quantile(0.99)) })).Format("%.2f"),
			SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.RefShare() })).Format("%.0f%%"))
	}
	if len(cb.Floor) > 0 {
		w("**The floor.** Right after each run, on a fresh copy of the data file (the disk's speed moves within minutes, so each run is set against a floor of its own time): write transactions that each rewrite k random target sessions unchanged, %d tries at each size (after %d untimed ones, which fault the copy's pages in as the runs' warm-up did). Each session is read and encoded beforehand, as hppd prepares a callback's session on the request's goroutine; the transaction then puts the k values (bbolt's descent to each leaf, the version check) and commits, fdatasynced as in production: nothing but the leaves holding those sessions and the branch pages above them. No store keeping the sessions in this B+tree can write k callbacks to k random sessions with less; k per such transaction is the most callbacks a second the disk and bbolt let through.\n\n| k (sessions per transaction) | Pages written | Puts ms | Commit ms | k ÷ (puts + commit) |\n|---|---|---|---|---|\n", floorTries, floorWarmup)
		for _, f := range cb.Floor {
			w("| %d | %s | %s | %s | %.0f/s |\n", f.K, SpreadOf(f.Writes).Format("%.0f"), SpreadOf(f.Work).Format("%.2f"), SpreadOf(f.MS).Format("%.2f"), f.Rate())
		}
		w("\nThe table holds the tries after every run together. k is the first run's callbacks per commit; %d, half the connections: the largest batch a writer that never waits gets on average (a connection answered when one commit ends sends its next callback while the next commit runs, so it is in every other commit at most); and %d, one callback per connection, what a writer that waited for every connection would commit.\n\n", halfConns(c.Conns), c.Conns)
		if sh := cb.FloorShares(); len(sh) > 0 {
			w("| Run | hppd callbacks/s | Floor at k = %d right after it | hppd ÷ floor |\n|---|---|---|---|\n", cb.Floor[0].K)
			for i := range cb.Runs {
				if run := &cb.Runs[i]; len(run.Floor) > 0 {
					w("| %d | %.0f | %.0f/s | %.0f%% |\n", i+1, run.HPPD.RPS(), run.Floor[0].Rate(), run.FloorShare())
				}
			}
			w("\n")
		}
	} else if cb.FloorErr != nil {
		w("**The floor** could not be measured: %s\n\n", errText(cb.FloorErr))
	}
	if m := cb.Memory; m != nil {
		w("**Without the disk.** One more run, the same way, with the copy of the data file in memory (tmpfs, `/dev/shm`), the ceiling not measured again: hppd took %.0f callbacks/s, p50 %.2f ms, p99 %.2f ms, max %.1f ms; %s callbacks answered 2xx; every one present after SIGKILL: %s.",
			m.HPPD.RPS(), ms(m.HPPD.Latencies.Quantile(0.5)), ms(m.HPPD.Latencies.Quantile(0.99)), ms(m.HPPD.Latencies.Max()), thousands(m.Acked), errText(m.Verified))
		if x := m.Writer; x != nil {
			w(" Its writer was busy %.0f%% of the window, with %.1f callbacks and %.1f pages per commit, commit %.2f ms.", 100*x.Busy(), x.CallsPerCommit(), x.WritesPerCommit(), x.CommitMS())
		}
		w("\n\n")
	}
	if p := cb.Profile; p != nil {
		w("### Profile of benchmark 1\n\n")
		if p.Err != "" {
			w("The profiles could not be summarised: %s\n\n", p.Err)
			return
		}
		w("One more run, same load, against `hppd-bench profiled-serve`: hppd's daemon wired as `hppd serve` wires it (`config.Load`, `daemon.Main`), with Go's CPU profiler on for the measured window and the allocation profile diffed over it (the stripped release binary has no profiling endpoint). It took %.0f callbacks/s under the profiler. hppd used %.2f s of CPU in the %.1f s window (%.2f of the %d cores), **%.0f µs of CPU per callback**. %s\n\n",
			p.RPS, p.CPUSeconds, p.WallSeconds, p.CPUSeconds/math.Max(p.WallSeconds, 1e-9), cbCores(), 1e6*p.CPUSeconds/math.Max(p.RPS*p.WallSeconds, 1e-9), keptText(p))
		w("CPU by area (flat time, summed by package):\n\n| Area | Share of hppd's CPU |\n|---|---|\n")
		for _, a := range p.CPUAreas {
			if a.Percent >= 0.5 {
				w("| %s | %.1f%% |\n", a.Name, a.Percent)
			}
		}
		w("\nTop functions by flat CPU (`go tool pprof -top`):\n\n```\n      flat  flat%%   sum%%        cum   cum%%\n%s\n```\n\n", strings.Join(p.CPUTop, "\n"))
		w("Allocations in the window: %s in all (`-sample_index=alloc_space`, base = the profile at the window's start). By area:\n\n| Area | Share of bytes allocated |\n|---|---|\n", orUnknown(p.AllocTotal))
		for _, a := range p.AllocAreas {
			if a.Percent >= 0.5 {
				w("| %s | %.1f%% |\n", a.Name, a.Percent)
			}
		}
		w("\nTop allocating functions:\n\n```\n      flat  flat%%   sum%%        cum   cum%%\n%s\n```\n\n", strings.Join(p.AllocTop, "\n"))
	}
}

func writePoller(b *bytes.Buffer, p *PollerResult) {
	if p == nil {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 2. Poller at scale\n\n")
	w("**How.** One data file of %s sessions is built per `make bench` (see benchmark 4 for its size): created one after the other over 30 days, 1%% pending and due (%s), 3%% pending and watched (due within the stale period), all pending ones among the newest, the rest paid with their full history; each session created in the last 72 h keeps two callback de-duplication entries (older ones the poller has pruned). It is written with `store.Tx.PutSession` in transactions of 10,000 sessions, the last tenth in transactions of 100 (see benchmark 1). In process, on that file:\n\n", thousands(p.Sessions), thousands(p.Due))
	w("- **Find** is the poller's store read, `tx.SessionsDue(now, 0)` in a read transaction, the index pages already in memory (as on a running hppd). Timed %d times for all %s due sessions, %d times with the clock set so that only the oldest %s are due, and %d times with none due; the bytes it allocates come from `runtime.MemStats`.\n",
		len(p.Find), thousands(p.Due), len(p.FindTenth), thousands(p.FindTenthN), len(p.FindNone))
	w("- **Full scan** walks every key and value of the `sessions` bucket without decoding one (bbolt cursor, read-only): what finding due sessions would cost without the `sessions_due` index.\n")
	w("- **ScheduleDue** is `hpp.Service.ScheduleDue`, the poller's whole store part: find the due sessions and, in fsynced transactions of 500, write a re-read job for each and move its `check_at`. One fresh copy of the file per run.\n")
	w("- **Reconcile** is `poller.RunOnce` (batch %d) with hppd's job runner running beside it, as `daemon.Main` runs them, against the in-process simulator, with Klarna's limit for reads and orders set to %.0f requests/s (`HPPD_KLARNA_OTHER_RATE`). The due sessions it takes exist at the simulator, a third of them paid there, so each run re-reads %d sessions and places the orders of the paid ones. The simulator timestamps every request it receives (millisecond resolution); the busiest calendar second (the window of Klarna's `X-Ratelimit` headers, `w=1`, and of the simulator's) and the busiest sliding one-second window are reported. A run ends when the jobs it caused are done.\n\n", reconcileBatch, p.Rate, reconcileBatch)
	w("| Measurement | Median | Min–max | Runs |\n|---|---|---|---|\n")
	row := func(name string, xs []float64, unit, num string) {
		s := SpreadOf(xs)
		w("| %s | "+num+" %s | "+num+"–"+num+" | %d |\n", name, s.Median, unit, s.Min, s.Max, s.N)
	}
	row(fmt.Sprintf("find %s due", thousands(p.Due)), p.Find, "ms", "%.2f")
	row(fmt.Sprintf("allocated by one find of %s due", thousands(p.Due)), p.FindAlloc, "MiB", "%.2f")
	row(fmt.Sprintf("find %s due", thousands(p.FindTenthN)), p.FindTenth, "ms", "%.2f")
	row("find, none due", p.FindNone, "ms", "%.3f")
	row(fmt.Sprintf("full scan of %s sessions", thousands(p.Sessions)), p.FullScan, "ms", "%.0f")
	row(fmt.Sprintf("ScheduleDue, %s due", thousands(p.Due)), p.Schedule, "ms", "%.0f")
	row("allocated by ScheduleDue", p.ScheduleAlloc, "MiB", "%.1f")
	find := SpreadOf(p.Find).Median
	w("\nPer due session: %.2f µs to find, %.0f µs to schedule.\n\n", 1000*find/float64(max(p.Due, 1)), 1000*SpreadOf(p.Schedule).Median/float64(max(p.Due, 1)))
	w("| Reconcile run | Sessions re-read | Orders placed | Klarna requests (refused) | Failed job attempts | Time | Requests/s | Busiest calendar second | Busiest sliding second |\n|---|---|---|---|---|---|---|---|---|\n")
	for i, r := range p.Reconcile {
		w("| %d | %d | %d | %d (%d) | %d | %.2f s | %.1f | %d | %d |\n", i+1, r.Sessions, r.Orders, r.Requests, r.Refused, r.Failed, r.Duration.Seconds(), float64(r.Requests)/r.Duration.Seconds(), r.MaxSecond, r.MaxWindow)
	}
	rates := make([]float64, len(p.Reconcile))
	for i, r := range p.Reconcile {
		rates[i] = float64(r.Sessions) / r.Duration.Seconds()
	}
	w("\nReconcile rate: %s sessions/s (each re-read is one Klarna request; a paid session costs a second one, its order), bounded by the %.0f requests/s limit, which the client's token bucket (burst 1) keeps: Klarna's production limit for these calls is 200/s, four times this one.\n\n", SpreadOf(rates).Format("%.1f"), p.Rate)
}

func writeE2E(b *bytes.Buffer, e *E2EResult) {
	if e == nil {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 3. End-to-end overhead of the fallback path\n\n")
	w("**How.** In process: the daemon as `daemon.Main` wires it (fresh data file, fsync on, JSON logs at info formatted and dropped, the garbage collector paced as `hppd serve` paces it) against the simulator with no faults. A storefront client sends `POST /v1/charges` (with an `Idempotency-Key`) for a customer token whose payment method is unavailable, customer present: hppd charges the token (403 `UNAVAILABLE_PAYMENT_METHOD`), creates the KP session and the HPP session of the fallback purchase, and answers 201 with the payment page's URL (checked on every answer). That is %d Klarna calls per request. Requests are sequential (one at a time), so the simulator's handler time during a request (measured by wrapping its handler) belongs to it: **hppd's own time = latency − simulator time**; it includes the client and the loopback, whose floor is the round trip of `GET /healthz` on the same connection (p50 %.2f ms). %d requests per run after a warm-up. Klarna's rate limits are lifted here (`HPPD_KLARNA_CREATE_RATE`/`OTHER_RATE`/`TOKEN_ORDER_RATE` = %s): they pace on purpose (with the production 40 creations/s and burst 1 the HPP creation waits up to 25 ms behind the KP one), and benchmark 2 shows them at work.\n\n", e.KlarnaCalls, SpreadOf(e.Health).Median, e.Requests, e.CreateRate)
	w("Each run counts the store's commits (`boltstore.DB.Commits`, background work included) and the KiB hppd wrote (`write_bytes` of `/proc/self/io`: the pages its commits dirtied) per measured request.")
	if len(e.OwnMem) > 0 {
		w(" Each run is then repeated with the data file in memory (tmpfs, `/dev/shm`): the same code and the same commits, whose fdatasyncs return at once, so its own time is what the path costs without the disk.")
	}
	w("\n\n| Run | Latency p50 | p99 | Simulator p50 | hppd's own p50 | own p99 | own max | Commits per request | KiB written per request | own p50, data file in memory |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for i := range e.Own {
		mem := "–"
		if i < len(e.OwnMem) {
			mem = fmt.Sprintf("%.2f ms", e.OwnMem[i].P50)
		}
		w("| %d | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f | %.1f | %s |\n", i+1, e.Total[i].P50, e.Total[i].P99, e.Sim[i].P50, e.Own[i].P50, e.Own[i].P99, e.Own[i].Max, at(e.Commits, i), at(e.KiB, i), mem)
	}
	w("\nMedians: latency p50 %s ms, simulator %s ms, hppd's own p50 %s ms, p99 %s ms",
		SpreadOf(e2eSeries(e.Total, func(x E2ERun) float64 { return x.P50 })).Format("%.2f"),
		SpreadOf(e2eSeries(e.Sim, func(x E2ERun) float64 { return x.P50 })).Format("%.2f"),
		SpreadOf(e2eSeries(e.Own, func(x E2ERun) float64 { return x.P50 })).Format("%.2f"),
		SpreadOf(e2eSeries(e.Own, func(x E2ERun) float64 { return x.P99 })).Format("%.2f"))
	if len(e.OwnMem) > 0 {
		w("; with the data file in memory, own p50 %s ms", SpreadOf(e2eSeries(e.OwnMem, func(x E2ERun) float64 { return x.P50 })).Format("%.2f"))
	}
	w(".\n\n")
	if len(e.CommitProbe) > 0 {
		w("**The disk.** After the runs, a probe times commits done the way bbolt commits (write the pages in ascending order, fdatasync, write the meta page, fdatasync) of %d random pages (the average commit of the runs: %.1f KiB written per request over %.2f commits) of a file in the data file's directory as long as the runs' data files were up to their high-water mark at the end (%s KiB: the span a fresh data file's commits write in), %d tries: %s ms.\n\n",
			e.CommitPages, SpreadOf(e.KiB).Median, SpreadOf(e.Commits).Median, SpreadOf(e.DataKiB).Format("%.0f"), len(e.CommitProbe), SpreadOf(e.CommitProbe).Format("%.2f"))
	}
}

// at is xs[i], or 0 past its end.
func at(xs []float64, i int) float64 {
	if i < len(xs) {
		return xs[i]
	}
	return 0
}

func writeFootprint(b *bytes.Buffer, f *FootprintResult, cb *CallbackResult) {
	if f == nil {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 4. Footprint\n\n")
	w("**How.** Memory is `/proc/<pid>/status` of the real binary: VmRSS = RssAnon (heap, stacks) + RssFile (pages of mapped files touched: mostly the bbolt file, which bbolt reads through mmap; the kernel can drop them and read them again) + RssShmem. Idle: one second after `/readyz` first answered 200. Start-up: from exec to the first 200 from `/readyz` (polled every millisecond), with the %s-session file in the page cache, after a clean stop (SIGTERM; the store writes bbolt's freelist when it closes) and after a SIGKILL that followed a committed callback (the next Open rebuilds the freelist by walking the whole file). Under load: sampled every 50 ms during each run of benchmark 1.\n\n", thousands(f.Sessions))
	w("| Measurement | Median | Min–max | Runs |\n|---|---|---|---|\n")
	row := func(name string, xs []float64, unit, num string) {
		s := SpreadOf(xs)
		w("| %s | "+num+" %s | "+num+"–"+num+" | %d |\n", name, s.Median, unit, s.Min, s.Max, s.N)
	}
	rss := func(m Mem) int64 { return m.RSS }
	anon := func(m Mem) int64 { return m.Anon }
	file := func(m Mem) int64 { return m.File }
	row("idle RSS, empty data file", memField(f.IdleEmpty, rss), "MiB", "%.1f")
	row("idle RSS, empty data file: anonymous", memField(f.IdleEmpty, anon), "MiB", "%.1f")
	row(fmt.Sprintf("idle RSS, %s sessions", thousands(f.Sessions)), memField(f.IdleBig, rss), "MiB", "%.1f")
	row(fmt.Sprintf("idle RSS, %s sessions: anonymous", thousands(f.Sessions)), memField(f.IdleBig, anon), "MiB", "%.1f")
	row("peak RSS during benchmark 1", memField(f.LoadPeak, rss), "MiB", "%.1f")
	row("peak RSS during benchmark 1: anonymous", memField(f.LoadPeak, anon), "MiB", "%.1f")
	row("peak RSS during benchmark 1: file pages", memField(f.LoadPeak, file), "MiB", "%.1f")
	row(fmt.Sprintf("start-up to /readyz, %s sessions", thousands(f.Sessions)), f.Startup, "ms", "%.0f")
	row(fmt.Sprintf("start-up to /readyz, %s sessions, after a SIGKILL", thousands(f.Sessions)), f.StartupAfterCrash, "ms", "%.0f")
	w("| binary size | %.1f MiB (%s bytes) | | 1 |\n", mib(f.BinarySize), thousands64(f.BinarySize))
	fs := f.FileStats
	w("\n**Disk.** The %s-session file is %.0f MiB: **%.0f bytes per session** (file size ÷ sessions, everything included: indexes, de-duplication entries, free pages, half-empty pages). bbolt's own count: %.0f MiB of pages up to the high-water mark, %.0f MiB of them free; the leaf pages hold %.0f MiB of keys and values in %.0f MiB (%.0f%% full: B+tree pages split at half, and random keys keep them about two-thirds full).\n\n",
		thousands(f.Sessions), mib(f.FileSize), float64(f.FileSize)/float64(max(f.Sessions, 1)), mib(fs.PagesInUse), mib(fs.Free), mib(fs.LeafInuse), mib(fs.LeafAlloc), 100*float64(fs.LeafInuse)/math.Max(float64(fs.LeafAlloc), 1))
	w("| Bucket | Keys | Leaf bytes in use | Leaf bytes allocated | Per session (allocated) |\n|---|---|---|---|---|\n")
	for _, bs := range fs.Buckets {
		w("| %s | %s | %.1f MiB | %.1f MiB | %.0f B |\n", bs.Name, thousands(bs.Keys), mib(bs.LeafInuse), mib(bs.LeafAlloc), float64(bs.LeafAlloc)/float64(max(f.Sessions, 1)))
	}
	w("\n")
}

func writeClosing(b *bytes.Buffer, r *Results, vs []verdict) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## Closing note\n\n")
	var missed []verdict
	for _, v := range vs {
		if !v.met && v.target != "" {
			missed = append(missed, v)
		}
	}
	if len(missed) == 0 {
		w("Every target is met on this run.\n\n")
	} else {
		w("Targets missed on this run:\n\n")
		for _, v := range missed {
			w("- benchmark %s, %s: %s against %s (%s).\n", v.bench, v.what, v.measured, v.target, v.miss)
		}
		w("\n")
	}
	w("%s\n", analysis(r))
}

func keptText(p *ProfileSummary) string {
	if !p.Kept {
		return ""
	}
	return fmt.Sprintf("The profiles are kept in `%s` (e.g. `go tool pprof -top %s`).", p.Dir, filepath.Join(p.Dir, "cpu.pprof"))
}

func cbSeries(cb *CallbackResult, f func(CallbackRun) float64) []float64 {
	out := make([]float64, len(cb.Runs))
	for i, r := range cb.Runs {
		out[i] = f(r)
	}
	return out
}

func e2eSeries(runs []E2ERun, f func(E2ERun) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

// durableRun is a run's check after SIGKILL: its error, or how many
// callbacks answered 2xx were all found.
func durableRun(verified error, acked int) string {
	if verified != nil {
		return "**" + verified.Error() + "**"
	}
	return fmt.Sprintf("all %s present", thousands(acked))
}

// hasReference says whether every run loaded the minimal durable server.
func hasReference(cb *CallbackResult) bool {
	for _, run := range cb.Runs {
		if run.Reference == nil {
			return false
		}
	}
	return len(cb.Runs) > 0
}

// refShareText is hppd's share of the minimal durable server's rate in run.
func refShareText(run CallbackRun) string {
	if run.Reference == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", run.RefShare())
}

func durableText(cb *CallbackResult) string {
	n := 0
	for _, run := range cb.Runs {
		if run.Verified != nil {
			return run.Verified.Error()
		}
		n += run.Acked
	}
	return fmt.Sprintf("%s of %s, %d runs", thousands(n), thousands(n), len(cb.Runs))
}

// missBy says how far a median is from its target.
func missBy(got, target float64, higherIsBetter bool) string {
	if target == 0 {
		return ""
	}
	if higherIsBetter {
		return fmt.Sprintf("%.0f%% short", 100*(target-got)/target)
	}
	return fmt.Sprintf("%.0f%% over", 100*(got-target)/target)
}

// writerSeries are the runs' hppd writer figures, for those that have them.
func writerSeries(cb *CallbackResult) []WriterStats {
	return writersOf(cb, func(run CallbackRun) *WriterStats { return run.Writer })
}

// writersOf are the writer figures pick gives of each run, for the runs
// that have them.
func writersOf(cb *CallbackResult, pick func(CallbackRun) *WriterStats) []WriterStats {
	var out []WriterStats
	for _, run := range cb.Runs {
		if w := pick(run); w != nil && w.Commits > 0 {
			out = append(out, *w)
		}
	}
	return out
}

// writerOf is one figure of the runs' writers.
func writerOf(ws []WriterStats, f func(WriterStats) float64) Spread {
	xs := make([]float64, len(ws))
	for i, x := range ws {
		xs[i] = f(x)
	}
	return SpreadOf(xs)
}

func writerSummary(ws []WriterStats) string {
	return fmt.Sprintf("busy %s; %s callbacks, %s pages per commit; commit %s ms, work %s ms",
		writerOf(ws, func(x WriterStats) float64 { return 100 * x.Busy() }).Format("%.0f%%"),
		writerOf(ws, WriterStats.CallsPerCommit).Format("%.1f"),
		writerOf(ws, WriterStats.WritesPerCommit).Format("%.0f"),
		writerOf(ws, WriterStats.CommitMS).Format("%.2f"),
		writerOf(ws, WriterStats.WorkMS).Format("%.2f"))
}

func floorSummary(cb *CallbackResult, rps float64) string {
	var parts []string
	for _, f := range cb.Floor {
		parts = append(parts, fmt.Sprintf("k = %d: %.0f pages, %.2f + %.2f ms: %.0f/s", f.K, SpreadOf(f.Writes).Median, SpreadOf(f.Work).Median, SpreadOf(f.MS).Median, f.Rate()))
	}
	if sh := cb.FloorShares(); len(sh) > 0 {
		return fmt.Sprintf("%s (hppd %.0f/s; each run against the floor at k = %d measured right after it: %s of it)", strings.Join(parts, "; "), rps, cb.Floor[0].K, SpreadOf(sh).Format("%.0f%%"))
	}
	return fmt.Sprintf("%s (hppd %.0f/s: %.0f%% of the floor at k = %d)", strings.Join(parts, "; "), rps, 100*rps/max(cb.Floor[0].Rate(), 1e-9), cb.Floor[0].K)
}

func thousands(n int) string { return thousands64(int64(n)) }

func thousands64(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func cbCores() int { return max(1, numCPU()) }
