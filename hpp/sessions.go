package hpp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
)

// SessionRequest is a storefront's request for a Klarna purchase.
type SessionRequest struct {
	Purchase       core.Purchase
	CustomerToken  string
	PlaceOrderMode string
	Integration    string
	ReturnURLs     core.ReturnURLs
	// ChargeID links a fallback session to its charge.
	ChargeID string
	// IdempotencyKey is the storefront's Idempotency-Key, if it sent one.
	IdempotencyKey string
	// KlarnaAccount, when set, is the account to use (a charge's fallback
	// runs at the charge's account); otherwise purchase_country decides.
	KlarnaAccount string

	// first, when set, is the caller's work in the transaction that first
	// records the session (a charge records the answer that called for its
	// fallback there); link, in the one that records the HPP session (a
	// charge links its fallback session there).
	first, link *sessionLink
	// atOnce, when set (with first and link), is their two steps as one:
	// Klarna is asked for both sessions before anything is written, and
	// when it makes both, the session and atOnce are one transaction
	// (createdAtOnce; a charge records Klarna's answer and links the session
	// with one write of the charge), whose done stands for first's and
	// link's. When Klarna makes only the KP session, first and link run as
	// without it.
	atOnce *sessionLink
}

// sessionLink is work a caller of CreateSession does in the transaction that
// records the HPP session, so that the session's last step and the caller's
// next one are one commit: on disk both or neither. fn reports whether it
// wrote; false (nothing written, e.g. the caller's lease was lost) still
// records the session. done tells the caller that a transaction that ran fn
// and wrote has committed; when it is false (the session existed already,
// fn found nothing to do, or the commit failed) the caller does its step
// itself.
type sessionLink struct {
	fn   func(tx store.Tx, sess *core.Session) (bool, error)
	done bool
}

// Validate checks the request before any Klarna call.
func (r *SessionRequest) Validate() error {
	if err := r.Purchase.Validate(); err != nil {
		return err
	}
	if r.PlaceOrderMode != "" && !core.ValidMode(r.PlaceOrderMode) {
		return core.Invalid("place_order_mode", "must be NONE, PLACE_ORDER or CAPTURE_ORDER")
	}
	switch r.Integration {
	case "", core.IntegrationHPP:
		if err := r.ReturnURLs.Validate("return_urls"); err != nil {
			return err
		}
	case core.IntegrationSDK:
		if r.PlaceOrderMode != "" && r.PlaceOrderMode != core.ModeNone {
			return core.Invalid("place_order_mode", "must be NONE with integration sdk (hppd places the order)")
		}
	default:
		return core.Invalid("integration", "must be hpp or sdk")
	}
	if len(r.CustomerToken) > 255 {
		return core.Invalid("customer_token", "is longer than 255 characters")
	}
	return nil
}

// MerchantURLs builds the HPP merchant_urls of session id with callback secret.
func MerchantURLs(publicURL, id, secret string) *klarna.HPPMerchantURLs {
	base := publicURL + "/shopper/" + url.PathEscape(id) + "/"
	const hint = "?hppId={{session_id}}"
	return &klarna.HPPMerchantURLs{
		Success:      base + "success" + hint,
		Failure:      base + "failure" + hint,
		Cancel:       base + "cancel" + hint,
		Back:         base + "back" + hint,
		Error:        base + "error" + hint,
		StatusUpdate: publicURL + "/klarna/hpp/" + url.PathEscape(id) + "/status?secret=" + url.QueryEscape(secret) + "&hppId={{session_id}}",
	}
}

// CreateSession creates the KP session and, for the hosted page, the HPP session
// on top of it. The session is recorded as soon as the KP session exists, so a
// failing HPP step leaves a failed session naming the KP session, not an orphan.
//
// With an Idempotency-Key the session id derives from the key: a retry after
// hppd died mid-request finds the session and finishes its creation instead of
// making a second KP session.
func (s *Service) CreateSession(ctx context.Context, storefront string, req SessionRequest) (*core.Session, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if req.CustomerToken != "" {
		// The recovery flow links the purchase to a token: only to a token
		// this storefront may use.
		if err := s.checkTokenOwner(storefront, req.CustomerToken); err != nil {
			return nil, err
		}
	}
	id := newID("ses_")
	if req.IdempotencyKey != "" {
		var err error
		id, err = s.keyedID("ses_", storefront, req.IdempotencyKey, func(id string) (bool, error) {
			_, err := s.session(id)
			if core.IsNotFound(err) {
				return false, nil
			}
			return err == nil, err
		})
		if err != nil {
			return nil, err
		}
	}
	// While this request creates the session, its lease createClaim(id)
	// tells the job runner (of any process) that a missing HPP id is work
	// in progress, not an interrupted start. A new session takes it in the
	// transaction that first writes it, an interrupted one before it
	// resumes; the transaction that records the HPP session ends it.
	if existing, err := s.session(id); err == nil {
		if existing.Status == core.SessionPending && existing.Integration == core.IntegrationHPP && existing.HPPSessionID == "" {
			lease, ok, err := s.acquire(createClaim(id))
			if err != nil {
				return nil, &core.Error{Code: core.CodeInternal, Message: "store session", Err: err}
			}
			if !ok {
				return nil, errCreationInProgress(id)
			}
			return s.attachHPP(ctx, existing, true, lease, req.link, nil)
		}
		return existing, nil
	} else if !core.IsNotFound(err) {
		return nil, err
	}

	account := req.KlarnaAccount
	if account == "" {
		var err error
		if account, err = s.route(storefront, req.Purchase.PurchaseCountry); err != nil {
			return nil, err
		}
	} else if !s.mayUse(storefront, account) {
		return nil, core.Invalid("purchase_country", "the Klarna account %s of this purchase is not one this storefront may use", account)
	}
	if err := s.withinShare(storefront, account, shareCreate); err != nil {
		return nil, err
	}
	mode := req.PlaceOrderMode
	if mode == "" {
		mode = s.cfg.DefaultMode
	}
	integration := req.Integration
	if integration == "" {
		integration = core.IntegrationHPP
	}
	kpReq := kpSessionRequest(&req.Purchase, req.CustomerToken)
	var authHash []byte
	if integration == core.IntegrationSDK {
		// Klarna's authorization callback brings the token even when the
		// shopper's browser never reports back (FACTS 8.3).
		var secret string
		secret, authHash = NewSecret()
		kpReq.MerchantURLs = &klarna.KPMerchantURLs{Authorization: AuthorizationURL(s.cfg.PublicURL, id, secret)}
	}
	kpReq.MerchantReference1, kpReq.MerchantReference2 = withSessionRef(kpReq.MerchantReference1, kpReq.MerchantReference2, id)
	kp, err := s.klarnaFor(account).CreateKPSession(ctx, kpReq)
	if err != nil {
		return nil, upstream("create KP session", err)
	}
	now := s.now()
	sess := &core.Session{
		ID:             id,
		Storefront:     storefront,
		ChargeID:       req.ChargeID,
		KlarnaAccount:  account,
		Integration:    integration,
		PlaceOrderMode: mode,
		Status:         core.SessionPending,
		CustomerToken:  req.CustomerToken,
		Purchase:       req.Purchase,
		ReturnURLs:     req.ReturnURLs,
		KPSessionID:    kp.SessionID,
		CreatedAt:      now,
		UpdatedAt:      now,
		ExpiresAt:      now.Add(48 * time.Hour),
		CheckAt:        now.Add(s.cfg.Policy.StaleAfter),
		History:        []core.Change{{At: now, To: string(core.SessionPending), Source: core.SourceAPI, Reason: "KP session created"}},
	}
	if integration == core.IntegrationSDK {
		sess.ClientToken = kp.ClientToken
		sess.SecretHash = authHash
		// The poller re-reads the KP session after the stale period: its
		// authorization_token places the order should neither the
		// storefront nor the authorization callback bring it.
	}
	var made *hppMade
	if req.atOnce != nil && integration == core.IntegrationHPP {
		// A fallback's first try: both Klarna sessions first, then one
		// commit (createdAtOnce). Should Klarna not make the HPP session,
		// the KP session is recorded as in any creation, and its retry
		// finishes it.
		m := s.createHPP(ctx, sess)
		if m.err == nil {
			return s.createdAtOnce(ctx, sess, &m, req)
		}
		made = &m
	}
	var lease core.Lease
	firstDone := false
	err = s.db.Update(func(tx store.Tx) error {
		if _, err := tx.Session(id); err == nil {
			return store.ErrLeaseHeld // another request made it meanwhile
		} else if !core.IsNotFound(err) {
			return err
		}
		if integration != core.IntegrationSDK {
			var err error
			if lease, err = tx.AcquireLease(createClaim(id), s.cfg.Owner, now, s.cfg.LeaseTTL); err != nil {
				return err
			}
		}
		if err := tx.PutSession(sess); err != nil {
			return err
		}
		firstDone = false
		if req.first != nil {
			var err error
			firstDone, err = req.first.fn(tx, sess)
			return err
		}
		return nil
	})
	if err == nil && req.first != nil {
		req.first.done = firstDone
	}
	if errors.Is(err, store.ErrLeaseHeld) {
		return nil, errCreationInProgress(id)
	}
	if err != nil {
		return nil, &core.Error{Code: core.CodeInternal, Message: "store session", Err: fmt.Errorf("store session %s (KP session created): %w", id, err)}
	}
	if integration == core.IntegrationSDK {
		s.logger(ctx).Info("session created", "session_id", sess.ID, "storefront", storefront, "integration", integration)
		return sess, nil
	}
	return s.attachHPP(ctx, sess, req.IdempotencyKey != "", lease, req.link, made)
}

// createdAtOnce records a session whose KP and HPP sessions Klarna has both
// made, in one transaction with the caller's atOnce work (its first and
// link as one step): a fallback purchase's second and last commit (the
// charge's answer, the session, the link and the storefront's answer).
//
// No creation lease is needed: until this commit nothing of the session is
// on file, so no job runner can take it for an interrupted start. A crash
// before the commit leaves what a crash before the KP session's record
// always left (a charge pending under its safety job, which resends the
// same token order attempt and gets Klarna's replayed answer), plus two
// Klarna sessions nobody was sent to. When the session was recorded
// meanwhile by another request, or the transaction fails, the HPP session
// made here is disabled at Klarna (nobody will hand it out) and the caller
// goes on as when its first transaction does not commit.
func (s *Service) createdAtOnce(ctx context.Context, sess *core.Session, made *hppMade, req SessionRequest) (*core.Session, error) {
	now := s.now()
	var out *core.Session
	done := false
	err := s.db.Update(func(tx store.Tx) error {
		done = false
		if _, err := tx.Session(sess.ID); err == nil {
			return store.ErrLeaseHeld // another request made it meanwhile
		} else if !core.IsNotFound(err) {
			return err
		}
		cur := *sess
		cur.History = slices.Clone(sess.History)
		s.withHPP(&cur, made, now)
		if err := tx.PutSession(&cur); err != nil {
			return err
		}
		var err error
		if done, err = req.atOnce.fn(tx, &cur); err != nil {
			return err
		}
		out = &cur
		return nil
	})
	if err != nil {
		kl := s.klarnaFor(sess.KlarnaAccount)
		if derr := kl.DisableHPPSessionAt(ctx, made.hs.SessionID, made.hs.SessionURL); derr != nil {
			s.logger(ctx).Warn("could not disable an HPP session whose session was not recorded", "session_id", sess.ID, "hpp_session_id", made.hs.SessionID, "err", derr)
		}
		if errors.Is(err, store.ErrLeaseHeld) {
			return nil, errCreationInProgress(sess.ID)
		}
		return nil, &core.Error{Code: core.CodeInternal, Message: "store session", Err: fmt.Errorf("store session %s (KP and HPP sessions created): %w", sess.ID, err)}
	}
	req.atOnce.done = done
	if req.first != nil {
		req.first.done = done
	}
	if req.link != nil {
		req.link.done = done
	}
	s.logger(ctx).Info("session created", "session_id", out.ID, "storefront", out.Storefront, "integration", out.Integration, "mode", out.PlaceOrderMode, "hpp_session_id", out.HPPSessionID)
	return out, nil
}

// attachHPP creates the HPP session on top of a recorded session's KP session,
// with a fresh callback secret, and records it. On failure the session is
// failed, naming the step, unless the failure was transient and the request
// carried an Idempotency-Key (resumable): then the session stays pending, a
// retry with the same key finishes it on the same KP session, and without a
// retry the job runner gives it up after the stale period.
//
// The caller holds the creation's lease; the transaction that records the
// HPP session ends it, and a failure ends it on the way out. link (may be
// nil) runs in that transaction.
func (s *Service) attachHPP(ctx context.Context, sess *core.Session, resumable bool, lease core.Lease, link *sessionLink, made *hppMade) (*core.Session, error) {
	log := s.logger(ctx).With("session_id", sess.ID, "storefront", sess.Storefront)
	recorded := false
	defer func() {
		if !recorded {
			s.releaseLease(createClaim(sess.ID), lease)
		}
	}()
	if made == nil {
		m := s.createHPP(ctx, sess)
		made = &m
	}
	kl := s.klarnaFor(sess.KlarnaAccount)
	hs, err := made.hs, made.err
	if err != nil {
		uerr := upstream("create HPP session", err)
		if resumable && klarna.IsTransient(err) {
			log.Warn("HPP session not created yet; a retry with the same Idempotency-Key finishes it", "err", uerr)
			return nil, &core.Error{Code: core.ErrorCodeOf(uerr), Message: uerr.(*core.Error).Message + " (session " + sess.ID + " is kept: retry with the same Idempotency-Key)", Err: err}
		}
		now := s.now()
		if ferr := s.update(sess.ID, func(tx store.Tx, cur *core.Session) (bool, error) {
			return cur.Fail(kerr(err), core.SourceAPI, "HPP session could not be created", now), nil
		}); ferr != nil {
			// The job runner gives the session up later (no HPP id).
			log.Error("record the failed HPP step", "err", ferr)
		}
		log.Warn("HPP session not created; session failed", "kp_session_id", sess.KPSessionID, "err", uerr)
		return nil, &core.Error{Code: core.ErrorCodeOf(uerr), Message: uerr.(*core.Error).Message + " (session " + sess.ID + " recorded as failed)", Err: err}
	}
	var out *core.Session
	linked := false
	now := s.now()
	err = s.update(sess.ID, func(tx store.Tx, cur *core.Session) (bool, error) {
		linked = false
		if err := tx.ReleaseLease(createClaim(sess.ID), lease); err != nil {
			return false, err
		}
		if cur.Status != core.SessionPending {
			// Given up meanwhile (cannot happen while this request holds the
			// create claim); keep the verdict and say so.
			out = cur
			return false, nil
		}
		s.withHPP(cur, made, now)
		out = cur
		if link != nil {
			var err error
			if linked, err = link.fn(tx, cur); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, &core.Error{Code: core.CodeInternal, Message: "store session", Err: err}
	}
	recorded = true
	if link != nil {
		link.done = linked
	}
	if out.HPPSessionID != hs.SessionID {
		// Nobody will hand out this page: disable it at Klarna.
		if derr := kl.DisableHPPSessionAt(ctx, hs.SessionID, hs.SessionURL); derr != nil {
			log.Warn("could not disable an HPP session created for a session given up meanwhile", "hpp_session_id", hs.SessionID, "err", derr)
		}
		return out, nil
	}
	log.Info("session created", "integration", out.Integration, "mode", out.PlaceOrderMode, "hpp_session_id", hs.SessionID)
	return out, nil
}

// hppMade is Klarna's answer to one HPP session creation, with the hash of
// the callback secret the session was made with.
type hppMade struct {
	hs   *klarna.HPPSession
	hash []byte
	err  error
}

// createHPP asks Klarna for the HPP session on top of sess's KP session,
// with a fresh callback secret in its merchant URLs.
func (s *Service) createHPP(ctx context.Context, sess *core.Session) hppMade {
	secret, hash := NewSecret()
	kl := s.klarnaFor(sess.KlarnaAccount)
	hs, err := kl.CreateHPPSession(ctx, &klarna.HPPSessionRequest{
		PaymentSessionURL: kl.PaymentSessionURL(sess.KPSessionID),
		MerchantURLs:      MerchantURLs(s.cfg.PublicURL, sess.ID, secret),
		Options:           &klarna.HPPOptions{PlaceOrderMode: sess.PlaceOrderMode},
	})
	return hppMade{hs: hs, hash: hash, err: err}
}

// withHPP records the HPP session made on cur.
func (s *Service) withHPP(cur *core.Session, made *hppMade, now time.Time) {
	hs := made.hs
	cur.HPPSessionID = hs.SessionID
	cur.HPPSessionURL = hs.SessionURL
	cur.SecretHash = made.hash
	cur.RedirectURL = hs.RedirectURL
	cur.QRCodeURL = hs.QRCodeURL
	cur.DistributionURL = hs.DistributionURL
	if hs.ExpiresAt != nil {
		cur.ExpiresAt = hs.ExpiresAt.UTC()
	} else {
		cur.ExpiresAt = cur.CreatedAt.Add(47 * time.Hour)
	}
	cur.KlarnaStatus = core.KlarnaWaiting
	cur.History = append(cur.History, core.Change{At: now, From: string(cur.Status), To: string(cur.Status), KlarnaStatus: core.KlarnaWaiting, Source: core.SourceAPI, Reason: "HPP session created"})
	cur.CheckAt = now.Add(s.cfg.Policy.StaleAfter)
}

func (s *Service) session(id string) (*core.Session, error) {
	var out *core.Session
	err := s.db.View(func(tx store.Tx) error {
		var err error
		out, err = tx.Session(id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read session %s: %w", id, err)
	}
	return out, nil
}

// createClaim names the lease a session's creation holds.
func createClaim(id string) string { return "create/" + id }

// errCreationInProgress is the answer to a request that finds another
// holding the creation of its session: the same "in progress" answer as a
// key whose first request is still running, so storefronts retry it the
// same way.
func errCreationInProgress(id string) error {
	return core.Errorf(core.CodeConflict, "the creation of session %s is in progress in another request; retry with the same Idempotency-Key", id)
}

// errCreating: a request (of any process) is creating the session.
var errCreating = errors.New("session creation in progress")

// update applies fn to the stored session in one transaction; fn reports
// whether it changed anything and may add jobs or events through tx.
func (s *Service) update(id string, fn func(tx store.Tx, cur *core.Session) (bool, error)) error {
	if err := s.updateTx(id, fn); err != nil {
		return fmt.Errorf("update session %s: %w", id, err)
	}
	return nil
}

func (s *Service) updateTx(id string, fn func(tx store.Tx, cur *core.Session) (bool, error)) error {
	return s.db.Update(func(tx store.Tx) error {
		cur, err := tx.Session(id)
		if err != nil {
			return err
		}
		before := cur.Status
		changed, err := fn(tx, cur)
		if err != nil || !changed {
			return err
		}
		if err := tx.PutSession(cur); err != nil {
			return err
		}
		return s.sessionChanged(tx, cur, before)
	})
}

// observeIn applies obs to cur inside tx: the session moves (Observe), its
// jobs are written, and when it changed it is stored with its event and its
// charge's move (sessionChanged). woke reports whether jobs were added.
func (s *Service) observeIn(tx store.Tx, cur *core.Session, obs core.Observation, now time.Time) (woke bool, err error) {
	before := cur.Status
	changed, jobs := cur.Observe(obs, now, s.cfg.Policy)
	if !changed {
		return false, nil
	}
	if err := s.addJobs(tx, cur, jobs); err != nil {
		return false, err
	}
	// An observation pushes CheckAt back: the due entry may stay where it
	// is, and the poller re-files it if it comes due first (store.KeepDue).
	if err := store.PutSessionKeepDue(tx, cur); err != nil {
		return false, err
	}
	return len(jobs) > 0, s.sessionChanged(tx, cur, before)
}

// sessionChanged runs inside the transaction of a session change: it emits the
// storefront event and moves a linked charge.
func (s *Service) sessionChanged(tx store.Tx, cur *core.Session, before core.SessionStatus) error {
	if cur.Status == before {
		return nil
	}
	now := s.now()
	if err := s.emitSession(tx, cur, now); err != nil {
		return err
	}
	if cur.ChargeID == "" {
		return nil
	}
	c, err := tx.Charge(cur.ChargeID)
	if err != nil {
		if core.IsNotFound(err) {
			return nil
		}
		return err
	}
	return s.writeCharge(tx, c, c.SessionEnded(cur, now), now)
}

func (s *Service) emitSession(tx store.Tx, cur *core.Session, now time.Time) error {
	var ev string
	switch cur.Status {
	case core.SessionAuthorized:
		ev = "session.authorized"
	case core.SessionOrderPlaced:
		ev = "session.order_placed"
	case core.SessionCancelled:
		ev = "session.cancelled"
	case core.SessionExpired:
		ev = "session.expired"
	case core.SessionFailed:
		ev = "session.failed"
	default:
		return nil
	}
	return s.sessionEvent(tx, cur, ev, now)
}

// sessionEvent emits event ev about the stored session cur inside tx. The
// event gets the session's next sequence number, stored with the session in
// the same transaction, so a storefront can order the events of one session
// whatever order they arrive in. The number counts even when the storefront
// has no endpoint, so it always means "the n-th event of this session".
func (s *Service) sessionEvent(tx store.Tx, cur *core.Session, ev string, now time.Time) error {
	cur.NextEvent()
	if err := tx.PutSession(cur); err != nil {
		return err
	}
	return s.writeSessionEvent(tx, cur, ev, now)
}

// chargeEvent is sessionEvent for a stored charge.
func (s *Service) chargeEvent(tx store.Tx, c *core.Charge, ev string, now time.Time) error {
	c.NextEvent()
	if err := tx.PutCharge(c); err != nil {
		return err
	}
	return s.writeChargeEvent(tx, c, ev, now)
}

// writeSessionEvent writes the outbox job of a session event in tx; the
// Emitter builds it (none without an Emitter).
func (s *Service) writeSessionEvent(tx store.Tx, cur *core.Session, eventType string, now time.Time) error {
	if s.cfg.Emitter == nil {
		return nil
	}
	j, err := s.cfg.Emitter.SessionEvent(cur, eventType, now)
	if err != nil || j == nil {
		return err
	}
	_, err = tx.AddJob(j)
	return err
}

// writeChargeEvent writes the outbox job of a charge event in tx, with the
// charge's fallback session as tx has it.
func (s *Service) writeChargeEvent(tx store.Tx, c *core.Charge, eventType string, now time.Time) error {
	if s.cfg.Emitter == nil {
		return nil
	}
	var sess *core.Session
	if c.SessionID != "" {
		got, err := tx.Session(c.SessionID)
		switch {
		case err == nil:
			sess = got
		case !core.IsNotFound(err):
			return fmt.Errorf("emit %s for charge %s: %w", eventType, c.ID, err)
		}
	}
	j, err := s.cfg.Emitter.ChargeEvent(c, sess, eventType, now)
	if err != nil || j == nil {
		return err
	}
	_, err = tx.AddJob(j)
	return err
}

// Session returns a storefront's session; another storefront's is not found.
func (s *Service) Session(storefront, id string) (*core.Session, error) {
	out, err := s.session(id)
	if err != nil {
		return nil, err
	}
	if out.Storefront != storefront {
		return nil, core.ErrNotFound
	}
	return out, nil
}

// Sessions lists a storefront's sessions, newest first.
func (s *Service) Sessions(q core.ListQuery) ([]*core.Session, string, error) {
	var out []*core.Session
	var next string
	err := s.db.View(func(tx store.Tx) error {
		var err error
		out, next, err = tx.ListSessions(q)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list sessions of %s: %w", q.Storefront, err)
	}
	return out, next, nil
}

// CancelSession disables a pending session at Klarna and marks it cancelled. A
// session that completed meanwhile is returned as it is, not cancelled.
func (s *Service) CancelSession(ctx context.Context, storefront, id string) (*core.Session, error) {
	if _, err := s.Session(storefront, id); err != nil {
		return nil, err
	}
	var jobs []core.Job
	err := s.update(id, func(tx store.Tx, cur *core.Session) (bool, error) {
		jobs = cur.RequestDisable(core.DisableCancel, core.SourceAPI, s.now())
		for i := range jobs {
			if _, err := tx.AddJob(&jobs[i]); err != nil {
				return false, err
			}
		}
		return len(jobs) > 0, nil
	})
	if err != nil {
		return nil, err
	}
	// Run the disable now so the answer says how it ended; if Klarna is
	// unreachable the job stays and the poller finishes it.
	if err := s.RunJob(ctx, core.DisableJobID(id)); err != nil {
		s.logger(ctx).Warn("disable at klarna not done yet; will retry", "session_id", id, "err", err)
	}
	return s.Session(storefront, id)
}

// Authorize takes the authorization token a storefront got from Klarna's JS
// widget (integration sdk) and places the order with the same exactly-once
// machinery as the hosted page.
func (s *Service) Authorize(ctx context.Context, storefront, id, authToken string) (*core.Session, error) {
	if authToken == "" {
		return nil, core.Invalid("authorization_token", "is required")
	}
	if len(authToken) > 1024 {
		return nil, core.Invalid("authorization_token", "is too long")
	}
	cur, err := s.Session(storefront, id)
	if err != nil {
		return nil, err
	}
	if cur.Integration != core.IntegrationSDK {
		return nil, core.Errorf(core.CodeConflict, "session %s uses the hosted payment page; its authorization comes from Klarna", id)
	}
	if cur.Status != core.SessionPending {
		if !cur.AuthorizedWith(authToken) {
			return nil, core.Errorf(core.CodeConflict, "session %s is already %s with another authorization", id, cur.Status)
		}
		return cur, nil
	}
	err = s.update(id, func(tx store.Tx, cur *core.Session) (bool, error) {
		changed, jobs := cur.Observe(core.Observation{
			Source: core.SourceAPI, Authoritative: true, KlarnaStatus: core.KlarnaCompleted, AuthorizationToken: authToken,
		}, s.now(), s.cfg.Policy)
		return changed, s.addJobs(tx, cur, jobs)
	})
	if err != nil {
		return nil, err
	}
	if err := s.RunJob(ctx, core.PlaceOrderJobID(id)); err != nil {
		s.logger(ctx).Warn("place order not done yet; will retry", "session_id", id, "err", err)
	}
	return s.Session(storefront, id)
}

// DeclineSDK records that the shopper was declined in Klarna's widget.
func (s *Service) DeclineSDK(storefront, id, reason string) (*core.Session, error) {
	cur, err := s.Session(storefront, id)
	if err != nil {
		return nil, err
	}
	if cur.Integration != core.IntegrationSDK {
		return nil, core.Errorf(core.CodeConflict, "session %s uses the hosted payment page", id)
	}
	if reason == "" {
		reason = "declined in klarna's widget"
	}
	err = s.update(id, func(tx store.Tx, cur *core.Session) (bool, error) {
		if cur.Status != core.SessionPending {
			return false, nil
		}
		return cur.Fail(&core.KlarnaError{Code: "DECLINED", Messages: []string{reason}}, core.SourceAPI, reason, s.now()), nil
	})
	if err != nil {
		return nil, err
	}
	return s.Session(storefront, id)
}

// addJobs writes jobs produced by a transition; a place_order job gets its
// exact request body and idempotency key now, before any attempt.
func (s *Service) addJobs(tx store.Tx, cur *core.Session, jobs []core.Job) error {
	for i := range jobs {
		j := &jobs[i]
		if j.Kind == core.JobPlaceOrder {
			autoCapture := false
			if cur.ChargeID != "" {
				if c, err := tx.Charge(cur.ChargeID); err == nil {
					autoCapture = c.AutoCapture
				}
			}
			// A fresh secret for the order's fraud notification; its hash
			// is kept only if this transaction writes the job (one
			// place_order job per session, sent byte for byte).
			secret, hash := NewSecret()
			req := orderRequest(&cur.Purchase, autoCapture)
			req.MerchantReference1, req.MerchantReference2 = withSessionRef(req.MerchantReference1, req.MerchantReference2, cur.ID)
			req.MerchantURLs = &klarna.KPMerchantURLs{Notification: NotificationURL(s.cfg.PublicURL, cur.ID, secret)}
			body, err := marshal(req)
			if err != nil {
				return err
			}
			j.Request = body
			j.IdempotencyKey = "hppd-order-" + cur.ID
			added, err := tx.AddJob(j)
			if err != nil {
				return err
			}
			if added {
				cur.NotifySecretHash = hash
			}
			continue
		}
		if _, err := tx.AddJob(j); err != nil {
			return err
		}
	}
	return nil
}

func marshal(v any) ([]byte, error) { return json.Marshal(v) }
