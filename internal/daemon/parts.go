package daemon

import (
	"net/http"
	"time"

	"github.com/hppd/hppd/admin"
	"github.com/hppd/hppd/metrics"
	"github.com/hppd/hppd/poller"
	"github.com/hppd/hppd/store/boltstore"
)

// hooks are m.Hooks with the metrics' observers called first, when Main
// has metrics. The adapters never see Main: metrics gets its observations
// here and its state in watch, admin its store and job runner in
// adminHandler.
func (m *Main) hooks() Hooks {
	h, x := m.Hooks, m.Metrics
	if x == nil {
		return h
	}
	return Hooks{
		Klarna: h.Klarna,
		KlarnaAccount: func(account, op string, status int, d time.Duration, err error) {
			x.ObserveKlarnaAccount(account, op, status, d, err)
			if h.KlarnaAccount != nil {
				h.KlarnaAccount(account, op, status, d, err)
			}
		},
		HTTP: func(route string, status int, d time.Duration) {
			x.ObserveHTTP(route, status, d)
			if h.HTTP != nil {
				h.HTTP(route, status, d)
			}
		},
		Poll: func(r poller.Result) {
			x.ObservePoll(r)
			if h.Poll != nil {
				h.Poll(r)
			}
		},
		Commit: func(c boltstore.CommitInfo) {
			x.ObserveCommit(c.Calls, c.Work, c.Commit, c.Writes)
			if h.Commit != nil {
				h.Commit(c)
			}
		},
	}
}

// watch points the metrics' scrapes at the store, the flows and the poller
// once they are open.
func (m *Main) watch() {
	if m.Metrics == nil {
		return
	}
	m.Metrics.Watch(metrics.State{
		Store: m.Store, Stats: &m.Service.Stats, MaxGap: m.Service.Config().Policy.MaxGap(),
		Poller: m.Poller, Now: m.Now,
	})
}

// adminHandler is the admin API on the daemon's store; a retried job wakes
// the job runner.
func (m *Main) adminHandler() http.Handler {
	if m.PG != nil {
		return admin.NewHandler(admin.NewLocalPG(m.PG, m.Now, m.Service.Wake), m.Logger)
	}
	return admin.NewHandler(admin.NewLocal(m.DB, m.Now, m.Service.Wake), m.Logger)
}
