package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Pruner applies retention (store.PruneConfig) in bounded steps: each
// statement deletes at most PerTx rows found by an index, at most Txs
// statements of each kind per run. Final sessions and charges go when last
// updated before the retention cutoff and no job refers to them; idempotency
// records when created before the TTL cutoff; callback marks after Events.
// Customer token views are kept (boltstore drops a token's view with its last
// charge; here they stay until that is built). Several replicas may run one
// at once: a row is deleted once, by whichever statement gets it.
type Pruner struct {
	db  *DB
	cfg store.PruneConfig
}

// NewPruner returns a pruner of db with cfg's defaults filled in.
func (db *DB) NewPruner(cfg store.PruneConfig) *Pruner {
	if cfg.Events <= 0 {
		cfg.Events = 72 * time.Hour
	}
	if cfg.PerTx <= 0 {
		cfg.PerTx = 250
	}
	if cfg.Txs <= 0 {
		cfg.Txs = 8
	}
	return &Pruner{db: db, cfg: cfg}
}

// The statuses retention may delete: final sessions, paid or failed charges.
var (
	finalSessions = func() (out []string) {
		for _, s := range core.SessionStatuses {
			if s.Final() {
				out = append(out, string(s))
			}
		}
		return out
	}()
	finalCharges = func() (out []string) {
		for _, s := range core.ChargeStatuses {
			if s.Paid() || s == core.ChargeFailed {
				out = append(out, string(s))
			}
		}
		return out
	}()
)

// Run prunes what is due at now.
func (p *Pruner) Run(now time.Time) (store.PruneResult, error) {
	var r store.PruneResult
	steps := []struct {
		count *int
		sql   string
		args  []any
	}{
		{&r.Events, `DELETE FROM event_ids WHERE hash IN (
			SELECT hash FROM event_ids WHERE marked_at < $1 ORDER BY marked_at LIMIT $2)`,
			[]any{ns(now.Add(-p.cfg.Events))}},
	}
	if p.cfg.IdempotencyTTL > 0 {
		steps = append(steps, struct {
			count *int
			sql   string
			args  []any
		}{&r.Idempotency, `DELETE FROM idempotency WHERE (storefront, key) IN (
			SELECT storefront, key FROM idempotency WHERE created_at < $1 ORDER BY created_at LIMIT $2)`,
			[]any{ns(now.Add(-p.cfg.IdempotencyTTL))}})
	}
	if p.cfg.Retention > 0 {
		cutoff := ns(now.Add(-p.cfg.Retention))
		steps = append(steps, struct {
			count *int
			sql   string
			args  []any
		}{&r.Sessions, `DELETE FROM sessions WHERE id IN (
			SELECT s.id FROM sessions s WHERE s.status = ANY($3)
			AND (CASE WHEN s.updated_at = 0 THEN s.created_at ELSE s.updated_at END) < $1
			AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.session_id = s.id) LIMIT $2)`,
			[]any{cutoff, finalSessions}}, struct {
			count *int
			sql   string
			args  []any
		}{&r.Charges, `DELETE FROM charges WHERE id IN (
			SELECT c.id FROM charges c WHERE c.status = ANY($3)
			AND (CASE WHEN c.updated_at = 0 THEN c.created_at ELSE c.updated_at END) < $1
			AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.charge_id = c.id) LIMIT $2)`,
			[]any{cutoff, finalCharges}})
	}
	ctx := context.Background()
	for _, st := range steps {
		for range p.cfg.Txs {
			args := append([]any{st.args[0], p.cfg.PerTx}, st.args[1:]...)
			tag, err := p.db.pool.Exec(ctx, st.sql, args...)
			if err != nil {
				return r, fmt.Errorf("store: prune: %w", err)
			}
			r.Txs++
			*st.count += int(tag.RowsAffected())
			if int(tag.RowsAffected()) < p.cfg.PerTx {
				break
			}
		}
	}
	return r, nil
}
