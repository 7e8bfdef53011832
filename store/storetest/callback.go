package storetest

import (
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// ApplyCallback is a status callback's transaction as the flows run it: the
// event's de-duplication mark, the session's observation and the jobs it
// adds, in tx. The backends' callback benchmarks run it, so they measure the
// same work. dup reports an event seen before (nothing written).
func ApplyCallback(tx store.Tx, sessionID, hppID, event string, obs core.Observation, now time.Time) (dup bool, err error) {
	seen, err := tx.SeenEvent(hppID, event)
	if err != nil || seen {
		return seen, err
	}
	cur, err := tx.Session(sessionID)
	if err != nil {
		return false, err
	}
	if err := tx.MarkEvent(hppID, event, now); err != nil {
		return false, err
	}
	changed, jobs := cur.Observe(obs, now, core.DefaultPolicy)
	for i := range jobs {
		if _, err := tx.AddJob(&jobs[i]); err != nil {
			return false, err
		}
	}
	if changed {
		return false, store.PutSessionKeepDue(tx, cur)
	}
	return false, nil
}
