// Package bench is hppd's performance benchmarks: `make bench` builds
// bin/hppd, runs cmd/hppd-bench, which runs the seven benchmarks of this
// package and rewrites BENCHMARKS.md. Nothing here runs in `make test`
// except the tests of the machinery itself (and the SIGKILL durability
// test, which is a correctness test). Timing is measured, never asserted.
//
// # The benchmarks
//
//  1. Callback ingest (callbacks.go). The real binary, `hppd serve`, on a copy
//     of a generated data file, takes valid status_update callbacks from a
//     load generator at 64 keep-alive connections; each run ends with a
//     SIGKILL while the connections are still sending, and every callback
//     that was answered 2xx is then looked up in the file. The same load goes
//     to a no-storage net/http endpoint in its own process (ceiling.go) to
//     give the machine's ceiling, and to a minimal durable server that
//     stores what hppd stores per callback and does nothing else
//     (reference.go), killed and checked the same way, to give what these
//     cores and this disk allow such a server. One more run goes to `hppd-bench
//     profiled-serve` (hppd's daemon under Go's profilers, profile.go), and
//     `go tool pprof` summarises the profiles. A disk probe (disk.go) times
//     bbolt-like commits on the same filesystem. During each run hppd's own
//     metrics say what its single writer did (busy share, callbacks and
//     pages per commit, commit time); right after each run, write
//     transactions that only rewrite k random target sessions of a copy of
//     the file (puts and commit) give the floor of the disk and bbolt for
//     callbacks at hppd's batch size, at half the connections (the most a
//     writer that never waits gets) and at one per connection (writer.go).
//  2. Poller at scale (poller.go). A file of 1,000,000 sessions, 1% due, is
//     built once per run (BuildBigFile). In process: the poller's store read
//     (tx.SessionsDue) for all, a tenth and none of the due sessions, a full
//     walk of the sessions for contrast, hpp.Service.ScheduleDue on fresh
//     copies, and poller.RunOnce with the job runner against the simulator
//     at a low Klarna rate limit, counting the requests the simulator
//     receives per second.
//  3. End-to-end overhead (e2e.go). In process, daemon.Main against the
//     simulator: sequential fallback charges (token refused, KP session, HPP
//     session, redirect URL back); hppd's own time is each request's latency
//     minus the time spent in the simulator's handler. Each run counts the
//     store's commits and the KiB written per request, and is repeated with
//     the data file in memory (tmpfs) when there is one; a probe then times
//     a commit of the average commit's pages on the data file's disk, and
//     the report puts the two together as the floor of the path.
//  4. Footprint (footprint.go). RSS of the real binary idle (empty file and
//     the big file) and under benchmark 1's load, start-up time to /readyz
//     with the big file, bytes on disk per session, binary size.
//  5. Klarna's budget and the data file over a month (month.go). In process,
//     daemon.Main with its default configuration against the simulator, on
//     one simulated clock the benchmark sets forward a poll period at a time:
//     the Klarna requests of an abandoned session over its whole life, then
//     a month at a sample of 20,000 sessions a day (70% abandoned, 25% paid,
//     5% cancelled), with the requests per simulated minute scaled to the
//     full volume, the time from payment to order, and the data file and
//     idempotency records at the end of each week under a short retention.
//  6. Outsiders (outsiders.go). The real binary with its defaults while
//     hppd-bench holds 2,000 hostile slow connections open (slowloris
//     headers, slow bodies to a callback with a wrong secret, idle
//     keep-alive), each coming back a second after hppd cuts it; genuine
//     callbacks one by one on new connections, their latency from dial to
//     answer, and peak RSS (VmHWM). Three phases per run: no outsiders (the
//     baseline), the default HPPD_MAX_CONNECTIONS, and a cap of half the
//     outsiders, where every slot is in demand.
//  7. Callback ingest on PostgreSQL (postgres.go). Benchmark 1's load,
//     data and durability check with HPPD_DATABASE_URL set: a server from
//     internal/pgtest (a throwaway cluster with fsync on, or
//     HPPD_TEST_DATABASE_URL's), a seed database loaded with benchmark 1's
//     sessions through pgstore (BuildStore), and per run a copy of it
//     (CREATE DATABASE … TEMPLATE) under one or three `hppd serve`
//     replicas. The load generator spreads its connections over the
//     replicas (connection c to replica c mod N; no balancer), every
//     replica is SIGKILLed when the window closes, and every 2xx callback
//     is looked up in the database. The CPU of hppd, of PostgreSQL's
//     processes (the postmaster's tree in /proc) and of the load generator
//     over the window says where the time goes. Benchmark 1's bbolt figure
//     of the same run stands beside it.
//
// # Method
//
// Every figure is measured at least three times (five for the cheap ones)
// and reported as median, min–max and the number of runs (Spread). The
// load generator (load.go) is a closed loop: each connection has one request
// in flight, like a webhook sender, and latencies are those of the requests
// that both started and ended inside the measured window. It speaks
// HTTP/1.1 itself over raw connections, so that it takes as little of the
// two shared cores as possible; load_test.go checks it against net/http.
// The load generator, the simulator and hppd share the machine, and the
// report says how busy the machine was (load average) before and after.
//
// Data files are made by BuildFile (data.go) the way hppd makes its data
// (BuildStore does the same into any store, a PostgreSQL database included):
// sessions built like hpp.CreateSession builds them, moved through core's
// own transitions (paid sessions have their full history), written with
// store.Tx.PutSession in large transactions, callback de-duplication entries
// kept only for the last 72 hours (what the poller's pruning leaves), and
// per-session callback secrets derived from the seed so that the load
// generator can present them.
//
// # Files
//
//	data.go        generated data files (Plan, BuildFile, NewSession, Pay)
//	load.go        the load generator
//	ceiling.go     the no-storage reference endpoint
//	reference.go   the minimal durable server
//	proc.go        child processes, readiness, /proc memory
//	disk.go        the disk probe and /proc/<pid>/io
//	callbacks.go   benchmark 1; writer.go its writer figures and the disk's floor
//	poller.go      benchmark 2 (and the big file of 2 and 4)
//	e2e.go         benchmark 3
//	footprint.go   benchmark 4
//	month.go       benchmark 5; month_report.go its section of the report
//	outsiders.go   benchmark 6; outsiders_report.go its section
//	postgres.go    benchmark 7; postgres_report.go its section
//	profile.go     the profiled daemon and pprof summaries
//	report.go      BENCHMARKS.md; analysis.go its closing note
//	run.go         Options and Run, what cmd/hppd-bench calls
package bench
