package metrics

import (
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/poller"
	"github.com/hppd/hppd/store"
)

// Descriptions of the metrics read at scrape time.
var (
	descSessions = prometheus.NewDesc("hppd_sessions",
		"Purchase sessions by hppd status.", []string{"status"}, nil)
	descCharges = prometheus.NewDesc("hppd_charges",
		"Token charges by hppd status.", []string{"status"}, nil)
	descJobsWaiting = prometheus.NewDesc("hppd_jobs_waiting",
		"Jobs in the durable outbox by kind (due or backing off after a failure).", []string{"kind"}, nil)
	descOldest = prometheus.NewDesc("hppd_oldest_unplaced_authorization_seconds",
		"Age of the oldest authorization whose order is not placed yet (0 when there is none). Klarna's authorization tokens expire after 60 minutes.", nil, nil)
	descStoreUp = prometheus.NewDesc("hppd_store_up",
		"1 when the scrape could read the store, 0 when it could not (the store's series are then left out).", nil, nil)

	descCallbacks = prometheus.NewDesc("hppd_callbacks_total",
		"Klarna status_update callbacks by result: accepted (new event stored), duplicate (seen before, or session already final), resync (right secret but an unreadable body or an unknown status: acknowledged, session re-read) or rejected (unknown session, wrong secret or HPP id, body over the limit).", []string{"result"}, nil)
	descOrdersPlaced = prometheus.NewDesc("hppd_orders_placed_total",
		"Klarna Payments orders placed by hppd.", nil, nil)
	descOrdersFailed = prometheus.NewDesc("hppd_orders_failed_total",
		"Order placements Klarna refused definitively (the session failed).", nil, nil)
	descOrdersIDUnknown = prometheus.NewDesc("hppd_orders_id_unknown_total",
		"Orders recorded as placed whose Klarna order id hppd could not learn (order_id_unknown: a replay after a lost answer was refused as already done).", nil, nil)
	descUnusable = prometheus.NewDesc("hppd_klarna_unusable_answers_total",
		"2xx order answers hppd could not use (not JSON, no order_id), by Klarna operation: the outcome was treated as unknown.", []string{"operation"}, nil)
	descFallbacks = prometheus.NewDesc("hppd_fallbacks_started_total",
		"Fallback purchase flows (KP + HPP session) started after a token charge failed.", nil, nil)
	descRecovered = prometheus.NewDesc("hppd_tokens_recovered_total",
		"Token charges recovered by a completed fallback purchase.", nil, nil)
	descJobsFailed = prometheus.NewDesc("hppd_jobs_failed_total",
		"Job attempts that failed and were rescheduled with backoff.", nil, nil)
	descChargeOutcomes = prometheus.NewDesc("hppd_charges_outcomes_total",
		"Token charge outcomes by the status they led to.", []string{"outcome"}, nil)

	descPollLast = prometheus.NewDesc("hppd_poll_last_run_timestamp_seconds",
		"Unix time at which the last poller run ended (absent before the first run).", nil, nil)
	descPollLag = prometheus.NewDesc("hppd_poll_lag_seconds",
		"How late the last poller run started against its schedule (absent before the first run).", nil, nil)
	descPollScheduled = prometheus.NewDesc("hppd_poll_scheduled",
		"1 while the poller's schedule is running.", nil, nil)

	descKlarnaUp = prometheus.NewDesc("hppd_klarna_up",
		"1 when the account's last Klarna call attempt got an HTTP answer that was neither a 5xx nor a 429, else 0 (absent before the account's first call).", []string{"account"}, nil)
	descRereadBacklog = prometheus.NewDesc("hppd_reread_backlog",
		"Routine re-reads of sessions that are due but not done: sessions whose next check has come and reread_session jobs due.", nil, nil)
	descRereadOldest = prometheus.NewDesc("hppd_reread_backlog_oldest_seconds",
		"How long the oldest due routine re-read has been due (0 when none is).", nil, nil)
	descRereadMaxGap = prometheus.NewDesc("hppd_reread_schedule_max_gap_seconds",
		"The longest gap of the re-read schedule (HPPD_STALE_AFTER): a due re-read older than a few of these means the re-reads fall behind.", nil, nil)
	descBuildInfo = prometheus.NewDesc("hppd_build_info",
		"Always 1; the labels name the running build.", []string{"version", "goversion"}, nil)
)

// State is what a scrape reads of a running hppd. Each part may be nil
// (not open yet): its series are then left out.
type State struct {
	// Store is read in one read transaction per scrape.
	Store Viewer
	// Stats are the flows' counters; MaxGap is the longest gap of the
	// re-read schedule (HPPD_STALE_AFTER), reported with them.
	Stats  *hpp.Stats
	MaxGap time.Duration
	Poller PollState
	// Now is the clock the backlog's and authorizations' ages are taken
	// on (nil: the wall clock).
	Now func() time.Time
}

// Viewer runs a read transaction on the store.
type Viewer interface {
	View(fn func(tx store.Tx) error) error
}

// PollState is what the metrics read of the poller.
type PollState interface {
	Scheduled() bool
	Last() (poller.Result, bool)
}

// stateCollector reads hppd's state when Prometheus scrapes, through the
// State last given to Watch.
type stateCollector struct {
	version string
	up      *sync.Map // account → *atomic.Int32
	s       atomic.Pointer[State]
}

var stateDescs = []*prometheus.Desc{
	descSessions, descCharges, descJobsWaiting, descOldest, descStoreUp,
	descCallbacks, descOrdersPlaced, descOrdersFailed, descOrdersIDUnknown, descUnusable, descFallbacks, descRecovered, descJobsFailed, descChargeOutcomes,
	descPollLast, descPollLag, descPollScheduled,
	descKlarnaUp, descBuildInfo,
	descRereadBacklog, descRereadOldest, descRereadMaxGap,
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range stateDescs {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, c.version, runtime.Version())
	c.up.Range(func(account, v any) bool {
		ch <- prometheus.MustNewConstMetric(descKlarnaUp, prometheus.GaugeValue, float64(v.(*atomic.Int32).Load()), account.(string))
		return true
	})
	s := c.s.Load()
	if s == nil {
		return
	}
	if s.Store != nil {
		collectStore(ch, s.Store, now(s))
	}
	if s.Stats != nil {
		collectStats(ch, s.Stats)
		ch <- prometheus.MustNewConstMetric(descRereadMaxGap, prometheus.GaugeValue, s.MaxGap.Seconds())
	}
	if p := s.Poller; p != nil {
		ch <- prometheus.MustNewConstMetric(descPollScheduled, prometheus.GaugeValue, boolFloat(p.Scheduled()))
		if r, ok := p.Last(); ok {
			ch <- prometheus.MustNewConstMetric(descPollLast, prometheus.GaugeValue, unixSeconds(r.Started.Add(r.Duration)))
			ch <- prometheus.MustNewConstMetric(descPollLag, prometheus.GaugeValue, r.Lag.Seconds())
		}
	}
}

// collectStore reads the counts and the oldest unplaced authorization in one
// read transaction, so they are consistent with each other.
func collectStore(ch chan<- prometheus.Metric, db Viewer, now time.Time) {
	var (
		sessions map[core.SessionStatus]int
		charges  map[core.ChargeStatus]int
		jobs     map[core.JobKind]int
		oldest   time.Time
		found    bool

		backlog       int
		backlogOldest time.Time
	)
	err := db.View(func(tx store.Tx) error {
		var err error
		if sessions, charges, jobs, err = tx.Counts(); err != nil {
			return err
		}
		if oldest, found, err = tx.OldestAuthorized(); err != nil {
			return err
		}
		backlog, backlogOldest, err = tx.RereadBacklog(now)
		return err
	})
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descStoreUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descStoreUp, prometheus.GaugeValue, 1)
	for _, k := range sortedKeys(sessions) {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(sessions[k]), string(k))
	}
	for _, k := range sortedKeys(charges) {
		ch <- prometheus.MustNewConstMetric(descCharges, prometheus.GaugeValue, float64(charges[k]), string(k))
	}
	for _, k := range sortedKeys(jobs) {
		ch <- prometheus.MustNewConstMetric(descJobsWaiting, prometheus.GaugeValue, float64(jobs[k]), string(k))
	}
	age := 0.0
	if found {
		age = max(now.Sub(oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age)
	backlogAge := 0.0
	if backlog > 0 {
		backlogAge = max(now.Sub(backlogOldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(descRereadBacklog, prometheus.GaugeValue, float64(backlog))
	ch <- prometheus.MustNewConstMetric(descRereadOldest, prometheus.GaugeValue, backlogAge)
}

func collectStats(ch chan<- prometheus.Metric, st *hpp.Stats) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descCallbacks, st.CallbacksAccepted.Load(), "accepted")
	counter(descCallbacks, st.CallbacksDup.Load(), "duplicate")
	counter(descCallbacks, st.CallbacksRejected.Load(), "rejected")
	counter(descCallbacks, st.CallbacksResync.Load(), "resync")
	counter(descOrdersPlaced, st.OrdersPlaced.Load())
	counter(descOrdersFailed, st.OrdersFailed.Load())
	counter(descOrdersIDUnknown, st.OrdersIDUnknown.Load())
	counter(descUnusable, st.UnusablePlaceOrder.Load(), klarna.OpPlaceOrder)
	counter(descUnusable, st.UnusableTokenOrder.Load(), klarna.OpCreateTokenOrder)
	counter(descFallbacks, st.FallbacksStarted.Load())
	counter(descRecovered, st.TokensRecovered.Load())
	counter(descJobsFailed, st.JobsFailed.Load())

	// Every known outcome is reported, zero or not, so rate() sees the
	// first one; an outcome the flows add later is reported too.
	outcomes := make(map[core.ChargeStatus]int64, len(core.ChargeStatuses))
	for _, s := range core.ChargeStatuses {
		outcomes[s] = 0
	}
	st.ChargeOutcomes.Range(func(k, v any) bool {
		s, ok1 := k.(core.ChargeStatus)
		n, ok2 := v.(*atomic.Int64)
		if ok1 && ok2 {
			outcomes[s] = n.Load()
		}
		return true
	})
	for _, s := range sortedKeys(outcomes) {
		counter(descChargeOutcomes, outcomes[s], string(s))
	}
}

func now(s *State) time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
