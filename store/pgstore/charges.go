package pgstore

import (
	"fmt"

	json "github.com/go-json-experiment/json/v1"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Charge returns the charge with id, or core.ErrNotFound.
func (tx *Tx) Charge(id string) (*core.Charge, error) {
	var body []byte
	if err := tx.lockedRow(key(lockCharge, id), `SELECT body FROM charges WHERE id = $1`, []any{id}, &body); err != nil {
		return nil, err
	}
	var c core.Charge
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("store: charge %s: %w", id, err)
	}
	return &c, nil
}

// PutCharge inserts or replaces c.
func (tx *Tx) PutCharge(c *core.Charge) error {
	if err := store.CheckCharge(c); err != nil {
		return err
	}
	body, err := encode("charge", c.ID, c)
	if err != nil {
		return err
	}
	_, err = tx.lockedExec(key(lockCharge, c.ID), `INSERT INTO charges (id, storefront, status, created_at, updated_at, body) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET storefront = $2, status = $3, created_at = $4, updated_at = $5, body = $6`,
		c.ID, c.Storefront, string(c.Status), ns(c.CreatedAt), ns(c.UpdatedAt), body)
	if err != nil {
		return fmt.Errorf("store: put charge %s: %w", c.ID, err)
	}
	return nil
}

// ListCharges returns a storefront's charges newest first, like ListSessions.
func (tx *Tx) ListCharges(q core.ListQuery) ([]*core.Charge, string, error) {
	if q.Status != "" && !core.ChargeStatus(q.Status).Valid() {
		return nil, "", core.Invalid("status", "%q is not a charge status", q.Status)
	}
	var out []*core.Charge
	next, err := tx.list("charges", q, func(body []byte) (string, error) {
		var c core.Charge
		if err := json.Unmarshal(body, &c); err != nil {
			return "", err
		}
		out = append(out, &c)
		return c.ID, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("store: list charges: %w", err)
	}
	if out == nil {
		out = []*core.Charge{}
	}
	return out, next, nil
}

// AllCharges calls fn with every charge in id order.
func (tx *Tx) AllCharges(fn func(*core.Charge) error) error {
	return tx.all("charges", func(body []byte) error {
		var c core.Charge
		if err := json.Unmarshal(body, &c); err != nil {
			return err
		}
		return fn(&c)
	})
}
