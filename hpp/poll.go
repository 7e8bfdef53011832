package hpp

import (
	"fmt"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// ScheduleDue finds the sessions whose CheckAt has come (through the store's
// time index, so the cost follows the number due, not the number stored) and
// writes for each the job it needs: a re-read, or, for a session still pending
// near its expiry, the disable that gives it up. At most limit sessions are
// handled; it returns how many re-reads and how many expiries it scheduled.
//
// A routine re-read moves the session one step along the re-read schedule
// (core.Policy.Schedule). With a Config.RereadRate at most a minute of
// routine re-reads wait as jobs at a time: beyond that a due session stays
// due in the session index, so the jobs the runner walks stay few and the
// backlog shows, with its true age, in hppd_reread_backlog.
//
// The store may return sessions whose CheckAt a callback pushed back since
// their due entry was filed (store.KeepDue): they are re-filed at their
// CheckAt in the same write, without a Klarna call, and count as neither.
//
// The due sessions are found in a read transaction and each is checked again
// in the write that schedules it, so two processes scheduling at once move a
// session one step, not two. The bound on waiting re-reads is each caller's
// own count, so two callers at once may exceed it by one chunk.
func (s *Service) ScheduleDue(limit int) (synced, expiring int, err error) {
	now := s.now()
	var ids []string
	room := 0
	if err := s.db.View(func(tx store.Tx) error {
		var err error
		if ids, err = tx.SessionsDue(now, limit); err != nil {
			return err
		}
		room = len(ids)
		if q := s.rereadQueue(); q > 0 {
			_, _, jobs, err := tx.Counts()
			room = q - jobs[core.JobRereadSession]
			return err
		}
		return nil
	}); err != nil {
		return 0, 0, fmt.Errorf("find due sessions: %w", err)
	}
	chunk := 500
	if l, ok := s.db.(writesPerTxLimiter); ok {
		chunk = min(chunk, l.WritesPerTx())
	}
	for len(ids) > 0 {
		n := min(chunk, len(ids))
		part := ids[:n]
		ids = ids[n:]
		err := s.db.Update(func(tx store.Tx) error {
			for _, id := range part {
				cur, err := tx.Session(id)
				if core.IsNotFound(err) {
					continue
				}
				if err != nil {
					return err
				}
				if cur.CheckAt.IsZero() {
					continue // final since the read above
				}
				if cur.CheckAt.After(now) {
					// Not due: its due entry lagged behind a callback that
					// pushed CheckAt back (the store's index is a lower
					// bound), or another process's poller handled it since
					// the read above. Writing it unchanged files the entry
					// at its CheckAt; nothing is asked of Klarna.
					if err := tx.PutSession(cur); err != nil {
						return err
					}
					continue
				}
				var jobs []core.Job
				switch {
				case cur.FraudReviewPending():
					if room <= 0 {
						continue
					}
					room--
					jobs = []core.Job{{ID: core.RereadJobID(id), Kind: core.JobRereadSession, SessionID: id, DueAt: now, CreatedAt: now, Source: core.SourcePoller}}
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
					if room <= 0 {
						continue
					}
					room--
					jobs = []core.Job{{ID: core.RereadJobID(id), Kind: core.JobRereadSession, SessionID: id, DueAt: now, CreatedAt: now, Source: core.SourcePoller}}
					cur.RereadScheduled(now, s.cfg.Policy)
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
			return synced, expiring, fmt.Errorf("schedule %d due sessions: %w", len(part), err)
		}
	}
	return synced, expiring, nil
}

// rereadQueue bounds the routine re-read jobs waiting at a time: a minute of
// reads at this process's re-read rate (Config.RereadRate times its share,
// SetShare; at least 64); 0 (no bound) without a rate, when the workers take
// them as fast as Klarna's limits allow.
func (s *Service) rereadQueue() int {
	if r := s.rereadRate(); r > 0 {
		return max(64, int(min(r*60, 1<<20)))
	}
	return 0
}

// writesPerTxLimiter is a store whose write transactions should touch at
// most WritesPerTx records each (PostgreSQL: every record a transaction
// writes holds an advisory lock until its commit, in a lock table of fixed
// size shared by every connection).
type writesPerTxLimiter interface {
	WritesPerTx() int
}
