package hpp

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	json "github.com/go-json-experiment/json/v1"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
)

// MaxCallbackBody is the largest callback body hppd reads (64 KiB).
const MaxCallbackBody = 64 << 10

// Callback is a decoded status_update body.
type Callback struct {
	EventID string
	Session klarna.HPPSessionStatus
}

// DecodeCallback decodes and checks a status_update body. It is strict about
// the shape hppd relies on (event_id, session.session_id, session.status) and
// tolerant of fields Klarna may add. A status outside today's enum is not an
// error here: Klarna treats new enum values as non-breaking (FACTS 8.8), so
// the caller answers such a callback and re-reads the session.
//
// json is encoding/json's behaviour on the json/v2 engine, as in the store's
// codec (store/boltstore/codec.go): the same answers, in less CPU per
// callback.
func DecodeCallback(body []byte) (*Callback, error) {
	var raw struct {
		EventID *string                  `json:"event_id"`
		Session *klarna.HPPSessionStatus `json:"session"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return nil, core.Invalid("body", "is not a JSON status callback")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, core.Invalid("body", "has data after the JSON object")
	}
	if raw.EventID == nil || *raw.EventID == "" {
		return nil, core.Invalid("event_id", "is required")
	}
	if len(*raw.EventID) > 200 {
		return nil, core.Invalid("event_id", "is longer than 200 characters")
	}
	if raw.Session == nil {
		return nil, core.Invalid("session", "is required")
	}
	if raw.Session.SessionID == "" {
		return nil, core.Invalid("session.session_id", "is required")
	}
	if raw.Session.Status == "" {
		return nil, core.Invalid("session.status", "is required")
	}
	return &Callback{EventID: *raw.EventID, Session: *raw.Session}, nil
}

// CallbackResult says what a callback did.
type CallbackResult struct {
	Duplicate bool // event_id seen before, or the session is final: acknowledged, nothing changed
	// Resync: the callback carried the right secret but a body hppd could not
	// act on (unreadable, empty, or a status it does not know); it was
	// acknowledged and the session is re-read from Klarna instead.
	Resync    bool
	SessionID string
}

var (
	// errBadSecret is errNoCallback: a wrong secret and an unknown session
	// get the same answer, so the callback URL does not tell an outsider
	// which session ids exist.
	errBadSecret   = errNoCallback
	errHPPMismatch = &core.Error{Code: core.CodeNotFound, Field: "hppId", Message: "no session with that HPP session id"}
	errBodyHPPID   = &core.Error{Code: core.CodeNotFound, Field: "session.session_id", Message: "no session with that HPP session id"}
)

// HandleCallback verifies and records a status_update callback. The secret is
// checked before the body is looked at; the event is de-duplicated and its
// effect committed in one transaction (group-committed with concurrent
// callbacks) before this returns, so a 2xx answer means it is on disk. Work
// the event calls for runs later from jobs. The session's new value is
// computed and encoded before the transaction, from the session as read to
// check the secret (prepareCallback), so that the store's single writer only
// checks that the session did not change meanwhile and writes it.
func (s *Service) HandleCallback(id, secret, hppIDParam string, body []byte) (CallbackResult, error) {
	chk, err := s.readForCallback(id)
	if err != nil {
		return CallbackResult{SessionID: id}, err
	}
	return s.HandleCheckedCallback(chk, secret, hppIDParam, body)
}

// HandleCheckedCallback is HandleCallback for a callback CheckCallback
// passed, from the session CheckCallback read: the HTTP layer checks the
// secret before it reads the body, and the session read for that check is
// the one the write is prepared from. Everything is checked again here; a
// session changed since that read (while the body arrived) is caught by
// the write's version check, which then reads, changes and writes it in the
// transaction (store.SessionVersions).
func (s *Service) HandleCheckedCallback(chk *CheckedCallback, secret, hppIDParam string, body []byte) (CallbackResult, error) {
	cur, version := chk.session, chk.version
	id := cur.ID
	res := CallbackResult{SessionID: id}
	hash, hppID, final := cur.SecretHash, cur.HPPSessionID, cur.Status.Final()
	if secret == "" || !SecretMatches(secret, hash) {
		s.Stats.CallbacksRejected.Add(1)
		return res, errBadSecret
	}
	if hppID != "" && hppIDParam != "" && hppIDParam != hppID {
		// The secret is this session's, the HPP session another: a stray
		// made by a resent creation whose first answer was lost (it
		// carries the same merchant_urls). Nobody was given its page.
		if s.disableStray(id, hppIDParam, body) {
			res.Duplicate = true
			return res, nil
		}
		s.Stats.CallbacksRejected.Add(1)
		return res, errHPPMismatch
	}
	if hppID == "" || hppIDParam != hppID { // the URL Klarna was given always carries hppId (FACTS 7.3)
		s.Stats.CallbacksRejected.Add(1)
		return res, errHPPMismatch
	}
	if final {
		// A genuine repeat after the end: acknowledge so Klarna stops.
		res.Duplicate = true
		s.Stats.CallbacksDup.Add(1)
		return res, nil
	}
	cb, derr := DecodeCallback(body)
	if derr == nil && cb.Session.SessionID != hppID {
		s.Stats.CallbacksRejected.Add(1)
		return res, errBodyHPPID
	}
	if derr != nil || !core.KlarnaStatuses[cb.Session.Status] {
		// The secret and HPP id prove the sender; only the body is unusable
		// (a retry without a body, or a status newer than hppd). Refusing it
		// would make Klarna give up on the event, so acknowledge it and learn
		// the truth from a re-read.
		return s.callbackResync(id, hppID, cb, derr)
	}
	obs := core.Observation{Source: core.SourceCallback, KlarnaStatus: cb.Session.Status}
	if cb.Session.UpdatedAt != nil {
		obs.KlarnaUpdatedAt = cb.Session.UpdatedAt.UTC()
	}
	prep := s.prepareCallback(cur, version, obs)
	var woke bool
	err := s.db.Batch(func(tx store.Tx) error {
		res.Duplicate, woke = false, false
		now := s.now()
		// The common callback: the session is as read, and the write was
		// prepared. One look at its record de-duplicates, marks and writes.
		switch out, err := store.MarkPrepared(tx, prep, hppID, cb.EventID, now); {
		case err != nil:
			return err
		case out == store.EventSeen:
			res.Duplicate = true
			return nil
		case out == store.PreparedWritten:
			return nil
		}
		seen, err := tx.SeenEvent(hppID, cb.EventID)
		if err != nil {
			return err
		}
		if seen {
			res.Duplicate = true
			return nil
		}
		if err := tx.MarkEvent(hppID, cb.EventID, now); err != nil {
			return err
		}
		if wrote, err := store.PutPrepared(tx, prep); err != nil || wrote {
			return err
		}
		cur, err := tx.Session(id)
		if err != nil {
			return err
		}
		woke, err = s.observeIn(tx, cur, obs, now)
		return err
	})
	if err != nil {
		return res, &core.Error{Code: core.CodeInternal, Message: "record callback", Err: err}
	}
	if res.Duplicate {
		s.Stats.CallbacksDup.Add(1)
	} else {
		s.Stats.CallbacksAccepted.Add(1)
	}
	if woke {
		s.Wake()
	}
	return res, nil
}

// prepareCallback applies a callback's observation to cur, the session as
// read at version in the callback's View, and prepares its write there, off
// the store's single writer (store.SessionVersions), when that write is all
// observeIn would do: the session changes, but not its status, and no job
// is due (the common callback: IN_PROGRESS, BACK, FAILED or ERROR on a
// pending session moves its Klarna status, history and next check). The
// callback's Batch writes it only if the session is still at version, and
// otherwise reads the session again and runs observeIn as it would without
// it. It returns nil when there is nothing to prepare or the store has no
// versions; cur is the caller's to change.
func (s *Service) prepareCallback(cur *core.Session, version store.SessionVersion, obs core.Observation) store.PreparedSession {
	if version == nil {
		return nil
	}
	before := cur.Status
	changed, jobs := cur.Observe(obs, s.now(), s.cfg.Policy)
	if !changed || len(jobs) > 0 || cur.Status != before {
		return nil
	}
	p, err := version.Prepare(cur)
	if err != nil {
		// The Batch's ordinary write meets the same error and reports it.
		return nil
	}
	return p
}

// callbackResync records an authenticated callback hppd cannot act on and
// schedules a re-read of the session in the same transaction. The event id,
// when readable, is de-duplicated as usual. Each such callback leaves a
// history entry unless the last entry already is one and a re-read is still
// due, so a burst of them adds one entry, not one per call.
func (s *Service) callbackResync(id, hppID string, cb *Callback, derr error) (CallbackResult, error) {
	res := CallbackResult{SessionID: id, Resync: true}
	reason := "callback body unusable (" + errString(derr) + ")" + resyncNote
	if derr == nil {
		reason = "callback with unknown status " + strconv.Quote(cb.Session.Status) + resyncNote
	}
	var woke bool
	err := s.db.Batch(func(tx store.Tx) error {
		res.Duplicate, woke = false, false
		now := s.now()
		if cb != nil {
			seen, err := tx.SeenEvent(hppID, cb.EventID)
			if err != nil {
				return err
			}
			if seen {
				res.Duplicate = true
				return nil
			}
			if err := tx.MarkEvent(hppID, cb.EventID, now); err != nil {
				return err
			}
		}
		cur, err := tx.Session(id)
		if err != nil {
			return err
		}
		if cur.Status.Final() {
			res.Duplicate = true
			return nil
		}
		created, err := tx.AddJob(&core.Job{ID: core.SyncJobID(id), Kind: core.JobSyncSession, SessionID: id, DueAt: now, CreatedAt: now, Source: core.SourceCallback})
		if err != nil {
			return err
		}
		woke = created
		if !created && lastIsResync(cur) {
			return nil // a re-read is due and the history says why already
		}
		cur.History = append(cur.History, core.Change{At: now, From: string(cur.Status), To: string(cur.Status), KlarnaStatus: cur.KlarnaStatus, Source: core.SourceCallback, Reason: reason})
		cur.UpdatedAt = now
		return tx.PutSession(cur)
	})
	if err != nil {
		return res, &core.Error{Code: core.CodeInternal, Message: "record callback", Err: err}
	}
	if res.Duplicate {
		res.Resync = false
		s.Stats.CallbacksDup.Add(1)
	} else {
		s.Stats.CallbacksResync.Add(1)
	}
	if woke {
		s.Wake()
	}
	return res, nil
}

// resyncNote ends the reason of the history entry an unusable callback
// leaves.
const resyncNote = "; re-reading the session"

func lastIsResync(s *core.Session) bool {
	n := len(s.History)
	return n > 0 && s.History[n-1].Source == core.SourceCallback && strings.HasSuffix(s.History[n-1].Reason, resyncNote)
}

// Shopper redirect kinds (the last path element of the shopper merchant_urls).
var redirectKinds = map[string]bool{"success": true, "failure": true, "cancel": true, "back": true, "error": true}

// HandleRedirect records a shopper coming back from the payment page and
// returns where to send them: the storefront's matching return URL with
// hppd_session appended. The redirect is only a hint: the session is re-read
// from Klarna (briefly; on failure a sync job finishes the job) before hppd
// acts on it. The re-reads of redirects are coalesced per session (see
// Config.ReadEvery): a redirect that comes while one is in flight waits for
// it, one inside the interval waits for the interval's end and tries once
// more (redirectRead), and one that still finds a read too recent answers
// from what is on file and leaves a sync job due at the interval's end, so
// a storm of hits on a shopper URL costs one read per interval.
func (s *Service) HandleRedirect(ctx context.Context, id, kind, hppIDParam string) (string, error) {
	if !redirectKinds[kind] {
		return "", core.ErrNotFound
	}
	var cur *core.Session
	err := s.db.View(func(tx store.Tx) error {
		var err error
		cur, err = tx.Session(id)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read session %s for a redirect: %w", id, err)
	}
	// The hppId Klarna fills in is required: a URL with only a session id
	// (guessed or leaked) redirects nowhere.
	if cur.HPPSessionID == "" || subtle.ConstantTimeCompare([]byte(hppIDParam), []byte(cur.HPPSessionID)) != 1 {
		return "", errHPPMismatch
	}
	if !cur.Status.Final() && cur.Status == core.SessionPending {
		err := s.redirectRead(ctx, id)
		if until, ok := recentUntil(err); ok {
			s.syncLater(ctx, id, until)
			return ReturnURL(cur.ReturnURLs, kind, id), nil
		}
		if err != nil {
			s.logger(ctx).Warn("re-read after redirect failed; scheduling", "session_id", id, "err", err)
			now := s.now()
			if err := s.db.Update(func(tx store.Tx) error {
				_, err := tx.AddJob(&core.Job{ID: core.SyncJobID(id), Kind: core.JobSyncSession, SessionID: id, DueAt: now, CreatedAt: now, Source: core.SourceRedirect})
				return err
			}); err != nil {
				// The poller's routine re-read still finds what happened.
				s.logger(ctx).Error("schedule re-read after redirect", "session_id", id, "err", err)
			}
		}
		s.Wake()
	}
	return ReturnURL(cur.ReturnURLs, kind, id), nil
}

// redirectRead re-reads session id for a redirect, through the read gate.
// Inside the interval it waits for the interval's end (bounded by ctx) and
// tries once more, so that a shopper coming back just after another read
// of the session still sees what happened since: a storm of redirects holds
// its requests for at most one interval and costs one read per interval.
func (s *Service) redirectRead(ctx context.Context, id string) error {
	read := func() error {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return s.reads.do(rctx, id, true, s.now, s.cfg.ReadEvery, func() error {
			return s.syncSession(rctx, id, core.SourceRedirect)
		})
	}
	err := read()
	until, ok := recentUntil(err)
	if !ok {
		return err
	}
	wait := min(until.Sub(s.now()), s.cfg.ReadEvery)
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
	return read()
}

// syncLater makes sure a sync job of session id is due by until (a redirect
// inside the coalescing interval): one job per session, so a storm of
// redirects writes it once.
func (s *Service) syncLater(ctx context.Context, id string, until time.Time) {
	var exists bool
	if err := s.db.View(func(tx store.Tx) error {
		_, err := tx.Job(core.SyncJobID(id))
		exists = err == nil
		if core.IsNotFound(err) {
			return nil
		}
		return err
	}); err != nil {
		// Try to write the job anyway: adding it is idempotent.
		s.logger(ctx).Warn("look up the re-read after redirect", "session_id", id, "err", err)
	}
	if exists {
		return
	}
	now := s.now()
	err := s.db.Update(func(tx store.Tx) error {
		_, err := tx.AddJob(&core.Job{ID: core.SyncJobID(id), Kind: core.JobSyncSession, SessionID: id, DueAt: until, CreatedAt: now, Source: core.SourceRedirect})
		return err
	})
	if err != nil {
		s.logger(ctx).Warn("schedule re-read after redirect", "session_id", id, "err", err)
	}
}

// ReturnURL picks the storefront page for a redirect kind (cancel falls back
// to back, then failure; error and back fall back to failure) and appends
// hppd_session=<id>.
func ReturnURL(r core.ReturnURLs, kind, id string) string {
	var target string
	switch kind {
	case "success":
		target = r.Success
	case "cancel":
		target = first(r.Cancel, r.Back, r.Failure)
	case "back":
		target = first(r.Back, r.Failure)
	case "error":
		target = first(r.Error, r.Failure)
	default:
		target = r.Failure
	}
	u, err := url.Parse(target)
	if err != nil {
		return target
	}
	q := u.Query()
	q.Set("hppd_session", id)
	u.RawQuery = q.Encode()
	return u.String()
}

func first(vs ...string) string {
	for _, v := range vs {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// strayDisableTimeout bounds the DELETE of a stray HPP session inside a
// callback (Klarna waits 3 s for the answer).
const strayDisableTimeout = 2 * time.Second

// disableStray disables the stray HPP session hppID of session id that a
// callback revealed, and reports whether the callback may be acknowledged.
// A stray that reports COMPLETED is not touched: somebody paid on a page
// hppd did not hand out, which an operator must look at; the callback is
// refused so Klarna keeps retrying while the error is logged.
func (s *Service) disableStray(id, hppID string, body []byte) bool {
	log := s.log.With("session_id", id, "hpp_session_id", hppID)
	// An HPP session hppd tracks is never a stray, whatever secret comes
	// with it: one session's secret must not reach another's page.
	var owner string
	if err := s.db.View(func(tx store.Tx) error {
		var err error
		owner, err = tx.SessionIDByHPP(hppID)
		return err
	}); err == nil || !core.IsNotFound(err) {
		if owner != "" && owner != id {
			log.Warn("callback with one session's secret for another session's HPP session; refused", "owner_session_id", owner)
		}
		return false
	}
	if cb, err := DecodeCallback(body); err == nil {
		if cb.Session.SessionID != hppID {
			return false
		}
		switch cb.Session.Status {
		case core.KlarnaCompleted:
			log.Error("a stray HPP session of this session was paid; it is not tracked")
			return false
		case core.KlarnaDisabled, core.KlarnaCancelled:
			return true // already over
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), strayDisableTimeout)
	defer cancel()
	account := ""
	if sess, serr := s.session(id); serr == nil {
		account = sess.KlarnaAccount
	}
	err := s.klarnaFor(account).DisableHPPSessionAt(ctx, hppID, "")
	switch {
	case klarna.IsNotFound(err):
		return false // not a session of Klarna's: refuse the callback as before
	case err != nil:
		log.Warn("could not disable a stray HPP session; Klarna's retry of the callback tries again", "err", err)
		return false
	}
	log.Info("stray HPP session disabled")
	return true
}
