package hpp

import (
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// ScheduleDue finds the sessions whose CheckAt has come (through the store's
// time index, so the cost follows the number due, not the number stored) and
// writes for each the job it needs: a re-read, or, for a session still pending
// near its expiry, the disable that gives it up. At most limit sessions are
// handled; it returns how many re-reads and how many expiries it scheduled.
func (s *Service) ScheduleDue(limit int) (synced, expiring int, err error) {
	now := s.now()
	var ids []string
	if err := s.db.View(func(tx *store.Tx) error {
		var err error
		ids, err = tx.SessionsDue(now, limit)
		return err
	}); err != nil {
		return 0, 0, err
	}
	const chunk = 500
	for len(ids) > 0 {
		n := min(chunk, len(ids))
		part := ids[:n]
		ids = ids[n:]
		err := s.db.Update(func(tx *store.Tx) error {
			for _, id := range part {
				cur, err := tx.Session(id)
				if core.IsNotFound(err) {
					continue
				}
				if err != nil {
					return err
				}
				var jobs []core.Job
				switch {
				case cur.FraudReviewPending():
					jobs = []core.Job{{ID: core.SyncJobID(id), Kind: core.JobSyncSession, SessionID: id, DueAt: now, CreatedAt: now, Source: core.SourcePoller}}
					cur.CheckAt = now.Add(s.fraudRecheck())
					synced++
				case cur.Status != core.SessionPending:
					cur.CheckAt = time.Time{}
				case cur.ExpiryDue(now, s.cfg.Policy):
					jobs = cur.RequestDisable(core.DisableExpire, core.SourcePoller, now)
					cur.CheckAt = now.Add(s.cfg.Policy.StaleAfter)
					if len(jobs) > 0 {
						expiring++
					}
				default:
					jobs = []core.Job{{ID: core.SyncJobID(id), Kind: core.JobSyncSession, SessionID: id, DueAt: now, CreatedAt: now, Source: core.SourcePoller}}
					cur.CheckAt = now.Add(s.cfg.Policy.StaleAfter)
					synced++
				}
				for i := range jobs {
					if _, err := tx.AddJob(&jobs[i]); err != nil {
						return err
					}
				}
				if err := tx.PutSession(cur); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return synced, expiring, err
		}
	}
	return synced, expiring, nil
}
