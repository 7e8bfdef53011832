package pgstore

import (
	"errors"
	"fmt"
	"strings"

	json "github.com/go-json-experiment/json/v1"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
	"github.com/jackc/pgx/v5"
)

// maxCheckErrors bounds the problems Check reports.
const maxCheckErrors = 20

// Check verifies, in one snapshot, that every record's columns agree with
// its body (the columns are what scans, listings, leases and counts read) and
// that every body decodes: an admin and test tool that reads every row.
func (db *DB) Check() error {
	var problems []string
	fail := func(format string, args ...any) {
		if len(problems) < maxCheckErrors {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	err := db.View(func(stx store.Tx) error {
		tx := stx.(*Tx)
		err := tx.rows(`SELECT id, storefront, status, coalesce(hpp_session_id, ''), coalesce(kp_session_id, ''),
			coalesce(check_at, -1), coalesce(authorized_at, -1), created_at, body FROM sessions`, nil, func(r pgx.Rows) error {
			var id, sf, status, hpp, kp string
			var checkAt, authAt, created int64
			var body []byte
			if err := r.Scan(&id, &sf, &status, &hpp, &kp, &checkAt, &authAt, &created, &body); err != nil {
				return err
			}
			var s core.Session
			if err := json.Unmarshal(body, &s); err != nil {
				fail("session %s: %v", id, err)
				return nil
			}
			wantCheck := int64(-1)
			if !s.CheckAt.IsZero() {
				wantCheck = ns(s.CheckAt)
			}
			wantAuth := int64(-1)
			if s.Status == core.SessionAuthorized {
				wantAuth = ns(s.AuthorizedAt)
			}
			if s.ID != id || s.Storefront != sf || string(s.Status) != status || s.HPPSessionID != hpp ||
				s.KPSessionID != kp || wantCheck != checkAt || wantAuth != authAt || ns(s.CreatedAt) != created {
				fail("session %s: columns disagree with the record", id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.rows(`SELECT id, storefront, status, created_at, body FROM charges`, nil, func(r pgx.Rows) error {
			var id, sf, status string
			var created int64
			var body []byte
			if err := r.Scan(&id, &sf, &status, &created, &body); err != nil {
				return err
			}
			var c core.Charge
			if err := json.Unmarshal(body, &c); err != nil {
				fail("charge %s: %v", id, err)
				return nil
			}
			if c.ID != id || c.Storefront != sf || string(c.Status) != status || ns(c.CreatedAt) != created {
				fail("charge %s: columns disagree with the record", id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.rows(`SELECT id, kind, due, `+jobCols+` FROM jobs`, nil, func(r pgx.Rows) error {
			var id, kind, owner string
			var due, token, until int64
			var body []byte
			if err := r.Scan(&id, &kind, &due, &body, &owner, &token, &until); err != nil {
				return err
			}
			j, err := decodeJob(body, owner, token, until)
			if err != nil {
				fail("job %s: %v", id, err)
				return nil
			}
			if j.ID != id || string(j.Kind) != kind || ns(j.Due()) != due {
				fail("job %s: columns disagree with the record", id)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store: check: %w", err)
	}
	if len(problems) > 0 {
		return errors.New("store: check: " + strings.Join(problems, "; "))
	}
	return nil
}
