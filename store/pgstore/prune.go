package pgstore

import (
	"context"
	"fmt"
	"time"

	json "github.com/go-json-experiment/json/v1"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/jackc/pgx/v5"
)

// Pruner applies retention (store.PruneConfig) in bounded steps: each
// statement deletes at most PerTx rows found by an index, at most Txs
// statements of each kind per run. It deletes what boltstore's Pruner
// deletes:
//
//   - final sessions and charges last updated before the retention cutoff
//     that no job refers to; a session whose charge is not final, or a
//     charge whose fallback session is not final, is kept (the link is read
//     from the record's body, for the candidates only);
//   - the customer token view of a deleted charge, when that charge was
//     the token's last and the token saw no charge or recovery since the
//     cutoff: decided under the token's key lock (locks.go), in the
//     charge's deleting transaction, so a charge of the token committing
//     meanwhile keeps the view;
//   - idempotency records created before the TTL cutoff;
//   - callback marks older than Events.
//
// Several replicas may run one at once: a row is deleted once, by whichever
// statement gets it.
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
			AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.session_id = s.id)
			AND NOT EXISTS (SELECT 1 FROM charges c WHERE c.id = convert_from(s.body, 'UTF8')::json->>'charge_id'
				AND NOT c.status = ANY($4))
			LIMIT $2)`,
			[]any{cutoff, finalSessions, finalCharges}})
	}
	ctx := context.Background()
	if p.cfg.Retention > 0 {
		if err := p.charges(now.Add(-p.cfg.Retention), &r); err != nil {
			return r, err
		}
	}
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

// charges deletes final charges past cutoff, PerTx per transaction, with
// the token views they leave unused.
func (p *Pruner) charges(cutoff time.Time, r *store.PruneResult) error {
	for range p.cfg.Txs {
		var n, tokens int
		err := p.db.Update(func(stx store.Tx) error {
			tx := stx.(*Tx)
			n, tokens = 0, 0
			var deleted []*core.Charge
			err := tx.rows(`DELETE FROM charges WHERE id IN (
				SELECT c.id FROM charges c WHERE c.status = ANY($3)
				AND (CASE WHEN c.updated_at = 0 THEN c.created_at ELSE c.updated_at END) < $1
				AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.charge_id = c.id)
				AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = convert_from(c.body, 'UTF8')::json->>'session_id'
					AND NOT s.status = ANY($4))
				LIMIT $2)
				RETURNING body`, []any{ns(cutoff), p.cfg.PerTx, finalCharges, finalSessions}, func(rs pgx.Rows) error {
				var body []byte
				if err := rs.Scan(&body); err != nil {
					return err
				}
				var c core.Charge
				if err := json.Unmarshal(body, &c); err != nil {
					return err
				}
				deleted = append(deleted, &c)
				return nil
			})
			if err != nil {
				return err
			}
			n = len(deleted)
			for _, c := range deleted {
				gone, err := tx.pruneToken(c, cutoff)
				if err != nil {
					return err
				}
				if gone {
					tokens++
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: prune charges: %w", err)
		}
		r.Txs++
		r.Charges += n
		r.Tokens += tokens
		if n < p.cfg.PerTx {
			return nil
		}
	}
	return nil
}

// pruneToken deletes the token view of c's customer token when c was its
// last charge and the token saw no charge or recovery since cutoff, as
// boltstore's retention does.
func (tx *Tx) pruneToken(c *core.Charge, cutoff time.Time) (bool, error) {
	if c.CustomerToken == "" {
		return false, nil
	}
	t, err := tx.Token(c.Storefront, c.CustomerToken)
	if core.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if t.LastChargeID != c.ID || !t.LastChargeAt.Before(cutoff) || !t.RecoveredAt.Before(cutoff) {
		return false, nil
	}
	tag, err := tx.lockedExec(key(lockToken, pairName(c.Storefront, c.CustomerToken)),
		`DELETE FROM tokens WHERE storefront = $1 AND customer_token = $2`, c.Storefront, []byte(c.CustomerToken))
	if err != nil {
		return false, fmt.Errorf("store: prune token of %s: %w", c.Storefront, err)
	}
	return tag.RowsAffected() == 1, nil
}
