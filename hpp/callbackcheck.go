package hpp

import (
	"fmt"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// errNoCallback answers a callback for an unknown session and one with a
// wrong secret alike (404), so the callback URL does not say which session
// ids exist.
var errNoCallback = &core.Error{Code: core.CodeNotFound, Message: "no such callback"}

// CallbackKind names the callback routes CheckCallback knows.
type CallbackKind int

// The callback routes.
const (
	CallbackHPPStatus       CallbackKind = iota // status_update: secret and hppId
	CallbackKPAuthorization                     // KP authorization: secret
	CallbackKPNotification                      // fraud notification: notification secret
)

// maxHPPID bounds the hppId query parameter (Klarna's ids are UUIDs).
const maxHPPID = 100

// CheckedCallback is what CheckCallback read: the session whose secret it
// checked and the version of its stored value (store.SessionVersions), so
// that the status callback's write is prepared from that read
// (HandleCheckedCallback) instead of a second one. It serves one handler
// call: the handler changes the session it holds.
type CheckedCallback struct {
	session *core.Session
	version store.SessionVersion
}

// CheckCallback is what the HTTP layer asks before it reads a callback's
// body: the session id has hppd's format (checked before any lookup), the
// session exists and the secret is its own, and a status callback's hppId is
// present and well-formed. An unknown session and a wrong secret get the same
// error. Handle* check it all again with the body; this only makes an
// outsider's request cost one lookup and no body.
func (s *Service) CheckCallback(kind CallbackKind, id, secret, hppID string) (*CheckedCallback, error) {
	if !core.ValidID(core.SessionIDPrefix, id) || secret == "" {
		s.Stats.CallbacksRejected.Add(1)
		return nil, errNoCallback
	}
	chk, err := s.readForCallback(id)
	if err != nil {
		return nil, err
	}
	hash := chk.session.SecretHash
	if kind == CallbackKPNotification {
		hash = chk.session.NotifySecretHash
	}
	if !SecretMatches(secret, hash) {
		s.Stats.CallbacksRejected.Add(1)
		return nil, errNoCallback
	}
	if kind == CallbackHPPStatus && !validHPPID(hppID) {
		s.Stats.CallbacksRejected.Add(1)
		return nil, errHPPMismatch
	}
	return chk, nil
}

// readForCallback reads session id and its version for a callback's checks
// and write. An unknown session is errNoCallback, counted as rejected.
func (s *Service) readForCallback(id string) (*CheckedCallback, error) {
	var chk CheckedCallback
	err := s.db.View(func(tx store.Tx) error {
		var err error
		chk.session, chk.version, err = store.ReadSessionVersion(tx, id)
		return err
	})
	if core.IsNotFound(err) {
		s.Stats.CallbacksRejected.Add(1)
		return nil, errNoCallback
	}
	if err != nil {
		return nil, fmt.Errorf("read session %s for a callback: %w", id, err)
	}
	return &chk, nil
}

// validHPPID: present, at most maxHPPID bytes of letters, digits, '-' and '_'.
func validHPPID(v string) bool {
	if v == "" || len(v) > maxHPPID {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
