package hpp

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// AuthorizationURL is the KP merchant_urls.authorization of an SDK session
// id with callback secret: Klarna POSTs {"authorization_token",
// "session_id"} there once the customer authorized (FACTS 8.3).
func AuthorizationURL(publicURL, id, secret string) string {
	return publicURL + "/klarna/kp/" + url.PathEscape(id) + "/authorization?secret=" + url.QueryEscape(secret)
}

// AuthorizationCallback is a decoded authorization callback body.
type AuthorizationCallback struct {
	AuthorizationToken string
	SessionID          string
}

// DecodeAuthorizationCallback decodes and checks an authorization callback
// body: strict about the two fields hppd acts on, tolerant of fields Klarna
// may add.
func DecodeAuthorizationCallback(body []byte) (*AuthorizationCallback, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, core.Invalid("body", "is not a JSON authorization callback")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, core.Invalid("body", "has data after the JSON object")
	}
	str := func(name string, limit int) (string, error) {
		v, ok := raw[name]
		if !ok {
			return "", core.Invalid(name, "is required")
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", core.Invalid(name, "must be a string")
		}
		if s == "" {
			return "", core.Invalid(name, "is required")
		}
		if len(s) > limit {
			return "", core.Invalid(name, "is longer than %d characters", limit)
		}
		return s, nil
	}
	tok, err := str("authorization_token", 1024)
	if err != nil {
		return nil, err
	}
	sid, err := str("session_id", 255)
	if err != nil {
		return nil, err
	}
	return &AuthorizationCallback{AuthorizationToken: tok, SessionID: sid}, nil
}

var (
	errNotSDK      = &core.Error{Code: core.CodeNotFound, Message: "no SDK session with that id"}
	errKPSessionID = &core.Error{Code: core.CodeNotFound, Field: "session_id", Message: "no session with that KP session id"}
)

// HandleAuthorization verifies and records Klarna's authorization callback
// for SDK session id. The secret is checked before the body is looked at,
// and the body's session_id must be the session's KP session id. The
// authorization and its place_order job commit in one transaction before
// this returns (so a 2xx means it is on disk); the order is placed by the
// job, with the same exactly-once machinery as every other path. A repeat
// with the same token is acknowledged and changes nothing; another token
// for a session already authorized is a conflict and changes nothing.
func (s *Service) HandleAuthorization(id, secret string, body []byte) (CallbackResult, error) {
	res := CallbackResult{SessionID: id}
	var cur *core.Session
	err := s.db.View(func(tx store.Tx) error {
		var err error
		cur, err = tx.Session(id)
		return err
	})
	if err != nil {
		if core.IsNotFound(err) {
			s.Stats.CallbacksRejected.Add(1)
			return res, errNoCallback
		}
		return res, fmt.Errorf("read session %s for its authorization callback: %w", id, err)
	}
	if secret == "" || !SecretMatches(secret, cur.SecretHash) {
		s.Stats.CallbacksRejected.Add(1)
		return res, errBadSecret
	}
	if cur.Integration != core.IntegrationSDK {
		s.Stats.CallbacksRejected.Add(1)
		return res, errNotSDK
	}
	cb, err := DecodeAuthorizationCallback(body)
	if err != nil {
		s.Stats.CallbacksRejected.Add(1)
		return res, err
	}
	if cur.KPSessionID == "" || subtle.ConstantTimeCompare([]byte(cb.SessionID), []byte(cur.KPSessionID)) != 1 {
		s.Stats.CallbacksRejected.Add(1)
		return res, errKPSessionID
	}
	var woke, conflict bool
	var status core.SessionStatus
	err = s.db.Batch(func(tx store.Tx) error {
		woke, conflict, res.Duplicate = false, false, false
		cur, err := tx.Session(id)
		if err != nil {
			return err
		}
		status = cur.Status
		if cur.Status != core.SessionPending {
			if cur.AuthorizedWith(cb.AuthorizationToken) {
				res.Duplicate = true
			} else {
				conflict = true
			}
			return nil
		}
		woke, err = s.observeIn(tx, cur, core.Observation{
			Source: core.SourceCallback, Authoritative: true, KlarnaStatus: core.KlarnaCompleted, AuthorizationToken: cb.AuthorizationToken,
		}, s.now())
		return err
	})
	if err != nil {
		return res, &core.Error{Code: core.CodeInternal, Message: "record authorization callback", Err: err}
	}
	switch {
	case conflict:
		s.Stats.CallbacksRejected.Add(1)
		return res, core.Errorf(core.CodeConflict, "session %s is already %s with another authorization", id, status)
	case res.Duplicate:
		s.Stats.CallbacksDup.Add(1)
	default:
		s.Stats.CallbacksAccepted.Add(1)
	}
	if woke {
		s.Wake()
	}
	return res, nil
}
