package storetest

import (
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// PrepareCallback is a status callback's work before its transaction as the
// flows do it: the session is read in a View (to check the secret) and, when
// the store has versions (store.SessionVersions) and the observation only
// moves the session's Klarna status, history and next check (no jobs, no new
// status), the new session is computed and its write prepared there, off the
// store's writer. It returns nil when nothing was prepared.
func PrepareCallback(db store.Store, sessionID string, obs core.Observation, now time.Time) (store.PreparedSession, error) {
	var cur *core.Session
	var v store.SessionVersion
	if err := db.View(func(tx store.Tx) error {
		var err error
		cur, v, err = store.ReadSessionVersion(tx, sessionID)
		return err
	}); err != nil || v == nil {
		return nil, err
	}
	before := cur.Status
	changed, jobs := cur.Observe(obs, now, core.DefaultPolicy)
	if !changed || len(jobs) > 0 || cur.Status != before {
		return nil, nil
	}
	return v.Prepare(cur)
}

// ApplyCallback is a status callback's transaction as the flows run it: the
// event's de-duplication mark, the session's observation and the jobs it
// adds, in tx. The backends' callback benchmarks run it, so they measure the
// same work. dup reports an event seen before (nothing written).
func ApplyCallback(tx store.Tx, sessionID, hppID, event string, obs core.Observation, now time.Time) (dup bool, err error) {
	return ApplyPreparedCallback(tx, sessionID, hppID, event, obs, now, nil)
}

// ApplyPreparedCallback is ApplyCallback with the write PrepareCallback
// prepared: written as it is when the session did not change since it was
// read, and the observation applied to the session read in tx otherwise.
func ApplyPreparedCallback(tx store.Tx, sessionID, hppID, event string, obs core.Observation, now time.Time, prep store.PreparedSession) (dup bool, err error) {
	seen, err := tx.SeenEvent(hppID, event)
	if err != nil || seen {
		return seen, err
	}
	if err := tx.MarkEvent(hppID, event, now); err != nil {
		return false, err
	}
	if ok, err := store.PutPrepared(tx, prep); err != nil || ok {
		return false, err
	}
	cur, err := tx.Session(sessionID)
	if err != nil {
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
