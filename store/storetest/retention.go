package storetest

import (
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Pruner is an implementation's retention walk (store.PruneConfig).
type Pruner interface {
	Run(now time.Time) (store.PruneResult, error)
}

// PruneAll runs p until a run deletes nothing and returns the sum.
func PruneAll(t *testing.T, p Pruner, now time.Time) store.PruneResult {
	t.Helper()
	var total store.PruneResult
	for i := 0; ; i++ {
		r, err := p.Run(now)
		if err != nil {
			t.Fatalf("prune: %v", err)
		}
		total.Add(r)
		if r.Total() == 0 {
			return total
		}
		if i > 1000 {
			t.Fatal("pruning does not end")
		}
	}
}

// Retention checks what a pruner of db (empty) made by newPruner deletes, so
// every implementation drops the same records: final sessions and charges
// last updated before the retention that no job refers to and whose linked
// charge or session is final too; the token view of a deleted charge that
// was the token's last; idempotency records past their TTL; callback marks
// past Events. Everything else stays, with its lookups, listings and
// counts.
func Retention(t *testing.T, db store.Store, newPruner func(store.PruneConfig) Pruner) {
	const day = 24 * time.Hour
	old, now := t0, t0.Add(200*day)
	recent := now.Add(-10 * day)
	final := func(id string, status core.SessionStatus, updated time.Time) *core.Session {
		s := session(id, "shop", old)
		s.Status, s.UpdatedAt, s.CheckAt = status, updated, time.Time{}
		return s
	}
	sessions := []*core.Session{
		final("ses_old_placed", core.SessionOrderPlaced, old.Add(time.Hour)),
		final("ses_old_cancelled", core.SessionCancelled, old.Add(time.Minute)),
		final("ses_old_due", core.SessionExpired, old.Add(47*time.Hour)),
		final("ses_old_event", core.SessionOrderPlaced, old.Add(time.Hour)), // undelivered storefront event
		final("ses_old_sync", core.SessionFailed, old.Add(time.Hour)),       // a job derived from its id
		final("ses_old_touched", core.SessionOrderPlaced, recent),           // old, but updated lately
		final("ses_fallback", core.SessionCancelled, old.Add(time.Hour)),    // its charge waits on it
		session("ses_old_pending", "shop", old),                             // not final
	}
	sessions[2].CheckAt = old.Add(48 * time.Hour) // a due entry left on a final session
	sessions[6].ChargeID = "chg_waiting"
	recentSession := session("ses_recent", "shop", recent)
	recentSession.Status, recentSession.CheckAt = core.SessionOrderPlaced, time.Time{}
	sessions = append(sessions, recentSession)
	charge := func(id string, status core.ChargeStatus, created, updated time.Time) *core.Charge {
		return &core.Charge{ID: id, Storefront: "shop", CustomerToken: "tok-" + id, Status: status,
			Purchase:  core.Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 100},
			CreatedAt: created, UpdatedAt: updated}
	}
	charges := []*core.Charge{
		charge("chg_old_charged", core.ChargeCharged, old, old.Add(time.Second)),
		charge("chg_old_failed", core.ChargeFailed, old, old.Add(time.Hour)),
		charge("chg_old_retry", core.ChargeFailed, old, old.Add(time.Hour)),
		charge("chg_old_shared", core.ChargeCharged, old, old.Add(time.Hour)),
		charge("chg_recent", core.ChargeCharged, recent, recent),
		charge("chg_waiting", core.ChargeNeedsCustomer, old, old),
		charge("chg_old_fallback", core.ChargeCharged, old, old.Add(time.Hour)), // its session is not final
	}
	charges[3].CustomerToken = "tok-chg_recent" // deleted, but its token is still in use
	charges[6].SessionID = "ses_old_pending"
	update(t, db, func(tx store.Tx) error {
		for _, s := range sessions {
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		for _, c := range charges {
			if err := tx.PutCharge(c); err != nil {
				return err
			}
			if err := tx.PutToken(&core.TokenInfo{Storefront: "shop", CustomerToken: c.CustomerToken, LastChargeID: c.ID, LastChargeAt: c.CreatedAt}); err != nil {
				return err
			}
		}
		for _, j := range []*core.Job{
			{ID: "deliver_event/msg_1", Kind: core.JobDeliverEvent, SessionID: "ses_old_event", Storefront: "shop", DueAt: now},
			{ID: core.SyncJobID("ses_old_sync"), Kind: core.JobSyncSession, SessionID: "ses_old_sync", DueAt: now},
			{ID: core.RetryChargeJobID("chg_old_retry", 1), Kind: core.JobRetryCharge, ChargeID: "chg_old_retry", DueAt: now},
		} {
			if _, err := tx.AddJob(j); err != nil {
				return err
			}
		}
		// Idempotency records: one past the TTL, one inside it.
		if err := tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop", Key: "old-key", Done: true, Status: 201, CreatedAt: now.Add(-25 * time.Hour)}); err != nil {
			return err
		}
		if err := tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop", Key: "new-key", Done: true, Status: 201, CreatedAt: now.Add(-23 * time.Hour)}); err != nil {
			return err
		}
		// Callback marks: one past Klarna's retry window, one inside it.
		if err := tx.MarkEvent("hpp-1", "ev-old", now.Add(-73*time.Hour)); err != nil {
			return err
		}
		return tx.MarkEvent("hpp-1", "ev-new", now.Add(-71*time.Hour))
	})

	p := newPruner(store.PruneConfig{Retention: 180 * day, IdempotencyTTL: 24 * time.Hour})
	got := PruneAll(t, p, now)
	want := store.PruneResult{Sessions: 3, Charges: 3, Tokens: 2, Idempotency: 1, Events: 1}
	got.Txs = 0
	if got != want {
		t.Fatalf("pruned %+v, want %+v", got, want)
	}

	gone := map[string]bool{"ses_old_placed": true, "ses_old_cancelled": true, "ses_old_due": true, "chg_old_charged": true, "chg_old_failed": true, "chg_old_shared": true}
	view(t, db, func(tx store.Tx) error {
		for _, s := range sessions {
			_, err := tx.Session(s.ID)
			if gone[s.ID] != core.IsNotFound(err) {
				t.Errorf("session %s: deleted %v, want %v (err %v)", s.ID, core.IsNotFound(err), gone[s.ID], err)
			}
			_, errHPP := tx.SessionIDByHPP(s.HPPSessionID)
			_, errKP := tx.SessionIDByKP(s.KPSessionID)
			if gone[s.ID] != core.IsNotFound(errHPP) || gone[s.ID] != core.IsNotFound(errKP) {
				t.Errorf("session %s: HPP/KP lookups: %v, %v", s.ID, errHPP, errKP)
			}
		}
		for _, c := range charges {
			_, err := tx.Charge(c.ID)
			if gone[c.ID] != core.IsNotFound(err) {
				t.Errorf("charge %s: deleted %v, want %v (err %v)", c.ID, core.IsNotFound(err), gone[c.ID], err)
			}
		}
		for tok, kept := range map[string]bool{"tok-chg_old_charged": false, "tok-chg_old_failed": false, "tok-chg_recent": true,
			"tok-chg_old_retry": true, "tok-chg_waiting": true, "tok-chg_old_fallback": true} {
			if _, err := tx.Token("shop", tok); core.IsNotFound(err) == kept {
				t.Errorf("token %s: kept %v, want %v", tok, !core.IsNotFound(err), kept)
			}
		}
		due, err := tx.SessionsDue(now, 0)
		if err != nil || len(due) != 1 || due[0] != "ses_old_pending" {
			t.Errorf("due sessions %v, %v", due, err)
		}
		list, _, err := tx.ListSessions(core.ListQuery{Storefront: "shop", Limit: 100})
		if err != nil || len(list) != len(sessions)-3 {
			t.Errorf("listed %d sessions, want %d (%v)", len(list), len(sessions)-3, err)
		}
		cl, _, err := tx.ListCharges(core.ListQuery{Storefront: "shop", Limit: 100})
		if err != nil || len(cl) != len(charges)-3 {
			t.Errorf("listed %d charges, want %d (%v)", len(cl), len(charges)-3, err)
		}
		ss, cs, _, err := tx.Counts()
		if err != nil || ss[core.SessionOrderPlaced] != 3 || ss[core.SessionCancelled] != 1 || ss[core.SessionExpired] != 0 || cs[core.ChargeCharged] != 2 || cs[core.ChargeFailed] != 1 {
			t.Errorf("counts %v %v %v", ss, cs, err)
		}
		if _, err := tx.Idempotency("shop", "old-key"); !core.IsNotFound(err) {
			t.Errorf("idempotency record past its TTL: %v", err)
		}
		if _, err := tx.Idempotency("shop", "new-key"); err != nil {
			t.Errorf("idempotency record inside its TTL: %v", err)
		}
		for ev, seen := range map[string]bool{"ev-old": false, "ev-new": true} {
			if ok, err := tx.SeenEvent("hpp-1", ev); ok != seen || err != nil {
				t.Errorf("event %s seen %v, want %v (%v)", ev, ok, seen, err)
			}
		}
		return nil
	})
	// Once the job is delivered, its session goes too.
	update(t, db, func(tx store.Tx) error { return tx.DeleteJob("deliver_event/msg_1") })
	if r := PruneAll(t, p, now); r.Sessions != 1 || r.Total() != 1 {
		t.Fatalf("after the delivery: %+v", r)
	}
}
