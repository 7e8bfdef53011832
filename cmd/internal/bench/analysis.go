package bench

import (
	"fmt"
	"math"
	"runtime"
	"strings"
)

func numCPU() int { return runtime.NumCPU() }

// e2eCommits are the fsynced write transactions of one fallback request
// (benchmark 3), in order; see e2eAnalysis.
var e2eCommits = []string{
	"the Idempotency-Key's claim with the charge and its safety job, before the token call (hpp.CreateCharge, hpp.PrepareKey)",
	"once Klarna answered \"unavailable\" and made the KP and the HPP session: the answer, the session with both ids, the charge's link and the request's answer under its Idempotency-Key, before the answer is sent (hpp.fallbackWithAnswer, hpp.createdAtOnce)",
}

// analysis explains the run's figures from its own numbers: where the time
// went and, for a missed target, what would close the gap.
func analysis(r *Results) string {
	var parts []string
	if cb := r.Callbacks; cb != nil && len(cb.Runs) > 0 {
		parts = append(parts, callbackAnalysis(r, cb))
	}
	if p := r.Poller; p != nil {
		parts = append(parts, pollerAnalysis(p))
	}
	if e := r.E2E; e != nil {
		parts = append(parts, e2eAnalysis(e, r.Callbacks))
	}
	if f := r.Footprint; f != nil {
		parts = append(parts, footprintAnalysis(f, r.Callbacks))
	}
	if mr := r.Month; mr != nil {
		parts = append(parts, monthAnalysis(mr))
	}
	return strings.Join(parts, "\n\n")
}

func callbackAnalysis(r *Results, cb *CallbackResult) string {
	rps := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.HPPD.RPS() })).Median
	ceil := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.Ceiling.RPS() })).Median
	wr := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.WritePerCallback() })).Median
	var b strings.Builder
	// The ratio is each run's own (hppd and the ceiling under the same
	// minutes' disk and cores), as the summary gives it.
	ratio := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.Ratio() })).Median
	fmt.Fprintf(&b, "**Callback ingest.** hppd took %.0f durable callbacks/s; the no-storage ceiling took %.0f req/s on the same cores (ratio %.2f).", rps, ceil, ratio)
	if wr > 0 {
		fmt.Fprintf(&b, " Each callback made hppd write %.1f KiB to the disk, about %.1f pages of 4 KiB: bbolt copies every page it changes on write, and a callback changes the session's leaf page (its record holds the event's de-duplication mark), a `sessions_due` entry when it brings the session's check forward, and the branch pages above them, plus the meta page and the freelist of each commit.", wr/1024, wr/4096)
	}
	lat := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.HPPD.Latencies.Quantile(0.5)) })).Median
	p99 := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.HPPD.Latencies.Quantile(0.99)) })).Median
	ws := writerSeries(cb)
	var busy, calls, pages, commit, work float64
	if len(ws) > 0 {
		busy = writerOf(ws, WriterStats.Busy).Median
		calls = writerOf(ws, WriterStats.CallsPerCommit).Median
		pages = writerOf(ws, WriterStats.WritesPerCommit).Median
		commit = writerOf(ws, WriterStats.CommitMS).Median
		work = writerOf(ws, WriterStats.WorkMS).Median
		cycle := commit + work
		fmt.Fprintf(&b, "\n\n**Where the time goes.** Every connection waits for its answer, and every answer for the group commit that holds its callback. hppd's single writer was busy %.0f%% of the window (its own metrics): one batch after the other, each of %.1f callbacks on average, %.2f ms running the batch's functions and %.2f ms committing its %.0f pages (written, fdatasynced, the meta page, fdatasynced). %.1f callbacks per %.2f ms is %.0f/s, the rate measured", 100*busy, calls, work, commit, pages, calls, cycle, 1000*calls/math.Max(cycle, 1e-9))
		if busy >= 0.9 {
			fmt.Fprintf(&b, ": on the disk the writer bounds the rate, and the commit is %.0f%% of its time.", 100*commit/math.Max(cycle, 1e-9))
		} else {
			b.WriteString(", but the writer was idle part of the time: it waited for callbacks, so it is not what bounds the rate.")
		}
		fmt.Fprintf(&b, " The median latency, %.1f ms, is the time a callback spends in hppd's request path plus the cycles it waits for: the one running when it arrives and its own.", lat)
	}
	perCB := 0.0
	if p := cb.Profile; p != nil && p.Err == "" && p.WallSeconds > 0 && p.RPS > 0 {
		n := p.RPS * p.WallSeconds
		perCB = 1e6 * p.CPUSeconds / n
		fmt.Fprintf(&b, " In the profiled run hppd used %.2f of the %d cores, %.0f µs of CPU per callback", p.CPUSeconds/p.WallSeconds, r.Machine.Cores, perCB)
		if p.WriterSeconds > 0 {
			fmt.Fprintf(&b, ", of which the writer goroutine %.0f µs (the batch's functions and bbolt's commit work, its system calls included)", 1e6*p.WriterSeconds/n)
		}
		b.WriteString("; the load generator and the kernel's loopback networking take the rest of the cores.")
	}
	if len(cb.Floor) > 0 {
		b.WriteString(floorAnalysis(r, cb, rps, ceil, calls, pages, work, commit))
	}
	if hasReference(cb) {
		b.WriteString(referenceAnalysis(cb, rps))
	}
	if m := cb.Memory; m != nil {
		mrps := m.HPPD.RPS()
		fmt.Fprintf(&b, "\n\n**Without the disk.** With the data file in memory (tmpfs: the same binary, file and load; every commit's fdatasyncs return at once) hppd took %.0f callbacks/s, p99 %.2f ms: %.1f times the rate on disk.", mrps, ms(m.HPPD.Latencies.Quantile(0.99)), mrps/math.Max(rps, 1))
		if x := m.Writer; x != nil {
			fmt.Fprintf(&b, " Its writer was busy %.0f%% of the window (%.1f callbacks per commit): without the disk the writer waits for callbacks, and the cores, shared by hppd's request path and the load generator, bound the rate.", 100*x.Busy(), x.CallsPerCommit())
		}
	}
	if commit > 0 && p99 > 0 {
		fmt.Fprintf(&b, "\n\n**p99.** A callback that arrives just after a commit started waits for it and then for its own: two cycles, 2 × %.2f ms = %.1f ms, plus its time in the request path; p99 was %.1f ms.", commit+work, 2*(commit+work), p99)
	}
	if rps >= targetCallbackRPS {
		return b.String()
	}
	fmt.Fprintf(&b, "\n\nClosing the gap means less CPU on these cores per callback, in the request path (HTTP, the callback's and the session's JSON, the prepared write) as much as on the writer: the writer's commits slow down with the load they share the cores with, and without the disk the cores alone hold the rate at the in-memory figure.")
	if p := cb.Profile; perCB > 0 {
		var top []string
		for _, a := range p.CPUAreas[:min(5, len(p.CPUAreas))] {
			top = append(top, fmt.Sprintf("%s %.0f%%", a.Name, a.Percent))
		}
		fmt.Fprintf(&b, " At %d/s, %.0f µs per callback would take %.1f cores, more than the machine has beside the load generator; the profile above says where it goes (%s).", targetCallbackRPS, perCB, perCB*targetCallbackRPS/1e6, strings.Join(top, ", "))
	}
	if hasReference(cb) && SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.Reference.RPS() })).Median < targetCallbackRPS {
		b.WriteString(" Most of that CPU is what storing a callback costs at all: the minimal durable server, with the rest of hppd's path taken away, fell short too.")
	}
	b.WriteString(" A write-ahead log in front of bbolt would cut the commit to a sequential append, but it is a second storage engine to prove crash-safe, and the pages are not what is short.")
	return b.String()
}

func pollerAnalysis(p *PollerResult) string {
	var b strings.Builder
	find := SpreadOf(p.Find).Median
	fmt.Fprintf(&b, "**Poller.** Finding the %s due sessions of %s takes %.2f ms, %.0f times less than walking the sessions without decoding them (%.0f ms): the `sessions_due` index is read from its start and the walk stops at the first entry after now, so the cost follows the due sessions, not the file.", thousands(p.Due), thousands(p.Sessions), find, SpreadOf(p.FullScan).Median/math.Max(find, 1e-9), SpreadOf(p.FullScan).Median)
	maxSliding, maxCal := 0, 0
	for _, r := range p.Reconcile {
		maxSliding = max(maxSliding, r.MaxWindow)
		maxCal = max(maxCal, r.MaxSecond)
	}
	fmt.Fprintf(&b, " Reconciling is paced by Klarna's limit: the client's token bucket releases %.0f requests/s (burst 1), and the simulator counted at most %d requests in any calendar second and %d in any sliding second.", p.Rate, maxCal, maxSliding)
	if float64(maxCal) > p.Rate || float64(maxSliding) > p.Rate {
		fmt.Fprintf(&b, " The bucket paces when requests leave, at exactly the limit; a request delayed between its token and its arrival (scheduling, GC, the 2 shared cores) lands next to the following one, so the receiver can count one or two more than the limit in a window. Klarna counts at its side, so the client should keep a margin: pace at, say, 95%% of the configured rate, or count its own sends per second window before sending (package klarna).")
	}
	return b.String()
}

func e2eAnalysis(e *E2EResult, cb *CallbackResult) string {
	own := SpreadOf(e2eSeries(e.Own, func(x E2ERun) float64 { return x.P50 })).Median
	var b strings.Builder
	fmt.Fprintf(&b, "**Fallback path.** hppd's own share of a fallback request is %.2f ms at the median. The flow has %d fsynced write transactions, one after the other, each of which must be on disk before what follows it (a crash at any point is then finished by a job or the storefront's retry with the same idempotency keys):\n\n", own, len(e2eCommits))
	for i, c := range e2eCommits {
		fmt.Fprintf(&b, "%d. %s\n", i+1, c)
	}
	commits := SpreadOf(e.Commits).Median
	if len(e.OwnMem) == 0 || len(e.CommitProbe) == 0 || commits == 0 {
		return b.String()
	}
	mem := SpreadOf(e2eSeries(e.OwnMem, func(x E2ERun) float64 { return x.P50 })).Median
	probe := SpreadOf(e.CommitProbe).Median
	floor := mem + commits*probe
	fmt.Fprintf(&b, "\nThe runs counted %.2f commits per request. With the data file in memory the same requests take %.2f ms of hppd's own time: that is the CPU the path costs on these cores (HTTP, JWT, JSON, the three Klarna calls' client side, the store's encoding and bbolt's transactions), everything but the disk. The disk adds its commits: %.2f commits of %d pages at %.2f ms each on this disk (the probe above). **The floor this disk and these cores set for the path as built is about %.2f + %.2f × %.2f = %.2f ms; hppd's own time is %.2f ms", commits, mem, commits, e.CommitPages, probe, mem, commits, probe, floor, own)
	if own > floor {
		fmt.Fprintf(&b, ", %.2f ms above it**", own-floor)
	} else {
		fmt.Fprintf(&b, ", at it** (the probe errs high: it scatters its pages at random over the data file's span, while hppd's commits often write neighbouring pages)")
	}
	if own > floor {
		fmt.Fprintf(&b, " (after each fdatasync the process wakes up on a core that idled meanwhile, and the simulator's and hppd's code run slower on it than in the in-memory runs: compare the simulator's times)")
	}
	b.WriteString(".")
	if cb != nil && cb.Disk != nil {
		fmt.Fprintf(&b, " A one-page commit takes %.2f ms on this disk (the probe of benchmark 1), so fewer pages per commit could save at most %.2f ms a request.", SpreadOf(cb.Disk.OnePage).Median, max(0, commits*(probe-SpreadOf(cb.Disk.OnePage).Median)))
	}
	if own >= targetOwnP50 {
		fmt.Fprintf(&b, " Under %.0f ms needs the CPU share (%.2f ms) or the disk's (%.2f ms) cut further: a disk with a faster fdatasync (power-loss-protected NVMe: tens of microseconds) takes the commits' share away without code.", targetOwnP50, mem, commits*probe)
	}
	return b.String()
}

func footprintAnalysis(f *FootprintResult, cb *CallbackResult) string {
	var b strings.Builder
	idle := SpreadOf(memField(f.IdleEmpty, func(m Mem) int64 { return m.RSS })).Median
	idleAnon := SpreadOf(memField(f.IdleEmpty, func(m Mem) int64 { return m.Anon })).Median
	fmt.Fprintf(&b, "**Memory.** Idle, hppd holds %.1f MiB, of which %.1f MiB is its own (anonymous) and the rest pages of its %.1f MiB executable and of the data file.", idle, idleAnon, mib(f.BinarySize))
	if idle >= targetIdleRSS {
		fmt.Fprintf(&b, " The executable is what puts it over 20 MiB: gin v1.12 links QUIC/HTTP3, YAML, TOML, BSON and protobuf codecs and a struct validator for its binding package, which hppd does not use (make build already leaves its MessagePack codec out with the tag nomsgpack); their code and tables are mapped and partly touched at start, and the validator builds about 290 KB of tables at init. A leaner HTTP layer (net/http's ServeMux routes the few paths hppd has) would bring the binary and the idle RSS down; the Go heap itself is small.")
	}
	if len(f.LoadPeak) > 0 {
		load := SpreadOf(memField(f.LoadPeak, func(m Mem) int64 { return m.RSS })).Median
		anon := SpreadOf(memField(f.LoadPeak, func(m Mem) int64 { return m.Anon })).Median
		file := SpreadOf(memField(f.LoadPeak, func(m Mem) int64 { return m.File })).Median
		fmt.Fprintf(&b, " Under benchmark 1's load the peak RSS was %.1f MiB: %.1f MiB anonymous and %.1f MiB of data-file pages seen through bbolt's mmap.", load, anon, file)
		if load >= targetLoadRSS {
			target := "all"
			if cb != nil {
				target = thousands(cb.Config.Targets)
			}
			fmt.Fprintf(&b, " The file pages are the page cache of the file: every session a callback touches brings its leaf page in, so they grow with the number of distinct sessions receiving callbacks (%s here, with random ids spread over the whole file) up to the file's size; the kernel reclaims them under memory pressure and they are shared with the page cache. The process's own memory is the part that stays bounded (%s the 64 MiB target); bounding the mapped part would take a smaller working set of pages (time-ordered ids) or bbolt dropping pages it no longer needs (`madvise`), which bbolt does not offer.", target, map[bool]string{true: "under", false: "over"}[anon < targetLoadRSS])
		}
	}
	if upCrash := SpreadOf(f.StartupAfterCrash); upCrash.N > 0 {
		up := SpreadOf(f.Startup).Median
		fmt.Fprintf(&b, "\n\n**Start-up.** With %s sessions hppd answers /readyz %.0f ms after exec following a clean stop and %.0f ms after a SIGKILL.", thousands(f.Sessions), up, upCrash.Median)
		if upCrash.Median >= targetStartupMS {
			fmt.Fprintf(&b, " The difference is bbolt's freelist: commits write it only while it is short (boltstore's freelistSyncMax; writing it costs every commit time in proportion to the file's free pages) and Close always does, so after a crash with a longer one Open walks every page of the file to rebuild it. Meeting 300 ms after such a crash as well would need the freelist rebuilt after the start (bbolt offers no way) or a compacted file with fewer free pages.")
		}
	}
	return b.String()
}

// floorAnalysis sets hppd's writer beside the floor's transactions (writer.go)
// of the same sizes.
func floorAnalysis(r *Results, cb *CallbackResult, rps, ceil, calls, pages, work, commit float64) string {
	var b strings.Builder
	f := cb.Floor[0]
	fw, fc := SpreadOf(f.Work).Median, SpreadOf(f.MS).Median
	fmt.Fprintf(&b, "\n\n**The floor.** Alone on the disk, a write transaction that only rewrites %d random target sessions of the same file, each encoded beforehand as hppd prepares a callback's, spent %.2f ms in bbolt's puts and %.2f ms committing %.0f pages: %.0f callbacks/s at that batch size if the writer did nothing else (medians of the tries after every run).", f.K, fw, fc, SpreadOf(f.Writes).Median, f.Rate())
	if sh := cb.FloorShares(); len(sh) > 0 {
		fmt.Fprintf(&b, " Each run set against the floor measured right after it, hppd reached %s of it.", SpreadOf(sh).Format("%.0f%%"))
	} else {
		fmt.Fprintf(&b, " hppd reached %.0f%% of it.", 100*rps/math.Max(f.Rate(), 1e-9))
	}
	if commit > 0 && int(calls+0.5) == f.K {
		fmt.Fprintf(&b, " Its own commits wrote %.0f pages for %.1f callbacks and took %.2f ms after %.2f ms of work, against the floor's %.0f pages in %.2f ms after %.2f ms of puts: the work beyond the puts is the callback's own (the version check, the event's mark, the `sessions_due` entry).", pages, calls, commit, work, SpreadOf(f.Writes).Median, fc, fw)
		if commit > 1.05*fc {
			fmt.Fprintf(&b, " Its commits ran while the request goroutines and the load generator shared the %d cores with the writer. bbolt's commit is CPU too (the pages serialised, %.0f write system calls, two fdatasyncs whose submission the guest kernel does on the caller's core), and back from each fdatasync the writer goroutine queues for a core.", r.Machine.Cores, pages)
		} else {
			b.WriteString(" Its commits were no slower than the floor's for as many pages: the disk's speed, which moves from minute to minute, set both.")
		}
	}
	conns := cb.Config.Conns
	var half, all *FloorCommit
	for i := range cb.Floor {
		switch cb.Floor[i].K {
		case halfConns(conns):
			half = &cb.Floor[i]
		case conns:
			all = &cb.Floor[i]
		}
	}
	if half != nil {
		fmt.Fprintf(&b, " A writer that never waits gets at most half the %d connections per commit on average: a connection answered when one commit ends sends its next callback while the next commit runs, so it is in every other commit at most. At %d per transaction the floor is %.0f/s (%.0f pages, %.2f ms of puts, %.2f ms of commit)", conns, half.K, half.Rate(), SpreadOf(half.Writes).Median, SpreadOf(half.Work).Median, SpreadOf(half.MS).Median)
		if all != nil {
			fmt.Fprintf(&b, "; at %d, every connection in every commit, which a writer would get only by waiting for the stragglers (the wait added to each cycle), %.0f/s", all.K, all.Rate())
		}
		b.WriteString(".")
		if half.Rate() < targetCallbackRPS {
			fmt.Fprintf(&b, " So on this disk no writer that keeps the sessions in this B+tree and does not wait reaches %d/s with %d connections, hppd or not.", targetCallbackRPS, conns)
		} else {
			fmt.Fprintf(&b, " So the disk does not keep a writer under %d/s: the floor at half the connections is above it.", targetCallbackRPS)
		}
	}
	if ceil > 0 {
		best := f
		for _, g := range cb.Floor {
			if g.Rate() > best.Rate() {
				best = g
			}
		}
		fmt.Fprintf(&b, " Against the no-storage ceiling (%.0f req/s), the floor's best, %.0f/s at %d per transaction, is %.2f", ceil, best.Rate(), best.K, best.Rate()/ceil)
		if best.Rate()/ceil < targetCeilingRatio {
			b.WriteString(": a third of a handler that stores nothing is out of reach for any durable store on this disk, hppd or not.")
		} else {
			b.WriteString(".")
		}
	}
	return b.String()
}

// referenceAnalysis sets hppd beside the minimal durable server of the same
// runs (reference.go): the floor these cores and this disk set for storing
// what hppd stores per callback.
func referenceAnalysis(cb *CallbackResult, rps float64) string {
	var b strings.Builder
	ref := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.Reference.RPS() })).Median
	p99 := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.Reference.Latencies.Quantile(0.99)) })).Median
	shares := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.RefShare() }))
	refRatio := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.RefRatio() })).Median
	fmt.Fprintf(&b, "\n\n**These cores and this disk.** The minimal durable server stores what hppd stores for each callback (the event's mark, the session's status, history and next check, in the same B+tree through the same group commit) and does nothing else on the way. It took %.0f callbacks/s (p99 %.1f ms), %.2f of the ceiling", ref, p99, refRatio)
	if refWriters := writersOf(cb, func(run CallbackRun) *WriterStats { return run.RefWriter }); len(refWriters) > 0 {
		fmt.Fprintf(&b, "; its writer was busy %.0f%% of the window with %.1f callbacks and %.0f pages per commit (commit %.2f ms, work %.2f ms)",
			100*writerOf(refWriters, WriterStats.Busy).Median, writerOf(refWriters, WriterStats.CallsPerCommit).Median,
			writerOf(refWriters, WriterStats.WritesPerCommit).Median, writerOf(refWriters, WriterStats.CommitMS).Median, writerOf(refWriters, WriterStats.WorkMS).Median)
	}
	fmt.Fprintf(&b, ". **hppd reached %s of it** in the same runs, with its whole path: gin, the secret and `hppId` checks, the access log and metrics.", shares.Format("%.0f%%"))
	refCPU := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.RefCPUPerCallback() })).Median
	cpu := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.CPUPerCallback() })).Median
	if refCPU > 0 && cpu > 0 {
		fmt.Fprintf(&b, " It used %.0f µs of CPU per callback, hppd %.0f µs: what hppd does beyond storing the callback costs %.0f µs of CPU per callback (%+.0f%%), on the cores its writer, its request path and the load generator share.", refCPU, cpu, cpu-refCPU, 100*(cpu-refCPU)/refCPU)
	}
	switch {
	case ref < targetCallbackRPS:
		fmt.Fprintf(&b, " So in these runs no server that stores a callback as hppd does reached %d/s on these cores and this disk, however little else it did.", targetCallbackRPS)
	case rps < targetCallbackRPS:
		fmt.Fprintf(&b, " The minimal server passed %d/s, so hppd's own path is what kept it under in these runs.", targetCallbackRPS)
	}
	if refRatio < targetCeilingRatio {
		fmt.Fprintf(&b, " Nor did it reach a third of the ceiling: the ratio target is out of reach for it too in these runs.")
	}
	return b.String()
}
