// Package metrics exports hppd's Prometheus metrics on GET /metrics of
// HPPD_METRICS_LISTEN (default 127.0.0.1:9464), a listener of its own.
//
// The package knows nothing of the daemon's wiring: the wiring
// (internal/daemon) calls the Observe methods from its hooks, hands Watch
// the parts of a running hppd as small interfaces (State), and serves
// Handler on its own listener. The metrics come from two places, chosen by
// what each one measures.
//
// Events, observed as they happen (the Observe methods):
//
//	hppd_klarna_requests_total{account,operation,status}  Klarna call attempts; status is the HTTP code, or "error" without an HTTP answer
//	hppd_klarna_request_duration_seconds{account,operation}  histogram of their duration
//	hppd_http_requests_total{route,code}              requests hppd answered; route is the gin pattern, so ids never become labels
//	hppd_http_request_duration_seconds{route}         histogram of their duration
//	hppd_poll_runs_total{result}                      poller runs, "ok" or "error"
//	hppd_poll_duration_seconds                        histogram of their duration
//	hppd_poll_items_total{kind}                       what the runs did: synced, expiring, jobs, pruned
//	hppd_pruned_records_total{record}                 records retention deleted: session, charge, token, idempotency_key, callback_event
//	hppd_store_commit_duration_seconds                histogram of the bbolt file's commits (page writes and both fdatasyncs)
//	hppd_store_commit_calls_total                     write calls those commits carried (÷ commits: the group commit's batch size)
//	hppd_store_commit_writes_total                    pages they wrote (one per changed B+tree node, plus the meta page)
//	hppd_store_writer_busy_seconds_total              time the single writer spent in write transactions (rate near 1: the writer bounds the write rate)
//
// The store_ series are the bbolt file's (boltstore.Options.OnCommit); on
// PostgreSQL the database's own statistics say what its commits cost, and
// hppd reports none of them.
//
// State, read at scrape time by a collector:
//
//	hppd_sessions{status}, hppd_charges{status}       records by hppd status
//	hppd_jobs_waiting{kind}                           jobs in the durable outbox
//	hppd_oldest_unplaced_authorization_seconds        age of the oldest authorization whose order is not placed (0: none); Klarna's expire at 60 min
//	hppd_store_up                                     1 when the scrape could read the store
//	hppd_reread_backlog, hppd_reread_backlog_oldest_seconds   routine re-reads due but not done, and how long the oldest has been due
//	hppd_reread_schedule_max_gap_seconds              the longest gap of HPPD_STALE_AFTER (the alert compares the backlog's age with it)
//	hppd_callbacks_total{result}                      status_update callbacks: accepted, duplicate, rejected
//	hppd_orders_placed_total, hppd_orders_failed_total
//	hppd_orders_id_unknown_total                      orders placed whose id hppd could not learn (order_id_unknown)
//	hppd_klarna_unusable_answers_total{operation}     2xx order answers hppd could not use (outcome treated as unknown)
//	hppd_fallbacks_started_total, hppd_tokens_recovered_total
//	hppd_jobs_failed_total                            job attempts that failed and were rescheduled
//	hppd_charges_outcomes_total{outcome}              token charge outcomes
//	hppd_poll_last_run_timestamp_seconds, hppd_poll_lag_seconds   the poller's last run (absent before the first)
//	hppd_poll_scheduled                               1 while the poller's schedule runs
//	hppd_klarna_up{account}                           1 when the account's last Klarna attempt got an answer that was neither 5xx nor 429 (absent before the first)
//	hppd_build_info{version,goversion}                always 1
//
// The store's series come from one read transaction over the store's
// counters and its authorized index, so a scrape costs the same with ten
// sessions or ten million (the re-read backlog walks the due indexes up to
// now: its cost follows the backlog), and the numbers cannot drift from the store: no
// counter has to be kept in step on the request path. The flows' counters
// are hpp.Stats, read atomically.
//
// Replicas. On PostgreSQL several replicas share one store, and each one
// exports the store's series (hppd_sessions, hppd_charges,
// hppd_jobs_waiting, hppd_oldest_unplaced_authorization_seconds, the re-read
// backlog) read from the same database; everything else (HTTP, Klarna calls,
// the poller, the flows' counters) is what that process did. The alert rules
// take the store's series as `max without (instance, pod)` over the
// replicas, so N replicas fire one alert, and add the deployment's event
// counters up the same way. The alternative, only the holder of a "metrics"
// lease in the database exporting the store, was not taken: when the holder
// dies its series are gone until the lease expires and another replica's
// start, so an alert's `for` starts over and the alert resolves and fires
// again under a new instance label, and the rules would still need the
// aggregation to hide the handover. With every replica exporting, an alert
// holds as long as any replica is scraped, hppd_store_up says which replica
// cannot read the store, and no state in the database is needed. The cost
// is one store read per replica per scrape (on PostgreSQL the counts are a
// GROUP BY), and a query that sums a store series over replicas counts it N
// times: the dashboard takes the largest reading too.
//
// The store, the flows and the poller exist only once the daemon has opened
// them, so the collector reads them at scrape time through the State last
// given to Watch and reports nothing of a part that is not there yet. Series
// that have no value yet are left out rather than reported as a misleading
// zero.
//
// The metrics live in their own prometheus.Registry (with the Go runtime and
// process collectors), never the global one, so two daemons in one process
// (tests) do not collide. The alert rules and the dashboard in deploy/ may
// only use names and labels this registry exports; a test holds them to it.
//
// Klarna being down does not make hppd unready (callbacks must still be taken
// and stored): it shows here, as hppd_klarna_up = 0 and a rising share of 5xx
// and "error" statuses, which is what deploy/prometheus/alerts.yml alerts on.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/poller"
)

// Path is where the metrics are served.
const Path = "/metrics"

// Histogram buckets, in seconds, chosen around the limits that matter.
var (
	// Klarna calls time out after HPPD_KLARNA_TIMEOUT (30 s by default).
	klarnaBuckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30}
	// Klarna waits 3 s for a callback's answer before it retries.
	httpBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3, 10}
	// A poller run works off due jobs at Klarna's rate limits.
	pollBuckets = []float64{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300}
	// A commit is two fdatasyncs and the pages before them: a fraction of
	// a millisecond on a fast SSD, tens on a slow network disk; callbacks
	// wait for it, and Klarna for them (3 s).
	commitBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 3}
)

// Metrics holds hppd's metrics and the registry that exports them.
type Metrics struct {
	// Registry exports every metric of hppd (and the Go and process
	// collectors); /metrics serves it.
	Registry *prometheus.Registry

	klarnaRequests *prometheus.CounterVec
	klarnaDuration *prometheus.HistogramVec
	httpRequests   *prometheus.CounterVec
	httpDuration   *prometheus.HistogramVec
	pollRuns       *prometheus.CounterVec
	pollDuration   prometheus.Histogram
	pollItems      *prometheus.CounterVec
	pruned         *prometheus.CounterVec
	commitDuration prometheus.Histogram
	commitCalls    prometheus.Counter
	commitWrites   prometheus.Counter
	writerBusy     prometheus.Counter

	// klarnaUp is each account's last Klarna answer: 1 or 0 (absent
	// before the first).
	klarnaUp sync.Map // account → *atomic.Int32

	state *stateCollector
}

// New returns hppd's metrics, labelled with the build's version. Until
// Watch is called only the event metrics and the build's are reported.
func New(version string) *Metrics {
	x := &Metrics{
		Registry: prometheus.NewRegistry(),
		klarnaRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hppd_klarna_requests_total",
			Help: "Klarna call attempts by operation and outcome: the HTTP status code, or \"error\" when no HTTP answer came (timeout, connection failure).",
		}, []string{"account", "operation", "status"}),
		klarnaDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hppd_klarna_request_duration_seconds",
			Help:    "Duration of Klarna call attempts by account and operation.",
			Buckets: klarnaBuckets,
		}, []string{"account", "operation"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hppd_http_requests_total",
			Help: "HTTP requests answered by hppd, by route pattern and status code (route \"unmatched\" for unknown paths).",
		}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hppd_http_request_duration_seconds",
			Help:    "Duration of HTTP requests answered by hppd, by route pattern.",
			Buckets: httpBuckets,
		}, []string{"route"}),
		pollRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hppd_poll_runs_total",
			Help: "Poller runs by result (\"ok\", or \"error\" when due sessions could not be scheduled).",
		}, []string{"result"}),
		pollDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hppd_poll_duration_seconds",
			Help:    "Duration of poller runs.",
			Buckets: pollBuckets,
		}),
		pollItems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hppd_poll_items_total",
			Help: "What poller runs did: stale sessions scheduled for a re-read (synced), sessions near expiry scheduled for disabling (expiring), jobs run (jobs), callback de-duplication entries pruned (pruned).",
		}, []string{"kind"}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hppd_store_commit_duration_seconds",
			Help:    "Duration of the data file's commits: writing the changed pages, fdatasync, the meta page, fdatasync (bbolt only).",
			Buckets: commitBuckets,
		}),
		commitCalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hppd_store_commit_calls_total",
			Help: "Write calls carried by the data file's commits; divided by the commits, the group commit's batch size (bbolt only).",
		}),
		commitWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hppd_store_commit_writes_total",
			Help: "Pages the data file's commits wrote: one per changed B+tree node and one for the meta page (bbolt only).",
		}),
		writerBusy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hppd_store_writer_busy_seconds_total",
			Help: "Time the store's single writer spent in write transactions, running them and committing; a rate near 1 means it bounds the write rate (bbolt only).",
		}),
	}
	x.pruned = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hppd_pruned_records_total",
		Help: "Records the poller's retention deleted: final sessions and charges past HPPD_RETENTION (session, charge), unused customer token views (token), idempotency records past HPPD_IDEMPOTENCY_TTL (idempotency_key), callback de-duplication marks past Klarna's retry window (callback_event).",
	}, []string{"record"})
	for _, k := range prunedRecords {
		x.pruned.WithLabelValues(k)
	}
	for _, r := range []string{"ok", "error"} {
		x.pollRuns.WithLabelValues(r)
	}
	for _, k := range []string{"synced", "expiring", "jobs", "pruned"} {
		x.pollItems.WithLabelValues(k)
	}
	x.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		x.klarnaRequests, x.klarnaDuration,
		x.httpRequests, x.httpDuration,
		x.pollRuns, x.pollDuration, x.pollItems, x.pruned,
		x.commitDuration, x.commitCalls, x.commitWrites, x.writerBusy,
	)
	x.state = &stateCollector{version: version, up: &x.klarnaUp}
	x.Registry.MustRegister(x.state)
	return x
}

// Watch makes scrapes read s: the store's counts, the flows' counters and
// the poller's state. A later call replaces s.
func (x *Metrics) Watch(s State) { x.state.s.Store(&s) }

// Handler serves the registry in Prometheus' exposition formats. A collector
// that fails leaves its metrics out of the answer; the rest is still served.
// Scrapes are not capped in flight: the metrics listener is the operator's
// (loopback by default), and a cap would answer a busy scrape 503, which
// alerting reads as hppd being down.
func (x *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(x.Registry, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      x.Registry,
		Timeout:       10 * time.Second,
	})
}

// ObserveKlarna records one Klarna call attempt (for a single account). An
// attempt with an HTTP answer counts under its status code, one without under
// "error"; Klarna is up when the last attempt got an answer that was neither
// a 5xx nor a 429.
func (x *Metrics) ObserveKlarna(op string, status int, d time.Duration, err error) {
	x.ObserveKlarnaAccount(hpp.DefaultAccount, op, status, d, err)
}

// ObserveKlarnaAccount is ObserveKlarna for the named Klarna account
// (the daemon's Klarna hook).
func (x *Metrics) ObserveKlarnaAccount(account, op string, status int, d time.Duration, _ error) {
	label := "error"
	if status > 0 {
		label = strconv.Itoa(status)
	}
	x.klarnaRequests.WithLabelValues(account, op, label).Inc()
	x.klarnaDuration.WithLabelValues(account, op).Observe(d.Seconds())
	up := int32(0)
	if status > 0 && status < 500 && status != http.StatusTooManyRequests {
		up = 1
	}
	v, _ := x.klarnaUp.LoadOrStore(account, new(atomic.Int32))
	v.(*atomic.Int32).Store(up)
}

// ObserveHTTP records one answered HTTP request .
func (x *Metrics) ObserveHTTP(route string, status int, d time.Duration) {
	x.httpRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	x.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// ObservePoll records one poller run .
func (x *Metrics) ObservePoll(r poller.Result) {
	result := "ok"
	if r.Err != nil {
		result = "error"
	}
	x.pollRuns.WithLabelValues(result).Inc()
	x.pollDuration.Observe(r.Duration.Seconds())
	x.pollItems.WithLabelValues("synced").Add(float64(max(r.Synced, 0)))
	x.pollItems.WithLabelValues("expiring").Add(float64(max(r.Expiring, 0)))
	x.pollItems.WithLabelValues("jobs").Add(float64(max(r.Jobs, 0)))
	x.pollItems.WithLabelValues("pruned").Add(float64(max(r.Pruned, 0)))
	p := r.Retention
	for i, n := range []int{p.Sessions, p.Charges, p.Tokens, p.Idempotency, p.Events} {
		x.pruned.WithLabelValues(prunedRecords[i]).Add(float64(max(n, 0)))
	}
}

// ObserveCommit records one committed write transaction of the data file:
// the calls it carried, the time spent running them (work) and committing,
// and the pages written.
func (x *Metrics) ObserveCommit(calls int, work, commit time.Duration, writes int64) {
	x.commitDuration.Observe(commit.Seconds())
	x.commitCalls.Add(float64(max(calls, 0)))
	x.commitWrites.Add(float64(max(writes, 0)))
	x.writerBusy.Add((work + commit).Seconds())
}

// prunedRecords are the record labels of hppd_pruned_records_total, in the
// order ObservePoll adds them.
var prunedRecords = []string{"session", "charge", "token", "idempotency_key", "callback_event"}
