package pgstore

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"

	json "github.com/go-json-experiment/json/v1"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/jackc/pgx/v5"
)

// Page sizes of ListSessions and ListCharges (boltstore's).
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// Session returns the session with id, or core.ErrNotFound.
func (tx *Tx) Session(id string) (*core.Session, error) {
	var body []byte
	if err := tx.lockedRow(key(lockSession, id), `SELECT body FROM sessions WHERE id = $1`, []any{id}, &body); err != nil {
		return nil, err
	}
	var s core.Session
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("store: session %s: %w", id, err)
	}
	return &s, nil
}

// SessionIDByHPP returns the id of the session of an HPP session.
func (tx *Tx) SessionIDByHPP(hppSessionID string) (string, error) {
	return tx.lookup(lockHPP, `SELECT id FROM sessions WHERE hpp_session_id = $1`, hppSessionID)
}

// SessionIDByKP returns the id of the session of a KP session.
func (tx *Tx) SessionIDByKP(kpSessionID string) (string, error) {
	return tx.lookup(lockKP, `SELECT id FROM sessions WHERE kp_session_id = $1`, kpSessionID)
}

func (tx *Tx) lookup(kind byte, sql, k string) (string, error) {
	if k == "" {
		return "", core.ErrNotFound
	}
	var id string
	if err := tx.lockedRow(key(kind, k), sql, []any{k}, &id); err != nil {
		return "", err
	}
	return id, nil
}

// PutSession inserts or replaces s; its columns are derived from it in the
// same statement. An HPP or KP session id that belongs to another session
// is a conflict: the statement looks both up on their unique indexes first
// and writes nothing when one is taken (so the transaction stays usable),
// under the locks of the session and of both lookup keys, so no concurrent
// writer takes either id before the commit. One round trip.
func (tx *Tx) PutSession(s *core.Session) error {
	if err := store.CheckSession(s); err != nil {
		return err
	}
	body, err := encode("session", s.ID, s)
	if err != nil {
		return err
	}
	var authorized *int64
	if s.Status == core.SessionAuthorized {
		n := ns(s.AuthorizedAt)
		authorized = &n
	}
	keys := []lockKey{{lockSession, s.ID}, {lockHPP, s.HPPSessionID}, {lockKP, s.KPSessionID}}
	var field string
	err = tx.lockedRow(keys, `WITH taken AS (
			SELECT f FROM (
				SELECT 'hpp_session_id' AS f, id FROM sessions WHERE hpp_session_id = $4::text
				UNION ALL SELECT 'kp_session_id', id FROM sessions WHERE kp_session_id = $5::text) c
			WHERE id <> $1::text LIMIT 1),
		put AS (
			INSERT INTO sessions (id, storefront, status, hpp_session_id, kp_session_id, check_at, authorized_at, created_at, updated_at, body)
			SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::bigint, $7::bigint, $8::bigint, $9::bigint, $10::bytea
			WHERE NOT EXISTS (SELECT 1 FROM taken)
			ON CONFLICT (id) DO UPDATE SET storefront = $2, status = $3, hpp_session_id = $4, kp_session_id = $5,
				check_at = $6, authorized_at = $7, created_at = $8, updated_at = $9, body = $10)
		SELECT f FROM taken`,
		[]any{s.ID, s.Storefront, string(s.Status), nullString(s.HPPSessionID), nullString(s.KPSessionID),
			nullNS(s.CheckAt), authorized, ns(s.CreatedAt), ns(s.UpdatedAt), body}, &field)
	switch {
	case err == nil:
		return &core.Error{Code: core.CodeConflict, Field: field, Message: "already belongs to another session"}
	case core.IsNotFound(err):
		return nil
	}
	return fmt.Errorf("store: put session %s: %w", s.ID, err)
}

// SessionsDue returns the ids of sessions whose CheckAt is at or before now,
// oldest first, at most limit (<= 0: all), from the sessions_due index.
func (tx *Tx) SessionsDue(now time.Time, limit int) ([]string, error) {
	var ids []string
	err := tx.rows(`SELECT id FROM sessions WHERE check_at <= $1 ORDER BY check_at, id LIMIT $2`,
		[]any{ns(now), sqlLimit(limit)}, func(r pgx.Rows) error {
			var id string
			if err := r.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("store: sessions due: %w", err)
	}
	return ids, nil
}

// sqlLimit is a LIMIT argument: NULL (no limit) for limit <= 0.
func sqlLimit(limit int) *int64 {
	if limit <= 0 {
		return nil
	}
	n := int64(limit)
	return &n
}

// OldestAuthorized returns the AuthorizedAt of the oldest session
// authorized and not ordered yet.
func (tx *Tx) OldestAuthorized() (time.Time, bool, error) {
	var min *int64
	if err := tx.row(`SELECT min(authorized_at) FROM sessions WHERE authorized_at IS NOT NULL`, nil, &min); err != nil {
		return time.Time{}, false, fmt.Errorf("store: oldest authorized: %w", err)
	}
	if min == nil {
		return time.Time{}, false, nil
	}
	return timeOf(*min), true, nil
}

// ListSessions returns a storefront's sessions newest first, like
// boltstore's, by the sessions_by_storefront index.
func (tx *Tx) ListSessions(q core.ListQuery) ([]*core.Session, string, error) {
	if q.Status != "" && !core.SessionStatus(q.Status).Valid() {
		return nil, "", core.Invalid("status", "%q is not a session status", q.Status)
	}
	var out []*core.Session
	next, err := tx.list("sessions", q, func(body []byte) (string, error) {
		var s core.Session
		if err := json.Unmarshal(body, &s); err != nil {
			return "", err
		}
		out = append(out, &s)
		return s.ID, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("store: list sessions: %w", err)
	}
	if out == nil {
		out = []*core.Session{}
	}
	return out, next, nil
}

// AllSessions calls fn with every session in id order, a page at a time.
func (tx *Tx) AllSessions(fn func(*core.Session) error) error {
	return tx.all("sessions", func(body []byte) error {
		var s core.Session
		if err := json.Unmarshal(body, &s); err != nil {
			return err
		}
		return fn(&s)
	})
}

// all calls fn with the body of every row of table in id order, reading
// pageSize rows per statement so fn may use the Tx between pages.
func (tx *Tx) all(table string, fn func(body []byte) error) error {
	after := ""
	for {
		var ids []string
		var bodies [][]byte
		err := tx.rows(`SELECT id, body FROM `+table+` WHERE id > $1 ORDER BY id LIMIT $2`, []any{after, pageSize}, func(r pgx.Rows) error {
			var id string
			var b []byte
			if err := r.Scan(&id, &b); err != nil {
				return err
			}
			ids, bodies = append(ids, id), append(bodies, b)
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: read %s: %w", table, err)
		}
		for i, b := range bodies {
			if err := fn(b); err != nil {
				return err
			}
			after = ids[i]
		}
		if len(ids) < pageSize {
			return nil
		}
	}
}

// list reads one page of a storefront's sessions or charges, newest first,
// and returns the next page's cursor. A cursor is, as in boltstore,
// base64url(big-endian CreatedAt nanos ‖ id) of the page's last record.
func (tx *Tx) list(table string, q core.ListQuery, add func(body []byte) (string, error)) (string, error) {
	if err := store.CheckStorefront(q.Storefront); err != nil {
		return "", err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	if limit > MaxListLimit {
		limit = MaxListLimit
	}
	// Past the last possible key: no cursor starts from the newest.
	afterCreated, afterID := int64(1<<63-1), "\U0010FFFF"
	if q.Cursor != "" {
		rest, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(rest) < 9 {
			return "", core.Invalid("cursor", "is not a cursor returned by a previous page")
		}
		afterCreated, afterID = int64(binary.BigEndian.Uint64(rest[:8])), string(rest[8:])
	}
	var bodies [][]byte
	var created []int64
	err := tx.rows(`SELECT created_at, body FROM `+table+`
		WHERE storefront = $1 AND ($2 = '' OR status = $2) AND (created_at, id) < ($3, $4)
		ORDER BY created_at DESC, id DESC LIMIT $5`,
		[]any{q.Storefront, q.Status, afterCreated, afterID, limit + 1}, func(r pgx.Rows) error {
			var c int64
			var b []byte
			if err := r.Scan(&c, &b); err != nil {
				return err
			}
			created, bodies = append(created, c), append(bodies, b)
			return nil
		})
	if err != nil {
		return "", err
	}
	more := len(bodies) > limit
	if more {
		bodies = bodies[:limit]
	}
	var lastID string
	for _, b := range bodies {
		id, err := add(b)
		if err != nil {
			return "", err
		}
		lastID = id
	}
	if !more {
		return "", nil
	}
	cur := binary.BigEndian.AppendUint64(nil, uint64(created[limit-1]))
	return base64.RawURLEncoding.EncodeToString(append(cur, lastID...)), nil
}
