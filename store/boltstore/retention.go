package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"github.com/hppd/hppd/store"
	"sync"
	"time"

	"github.com/hppd/hppd/core"
)

// Retention: a Pruner deletes, in small transactions, what hppd no longer
// needs, so that the file stops growing once the oldest records are older
// than the retention:
//
//   - final sessions and charges whose last update (UpdatedAt) is before
//     now - Retention, with every index entry and counter derived from them.
//     A session or charge a job still refers to (an undelivered storefront
//     event, a retry) is kept, and so is a session whose charge is not final
//     or a charge whose fallback session is not final.
//   - a customer token view, when the charge deleted is the token's last one
//     and the token saw no charge or recovery within the retention: a token
//     in use keeps its view.
//   - storefront idempotency records created before now - IdempotencyTTL
//     (webhook already treats them as absent).
//   - callback de-duplication marks older than Events (PruneEvents).
//
// How it finds them without reading everything: sessions_by_storefront and
// charges_by_storefront sort a storefront's records by CreatedAt, and
// UpdatedAt is never before CreatedAt, so the walk of a storefront stops at
// the first record created after the cutoff and seeks to the next storefront.
// The idempotency bucket has no time index: it is swept in key order, a
// bounded number of entries per transaction, each run going on where the last
// one stopped. Every walk keeps its position in the Pruner between runs.
//
// An idempotency record does not name what its request created, so it cannot
// be deleted with the session; config makes IdempotencyTTL at most Retention,
// which means a record outlives the TTL, and so stops being replayed, before
// the session its answer names can be deleted.

// Defaults of store.PruneConfig.
const (
	DefaultPrunePerTx  = 250
	DefaultPruneScan   = 2000
	DefaultPruneTxs    = 8
	defaultPruneEvents = 72 * time.Hour
)

// Pruner runs retention in bounded steps; Run is safe for concurrent use
// (runs take turns).
type Pruner struct {
	db  *DB
	cfg store.PruneConfig

	mu sync.Mutex
	// Where each walk goes on (nil: from the start).
	sessions, charges, idem []byte
}

// NewPruner returns a Pruner of db.
func (db *DB) NewPruner(cfg store.PruneConfig) *Pruner {
	if cfg.Events <= 0 {
		cfg.Events = defaultPruneEvents
	}
	if cfg.PerTx <= 0 {
		cfg.PerTx = DefaultPrunePerTx
	}
	if cfg.ScanPerTx <= 0 {
		cfg.ScanPerTx = DefaultPruneScan
	}
	if cfg.ScanPerTx < cfg.PerTx {
		cfg.ScanPerTx = cfg.PerTx
	}
	if cfg.Txs <= 0 {
		cfg.Txs = DefaultPruneTxs
	}
	return &Pruner{db: db, cfg: cfg}
}

// pruneStep is one transaction's worth of one kind of pruning; it returns
// what it deleted and whether the kind has more to look at in this run.
type pruneStep func(now time.Time) (store.PruneResult, bool, error)

// Run does one bounded round at now: at most Txs write transactions, each
// deleting at most PerTx records of one kind, the kinds taking turns. Between
// transactions other writers (callbacks) get the file.
func (p *Pruner) Run(now time.Time) (store.PruneResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	steps := []pruneStep{p.stepEvents}
	if p.cfg.IdempotencyTTL > 0 {
		steps = append(steps, p.stepIdempotency)
	}
	if p.cfg.Retention > 0 {
		steps = append(steps, p.stepSessions, p.stepCharges)
	}
	var total store.PruneResult
	more := make([]bool, len(steps))
	for i := range more {
		more[i] = true
	}
	for txs := 0; txs < p.cfg.Txs; {
		progressed := false
		for i, step := range steps {
			if !more[i] || txs >= p.cfg.Txs {
				continue
			}
			r, m, err := step(now)
			total.Add(r)
			txs++
			if err != nil {
				return total, err
			}
			more[i] = m
			progressed = true
		}
		if !progressed {
			break
		}
	}
	return total, nil
}

func (p *Pruner) stepEvents(now time.Time) (store.PruneResult, bool, error) {
	var r store.PruneResult
	before := nanos(now.Add(-p.cfg.Events))
	due := false
	if err := p.db.view(func(tx *Tx) error {
		b, err := tx.bucket(bucketEventsByTime)
		if err != nil {
			return err
		}
		k := first(b)
		due = len(k) >= 8 && binary.BigEndian.Uint64(k) < before
		// The horizon of the marks in session records moves at most
		// once a minute: each move is a write.
		horizon, err := tx.eventsHorizon()
		due = due || horizon+uint64(time.Minute) <= before
		return err
	}); err != nil || !due {
		return r, false, err
	}
	err := p.db.update(func(tx *Tx) error {
		n, err := tx.PruneEvents(now.Add(-p.cfg.Events), p.cfg.PerTx)
		r.Events = n
		return err
	})
	if err != nil {
		return store.PruneResult{}, false, fmt.Errorf("store: prune callback events: %w", err)
	}
	if r.Events > 0 {
		r.Txs = 1
	}
	return r, r.Events >= p.cfg.PerTx, nil
}

// stepIdempotency finds expired records in a read transaction (decoding
// them costs the single writer nothing there) and deletes them in a write
// transaction that checks each one again: a new request may have replaced it.
func (p *Pruner) stepIdempotency(now time.Time) (store.PruneResult, bool, error) {
	cutoff := now.Add(-p.cfg.IdempotencyTTL)
	var (
		keys [][]byte
		next []byte
	)
	err := p.db.view(func(tx *Tx) error {
		b, err := tx.bucket(bucketIdempotency)
		if err != nil {
			return err
		}
		c := b.Cursor()
		k, v := c.First()
		if p.idem != nil {
			k, v = c.Seek(p.idem)
		}
		for scanned := 0; k != nil; k, v = c.Next() {
			if scanned >= p.cfg.ScanPerTx || len(keys) >= p.cfg.PerTx {
				next = bytes.Clone(k)
				break
			}
			scanned++
			if idempotencyExpired(v, cutoff) {
				keys = append(keys, bytes.Clone(k))
			}
		}
		return nil
	})
	if err != nil {
		return store.PruneResult{}, false, fmt.Errorf("store: prune idempotency records: %w", err)
	}
	p.idem = next
	var r store.PruneResult
	if len(keys) > 0 {
		err = p.db.update(func(tx *Tx) error {
			r.Idempotency = 0
			b, err := tx.bucket(bucketIdempotency)
			if err != nil {
				return err
			}
			for _, k := range keys {
				if !idempotencyExpired(b.Get(k), cutoff) {
					continue
				}
				if err := tx.write(); err != nil {
					return err
				}
				if err := b.Delete(k); err != nil {
					return err
				}
				r.Idempotency++
			}
			return nil
		})
		if err != nil {
			return store.PruneResult{}, false, fmt.Errorf("store: prune idempotency records: %w", err)
		}
		r.Txs = 1
	}
	return r, next != nil, nil
}

// idempotencyExpired reports whether a stored record was created before cutoff.
func idempotencyExpired(raw []byte, cutoff time.Time) bool {
	if raw == nil {
		return false
	}
	var rec core.IdempotencyRecord
	if err := decodeValue(raw, &rec); err != nil {
		return false // left for Check to report, never deleted blindly
	}
	return rec.CreatedAt.Before(cutoff)
}

func (p *Pruner) stepSessions(now time.Time) (store.PruneResult, bool, error) {
	return p.stepRecords(now, bucketSessionsByStorefront, &p.sessions, func(tx *Tx, id string, refs func() (map[string]bool, error), cutoff time.Time, r *store.PruneResult) error {
		ok, err := tx.pruneSession(id, refs, cutoff)
		if ok {
			r.Sessions++
		}
		return err
	})
}

func (p *Pruner) stepCharges(now time.Time) (store.PruneResult, bool, error) {
	return p.stepRecords(now, bucketChargesByStorefront, &p.charges, func(tx *Tx, id string, refs func() (map[string]bool, error), cutoff time.Time, r *store.PruneResult) error {
		ok, token, err := tx.pruneCharge(id, refs, cutoff)
		if ok {
			r.Charges++
		}
		if token {
			r.Tokens++
		}
		return err
	})
}

// stepRecords walks a by-storefront index from *pos in a read transaction:
// records of a final status last updated before the cutoff are candidates; a
// storefront's walk ends at its first entry created after the cutoff. At
// most ScanPerTx entries are examined and PerTx candidates collected; *pos
// is where the next step goes on. The candidates then go to prune in one
// write transaction, which checks each one again there, so the single writer
// is held only for records that are deleted.
func (p *Pruner) stepRecords(now time.Time, index []byte, pos *[]byte,
	prune func(tx *Tx, id string, refs func() (map[string]bool, error), cutoff time.Time, r *store.PruneResult) error) (store.PruneResult, bool, error) {
	cutoff := now.Add(-p.cfg.Retention)
	end := nanos(cutoff)
	var (
		ids  []string
		next []byte
	)
	err := p.db.view(func(tx *Tx) error {
		b, err := tx.bucket(index)
		if err != nil {
			return err
		}
		c := b.Cursor()
		k, v := c.First()
		if *pos != nil {
			k, v = c.Seek(*pos)
		}
		for scanned := 0; k != nil; scanned++ {
			if scanned >= p.cfg.ScanPerTx || len(ids) >= p.cfg.PerTx {
				next = bytes.Clone(k)
				break
			}
			sf, created, id, err := splitStorefrontKey(k)
			if err != nil {
				return err
			}
			if created >= end {
				// The rest of this storefront is newer: on to the next one.
				k, v = c.Seek(append([]byte(sf), sep+1))
				continue
			}
			if finalStatus(index, string(v)) {
				ok, err := tx.updatedBefore(index, id, cutoff)
				if err != nil {
					return err
				}
				if ok {
					ids = append(ids, id)
				}
			}
			k, v = c.Next()
		}
		return nil
	})
	if err != nil {
		return store.PruneResult{}, false, fmt.Errorf("store: prune %s: %w", index, err)
	}
	*pos = next
	var r store.PruneResult
	if len(ids) == 0 {
		return r, next != nil, nil
	}
	err = p.db.update(func(tx *Tx) error {
		r = store.PruneResult{}
		var refs map[string]bool
		refsOnce := func() (map[string]bool, error) {
			if refs == nil {
				m, err := tx.jobRefs()
				if err != nil {
					return nil, err
				}
				refs = m
			}
			return refs, nil
		}
		for _, id := range ids {
			if err := prune(tx, id, refsOnce, cutoff, &r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return store.PruneResult{}, false, fmt.Errorf("store: prune %s: %w", index, err)
	}
	if r.Total() > 0 {
		r.Txs = 1
	}
	return r, next != nil, nil
}

// updatedBefore reports whether the session or charge id (as index names
// it) was last updated before cutoff, so that the write transaction is
// asked to delete only records that are likely to go.
func (tx *Tx) updatedBefore(index []byte, id string, cutoff time.Time) (bool, error) {
	if bytes.Equal(index, bucketSessionsByStorefront) {
		s, err := tx.Session(id)
		if core.IsNotFound(err) {
			return false, nil // a broken index: Check reports it
		}
		if err != nil {
			return false, err
		}
		return updatedBefore(s.UpdatedAt, s.CreatedAt, cutoff), nil
	}
	c, err := tx.Charge(id)
	if core.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return updatedBefore(c.UpdatedAt, c.CreatedAt, cutoff), nil
}

// finalStatus reports whether an index value (a status) is final.
func finalStatus(index []byte, status string) bool {
	if bytes.Equal(index, bucketSessionsByStorefront) {
		return core.SessionStatus(status).Final()
	}
	return chargeFinal(core.ChargeStatus(status))
}

// chargeFinal: nothing changes a charge in these statuses any more.
func chargeFinal(s core.ChargeStatus) bool { return s.Paid() || s == core.ChargeFailed }

// splitStorefrontKey undoes storefrontKey.
func splitStorefrontKey(k []byte) (storefront string, created uint64, id string, err error) {
	i := bytes.IndexByte(k, sep)
	if i < 0 || len(k) < i+1+8 {
		return "", 0, "", fmt.Errorf("store: bad by-storefront key %x", k)
	}
	return string(k[:i]), binary.BigEndian.Uint64(k[i+1:]), string(k[i+9:]), nil
}

// jobRefs returns "s:" + session id and "c:" + charge id of every job.
func (tx *Tx) jobRefs() (map[string]bool, error) {
	refs := map[string]bool{}
	err := tx.AllJobs(func(j *core.Job) error {
		if j.SessionID != "" {
			refs["s:"+j.SessionID] = true
		}
		if j.ChargeID != "" {
			refs["c:"+j.ChargeID] = true
		}
		return nil
	})
	return refs, err
}

// updatedBefore reports whether a record last updated at updated (created
// at created when it has no update time) is older than cutoff.
func updatedBefore(updated, created, cutoff time.Time) bool {
	if updated.IsZero() {
		updated = created
	}
	return updated.Before(cutoff)
}

// pruneSession deletes the session id with all its entries if retention
// allows it, and reports whether it did.
func (tx *Tx) pruneSession(id string, refs func() (map[string]bool, error), cutoff time.Time) (bool, error) {
	s, err := tx.Session(id)
	if core.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !s.Status.Final() || !updatedBefore(s.UpdatedAt, s.CreatedAt, cutoff) {
		return false, nil
	}
	m, err := refs()
	if err != nil {
		return false, err
	}
	if m["s:"+id] {
		return false, nil
	}
	if s.ChargeID != "" {
		if c, err := tx.Charge(s.ChargeID); err == nil && !chargeFinal(c.Status) {
			return false, nil
		} else if err != nil && !core.IsNotFound(err) {
			return false, err
		}
	}
	return true, tx.deleteSession(s)
}

// deleteSession removes a stored session (s as read in tx) and every entry
// derived from it.
func (tx *Tx) deleteSession(s *core.Session) error {
	if err := tx.write(); err != nil {
		return err
	}
	k := sessionKeys(s)
	id := []byte(s.ID)
	b, err := tx.bucket(bucketSessions)
	if err != nil {
		return err
	}
	due, err := dueEntries(b.Get(id), k.checkAt)
	if err != nil {
		return fmt.Errorf("session %s: %w", s.ID, err)
	}
	if err := b.Delete(id); err != nil {
		return err
	}
	if err := tx.moveKey(bucketSessionsByStorefront, storefrontKey(k.storefront, k.created, s.ID), nil, nil); err != nil {
		return err
	}
	if err := tx.addCounter("session/"+k.status, -1); err != nil {
		return err
	}
	for name, key := range map[string]string{string(bucketSessionsHPP): k.hpp, string(bucketSessionsKP): k.kp} {
		ub, err := tx.bucket([]byte(name))
		if err != nil {
			return err
		}
		if err := moveUnique(ub, key, "", id); err != nil {
			return err
		}
	}
	if err := tx.moveDue(s.ID, due, nil); err != nil {
		return err
	}
	if k.authorized {
		if err := tx.moveKey(bucketSessionsAuthorized, timeKey(k.authAt, s.ID), nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// pruneCharge deletes the charge id if retention allows it, and its token
// view when that is not in use any more; it reports what it deleted.
func (tx *Tx) pruneCharge(id string, refs func() (map[string]bool, error), cutoff time.Time) (charge, token bool, err error) {
	c, err := tx.Charge(id)
	if core.IsNotFound(err) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if !chargeFinal(c.Status) || !updatedBefore(c.UpdatedAt, c.CreatedAt, cutoff) {
		return false, false, nil
	}
	m, err := refs()
	if err != nil {
		return false, false, err
	}
	if m["c:"+id] {
		return false, false, nil
	}
	if c.SessionID != "" {
		if s, err := tx.Session(c.SessionID); err == nil && !s.Status.Final() {
			return false, false, nil
		} else if err != nil && !core.IsNotFound(err) {
			return false, false, err
		}
	}
	if err := tx.write(); err != nil {
		return false, false, err
	}
	b, err := tx.bucket(bucketCharges)
	if err != nil {
		return false, false, err
	}
	if err := b.Delete([]byte(id)); err != nil {
		return false, false, err
	}
	k := chargeKeys(c)
	if err := tx.moveKey(bucketChargesByStorefront, storefrontKey(k.storefront, k.created, id), nil, nil); err != nil {
		return false, false, err
	}
	if err := tx.addCounter("charge/"+k.status, -1); err != nil {
		return false, false, err
	}
	token, err = tx.pruneToken(c, cutoff)
	return true, token, err
}

// pruneToken deletes the token view of c's customer token when c was its
// last charge and the token saw no charge or recovery since cutoff.
func (tx *Tx) pruneToken(c *core.Charge, cutoff time.Time) (bool, error) {
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
	b, err := tx.bucket(bucketTokens)
	if err != nil {
		return false, err
	}
	if err := b.Delete(pairKey(c.Storefront, c.CustomerToken)); err != nil {
		return false, err
	}
	return true, nil
}
