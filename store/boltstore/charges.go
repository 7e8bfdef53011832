package boltstore

import (
	"fmt"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

func chargeKeys(c *core.Charge) recordKeys {
	return recordKeys{storefront: c.Storefront, created: nanos(c.CreatedAt), status: string(c.Status)}
}

func decodeChargeKeys(_ string, raw []byte) (recordKeys, error) {
	var c core.Charge
	if err := decodeValue(raw, &c); err != nil {
		return recordKeys{}, err
	}
	return chargeKeys(&c), nil
}

// Charge returns the charge with id, or core.ErrNotFound.
func (tx *Tx) Charge(id string) (*core.Charge, error) {
	b, err := tx.bucket(bucketCharges)
	if err != nil {
		return nil, err
	}
	raw := b.Get([]byte(id))
	if raw == nil {
		return nil, core.ErrNotFound
	}
	if c, ok := tx.cache.charges.get(id, raw); ok {
		return c, nil
	}
	var c core.Charge
	if err := decodeValue(raw, &c); err != nil {
		return nil, fmt.Errorf("store: charge %s: %w", id, err)
	}
	tx.cache.charges.put(id, raw, &c)
	return &c, nil
}

// storedChargeKeys decodes the keys of a stored charge, from the cache when
// it holds exactly these bytes.
func (tx *Tx) storedChargeKeys(id string, raw []byte) (recordKeys, error) {
	if k, ok := tx.cache.charges.keys(id, raw); ok {
		return k, nil
	}
	return decodeChargeKeys(id, raw)
}

// PutCharge inserts or replaces c with its charges_by_storefront entry and
// status counters.
func (tx *Tx) PutCharge(c *core.Charge) error {
	if err := store.CheckCharge(c); err != nil {
		return err
	}
	b, err := tx.bucket(bucketCharges)
	if err != nil {
		return err
	}
	old, had, err := storedKeys(b, c.ID, tx.storedChargeKeys)
	if err != nil {
		return fmt.Errorf("store: put charge %s: %w", c.ID, err)
	}
	val, err := encodeValue(c, fast)
	if err != nil {
		return fmt.Errorf("store: put charge %s: %w", c.ID, err)
	}
	if err := tx.write(); err != nil {
		return err
	}
	id := []byte(c.ID)
	if err := b.Put(id, val); err != nil {
		return fmt.Errorf("store: put charge %s: %w", c.ID, err)
	}
	tx.cache.charges.put(c.ID, val, c) // read back within the same flow (recordCache)
	nk := chargeKeys(c)
	if err := tx.indexRecord(bucketChargesByStorefront, "charge/", id, old, nk, had); err != nil {
		return fmt.Errorf("store: put charge %s: %w", c.ID, err)
	}
	return nil
}

// ListCharges returns a storefront's charges newest first, like ListSessions.
func (tx *Tx) ListCharges(q core.ListQuery) ([]*core.Charge, string, error) {
	if q.Status != "" && !core.ChargeStatus(q.Status).Valid() {
		return nil, "", core.Invalid("status", "%q is not a charge status", q.Status)
	}
	ids, next, err := tx.list(bucketChargesByStorefront, q)
	if err != nil {
		return nil, "", err
	}
	out := make([]*core.Charge, 0, len(ids))
	for _, id := range ids {
		c, err := tx.Charge(id)
		if err != nil {
			return nil, "", fmt.Errorf("store: list charges: %s: %w", id, err)
		}
		out = append(out, c)
	}
	return out, next, nil
}

// AllCharges calls fn with every charge, in id order, stopping at fn's first
// error. fn must not write charges.
func (tx *Tx) AllCharges(fn func(*core.Charge) error) error {
	return forEachValue(tx, bucketCharges, "charge", fn)
}
