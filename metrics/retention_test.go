package metrics_test

import (
	"testing"
	"time"

	"github.com/hppd/hppd/metrics"
	"github.com/hppd/hppd/poller"
	"github.com/hppd/hppd/store"
)

// Every run's retention counts add up in hppd_pruned_records_total, by record.
func TestObservePollPruned(t *testing.T) {
	x := metrics.New("test")
	f := gather(t, x)
	f.want(t, 0, "hppd_pruned_records_total", "record", "session")
	for i := 0; i < 2; i++ {
		x.ObservePoll(poller.Result{Started: time.Now(), Pruned: 4,
			Retention: store.PruneResult{Sessions: 5, Charges: 3, Tokens: 1, Idempotency: 7, Events: 4, Txs: 2}})
	}
	f = gather(t, x)
	f.want(t, 10, "hppd_pruned_records_total", "record", "session")
	f.want(t, 6, "hppd_pruned_records_total", "record", "charge")
	f.want(t, 2, "hppd_pruned_records_total", "record", "token")
	f.want(t, 14, "hppd_pruned_records_total", "record", "idempotency_key")
	f.want(t, 8, "hppd_pruned_records_total", "record", "callback_event")
	f.want(t, 8, "hppd_poll_items_total", "kind", "pruned")
}
