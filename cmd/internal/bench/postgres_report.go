package bench

import (
	"bytes"
	"fmt"
	"math"
	"strings"
)

func pgSeries(runs []PostgresRun, f func(PostgresRun) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

func pgRPS(r PostgresRun) float64 { return r.HPPD.RPS() }
func pgP50(r PostgresRun) float64 { return ms(r.HPPD.Latencies.Quantile(0.5)) }
func pgP99(r PostgresRun) float64 { return ms(r.HPPD.Latencies.Quantile(0.99)) }
func pgMax(r PostgresRun) float64 { return ms(r.HPPD.Latencies.Max()) }

// pgErrors are the requests of the window not answered 2xx: transport
// errors and other statuses.
func pgErrors(r PostgresRun) int { return r.HPPD.Errors + r.HPPD.Requests - r.HPPD.OK }

func replicasText(n int) string {
	if n == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", n)
}

// bboltBeside is benchmark 1's figure of the same run, for the summary.
func bboltBeside(cb *CallbackResult) string {
	if cb == nil || len(cb.Runs) == 0 {
		return "bbolt: benchmark 1 did not run"
	}
	rps := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.HPPD.RPS() }))
	p99 := SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.HPPD.Latencies.Quantile(0.99)) }))
	return fmt.Sprintf("bbolt (benchmark 1): %.0f/s, p99 %.1f ms", rps.Median, p99.Median)
}

func postgresVerdicts(p *PostgresResult, cb *CallbackResult) []verdict {
	if p == nil || len(p.Runs) == 0 {
		return nil
	}
	var vs []verdict
	for _, n := range p.Config.Replicas {
		runs := p.Setup(n)
		if len(runs) == 0 {
			continue
		}
		rps, p99 := SpreadOf(pgSeries(runs, pgRPS)), SpreadOf(pgSeries(runs, pgP99))
		vs = append(vs, verdict{"7", fmt.Sprintf("durable callbacks/s on PostgreSQL, %s, %d connections", replicasText(n), p.Config.Conns), "",
			fmt.Sprintf("%s; p99 %s ms; %s", rps.Format("%.0f"), p99.Format("%.1f"), bboltBeside(cb)), true, ""})
	}
	vs = append(vs, verdict{"7", "every 2xx callback in the database after SIGKILL of every replica", "all", pgDurableText(p.Runs), pgDurable(p.Runs), "a callback answered 2xx was lost"})
	return vs
}

func pgDurable(runs []PostgresRun) bool {
	for _, r := range runs {
		if r.Verified != nil {
			return false
		}
	}
	return len(runs) > 0
}

func pgDurableText(runs []PostgresRun) string {
	n := 0
	for _, r := range runs {
		if r.Verified != nil {
			return r.Verified.Error()
		}
		n += r.Acked
	}
	return fmt.Sprintf("%s of %s, %d runs", thousands(n), thousands(n), len(runs))
}

func writePostgres(b *bytes.Buffer, p *PostgresResult, cb *CallbackResult) {
	if p == nil {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	c := p.Config
	w("## 7. Callback ingest on PostgreSQL\n\n")
	server := "a throwaway cluster `hppd-bench` starts for the benchmark (`internal/pgtest`: `initdb` and `pg_ctl` in a temporary directory on the same disk as the other benchmarks' files, a loopback port, fsync and full_page_writes on, PostgreSQL's default `shared_buffers`), stopped and removed at the end"
	if !p.Throwaway {
		server = "the server of `HPPD_TEST_DATABASE_URL`, as it is configured"
	}
	w("**How.** Benchmark 1's load on hppd with `HPPD_DATABASE_URL` set, on the same machine in the same run. The server is %s. Its settings, as `SHOW` reports them (hppd sets `synchronous_commit=on` on its own connections whatever the server's default):\n\n", server)
	w("| Setting | Value |\n|---|---|\n")
	for _, s := range p.Settings {
		w("| `%s` | %s |\n", s[0], s[1])
	}
	fewer := ""
	if cb != nil && cb.Config.Sessions != c.Sessions {
		fewer = fmt.Sprintf("; not benchmark 1's %s, set by `-postgres-sessions`", thousands(cb.Config.Sessions))
	}
	w("\nA seed database is loaded once with benchmark 1's sessions (%s%s; %s of them pending, made the same way from the same seed) through the store contract, `PutSession` and `MarkEvent` in transactions of %s (the last fifth in transactions of 100; benchmark 1's 10,000 would hold more key locks than the server's lock table takes), then `VACUUM ANALYZE` (what autovacuum does to a database that grew over a month): %.0f s, %.0f MiB (`pg_database_size`). ",
		thousands(c.Sessions), fewer, thousands(c.Targets), thousands(pgTxSize), p.Build.Seconds(), mib(p.DBSize))
	w("Each run copies it (`CREATE DATABASE … TEMPLATE`), starts N replicas (`hppd serve`, each with production settings and `HPPD_DATABASE_MAX_CONNS` at its default of 16) on the copy, and benchmark 1's load generator sends the same callbacks (same mix of statuses, fresh event ids) over %d connections, warm-up %v, then a measured window of %v. The connections are spread evenly over the replicas, connection c to replica c mod N, each session's callbacks on one connection as in benchmark 1; there is no load balancer in between (a benchmark needs none, and one would take its own share of the two cores). When the window closes every replica is SIGKILLed while the connections are still sending, and every callback answered 2xx is looked up in the database (event marked, session status)%s. The replica counts take turns run by run. CPU is read from `/proc/<pid>/stat` at the window's start and end: every hppd replica; every PostgreSQL process (the postmaster, its live children and those that ended); `hppd-bench` itself, the load generator.\n\n",
		c.Conns, c.Warmup, c.Duration, checkText(c.Check))
	cores := float64(cbCores())
	win := c.Duration.Seconds()
	for _, n := range c.Replicas {
		runs := p.Setup(n)
		if len(runs) == 0 {
			continue
		}
		w("**%s.**\n\n", capitalize(replicasText(n)))
		w("| Run | Callbacks/s | p50 ms | p99 ms | max ms | Errors | 2xx checked after SIGKILL | CPU s: hppd | CPU s: PostgreSQL | CPU s: load generator |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for i, r := range runs {
			w("| %d | %.0f | %.2f | %.2f | %.1f | %d | %s | %.2f | %s | %.2f |\n", i+1, pgRPS(r), pgP50(r), pgP99(r), pgMax(r), pgErrors(r), pgDurableRun(r), r.HPPDCPU, cpuText(r.ServerCPU), r.LoadCPU)
		}
		errs := 0
		for _, r := range runs {
			errs += pgErrors(r)
		}
		w("| Summary | %s | %s | %s | %s | %d | %s | %s | %s | %s |\n\n",
			SpreadOf(pgSeries(runs, pgRPS)).Format("%.0f"), SpreadOf(pgSeries(runs, pgP50)).Format("%.2f"),
			SpreadOf(pgSeries(runs, pgP99)).Format("%.2f"), SpreadOf(pgSeries(runs, pgMax)).Format("%.1f"), errs, pgDurableText(runs),
			SpreadOf(pgSeries(runs, func(r PostgresRun) float64 { return r.HPPDCPU })).Format("%.2f"),
			SpreadOf(pgSeries(runs, serverCPU)).Format("%.2f"),
			SpreadOf(pgSeries(runs, func(r PostgresRun) float64 { return r.LoadCPU })).Format("%.2f"))
		w("%s\n\n", whereTimeGoes(runs, cores, win))
	}
	if cb != nil && len(cb.Runs) > 0 {
		w("**Beside bbolt.** Benchmark 1 in this run: %s callbacks/s, p50 %s ms, p99 %s ms, on one process and its bbolt file.",
			SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.HPPD.RPS() })).Format("%.0f"),
			SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.HPPD.Latencies.Quantile(0.5)) })).Format("%.2f"),
			SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return ms(run.HPPD.Latencies.Quantile(0.99)) })).Format("%.2f"))
		for _, n := range c.Replicas {
			if runs := p.Setup(n); len(runs) > 0 {
				w(" PostgreSQL with %s: %.2f of bbolt's rate.", replicasText(n), SpreadOf(pgSeries(runs, pgRPS)).Median/math.Max(SpreadOf(cbSeries(cb, func(run CallbackRun) float64 { return run.HPPD.RPS() })).Median, 1e-9))
			}
		}
		w("\n\n")
	} else {
		w("Benchmark 1 did not run with this one, so there is no bbolt figure of the same run beside these.\n\n")
	}
	if p.CPUNote != "" {
		w("The PostgreSQL server's CPU is not known: %s.\n\n", p.CPUNote)
	}
}

// whereTimeGoes is the CPU split of a replica count in one sentence:
// medians of the window's CPU seconds as shares of the cores and per
// callback answered 2xx.
func whereTimeGoes(runs []PostgresRun, cores, window float64) string {
	hppd := SpreadOf(pgSeries(runs, func(r PostgresRun) float64 { return r.HPPDCPU })).Median
	load := SpreadOf(pgSeries(runs, func(r PostgresRun) float64 { return r.LoadCPU })).Median
	rps := SpreadOf(pgSeries(runs, pgRPS)).Median
	per := func(sec float64) float64 { return 1e6 * sec / math.Max(rps*window, 1e-9) }
	var server float64 = -1
	known := true
	for _, r := range runs {
		known = known && r.ServerCPU >= 0
	}
	if known {
		server = SpreadOf(pgSeries(runs, func(r PostgresRun) float64 { return r.ServerCPU })).Median
	}
	if !known {
		return fmt.Sprintf("Where the time goes: hppd used %.2f of the %.0f cores (%.0f µs of CPU per callback), the load generator %.2f; the server's share is not known.",
			hppd/window, cores, per(hppd), load/window)
	}
	ours := (hppd + server + load) / window
	s := fmt.Sprintf("Where the time goes: in the window PostgreSQL's processes used %.2f of the %.0f cores (%.0f µs of CPU per callback), hppd %.2f (%.0f µs per callback), the load generator %.2f",
		server/window, cores, per(server), hppd/window, per(hppd), load/window)
	idle := cores - ours
	machineKnown := true
	for _, r := range runs {
		machineKnown = machineKnown && r.MachineCPU >= 0
	}
	if machineKnown {
		busy := SpreadOf(pgSeries(runs, func(r PostgresRun) float64 { return r.MachineCPU })).Median / window
		other := max(busy-ours, 0)
		idle = max(cores-busy, 0)
		s += fmt.Sprintf(", other work on the machine %.2f", other)
	}
	switch {
	case idle > 0.25*cores:
		return s + fmt.Sprintf("; %.2f of the cores stayed idle, so the callbacks spent much of their time waiting (commits' WAL flushes, locks, transactions run again), not computing.", idle)
	case idle < 0.1*cores:
		return s + fmt.Sprintf("; %.2f stayed idle: the cores were the bound.", idle)
	}
	return s + fmt.Sprintf("; %.2f stayed idle.", idle)
}

func pgDurableRun(r PostgresRun) string {
	if r.Verified != nil {
		return "**" + r.Verified.Error() + "**"
	}
	return fmt.Sprintf("all %s present", thousands(r.Acked))
}

// serverCPU is a run's PostgreSQL CPU, NaN (left out of a Spread) when
// unknown.
func serverCPU(r PostgresRun) float64 {
	if r.ServerCPU < 0 {
		return math.NaN()
	}
	return r.ServerCPU
}

func checkText(check bool) string {
	if check {
		return "; after the first run of each replica count `pgstore`'s whole-database check runs too"
	}
	return ""
}

func cpuText(sec float64) string {
	if sec < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.2f", sec)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
