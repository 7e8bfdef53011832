package hpp

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
)

// ChargeRequest is a storefront's request to charge a saved customer token.
type ChargeRequest struct {
	CustomerToken   string
	CustomerPresent *bool
	Purchase        core.Purchase
	AutoCapture     bool
	ReturnURLs      core.ReturnURLs
	// Integration of the fallback purchase: hpp (default) or sdk.
	Integration string
	// IdempotencyKey is the storefront's Idempotency-Key; the charge id
	// derives from it, so a retry after hppd died finds the charge instead of
	// charging the token again.
	IdempotencyKey string
	// Key is the request's claim of that key (ClaimKey, or PrepareKey: then
	// the transaction that records the charge takes the key) and Answer
	// renders the request's success answer from the charge and its fallback
	// session. With both, a fallback started by the request records the
	// answer in the transaction that links the session (one commit less);
	// Key.Answered then returns it, for the caller to send as it is.
	Key    *KeyClaim
	Answer func(*core.Charge, *core.Session) (status int, body []byte, err error)
}

// Validate checks a charge request before any Klarna call.
func (r *ChargeRequest) Validate() error {
	if r.CustomerToken == "" {
		return core.Invalid("customer_token", "is required")
	}
	if len(r.CustomerToken) > 255 {
		return core.Invalid("customer_token", "is longer than 255 characters")
	}
	if r.CustomerPresent == nil {
		return core.Invalid("customer_present", "is required")
	}
	if err := r.Purchase.Validate(); err != nil {
		return err
	}
	if r.Purchase.OrderAmount < 1 {
		return core.Invalid("order_amount", "must be at least 1")
	}
	// The customer token API is stricter than KP in two places.
	for i, l := range r.Purchase.OrderLines {
		if len(l.MerchantData) > maxTokenLineMerchantData {
			return core.Invalid(fmt.Sprintf("order_lines[%d].merchant_data", i), "is longer than %d characters (the customer token API's limit)", maxTokenLineMerchantData)
		}
	}
	if a := r.Purchase.ShippingAddress; a != nil && a.Phone != "" && utf8.RuneCountInString(a.Phone) < 5 {
		return core.Invalid("shipping_address.phone", "must be at least 5 characters (the customer token API's limit)")
	}
	if r.Integration != "" && r.Integration != core.IntegrationHPP && r.Integration != core.IntegrationSDK {
		return core.Invalid("integration", "must be hpp or sdk")
	}
	if *r.CustomerPresent && r.Integration != core.IntegrationSDK {
		if err := r.ReturnURLs.Validate("return_urls"); err != nil {
			return err
		}
	} else if r.ReturnURLs != (core.ReturnURLs{}) {
		if err := r.ReturnURLs.Validate("return_urls"); err != nil {
			return err
		}
	}
	return nil
}

// maxTokenLineMerchantData is order_line.merchant_data's maxLength in the
// customer token API's OpenAPI document (KP allows 1024); that document also
// gives address.phone a minLength of 5.
const maxTokenLineMerchantData = 255

// safetyDelay: a charge whose request died before its outcome was recorded is
// resent (same key) by its safety job this long after it started.
const safetyDelay = time.Minute

// fallbackResumeDelay: a charge left in fallback without its session (hppd
// stopped in between) gets the session from a job this long after.
const fallbackResumeDelay = 10 * time.Second

// CreateCharge charges a customer token and, when Klarna refuses, does what
// Klarna's recovery guide says (see core's charge state machine). The charge
// and a safety job are committed before the first call, so a crash at any
// point is finished by the job with the same idempotency key.
func (s *Service) CreateCharge(ctx context.Context, storefront string, req ChargeRequest) (*core.Charge, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	body, err := marshal(tokenOrderRequest(&req.Purchase, req.AutoCapture))
	if err != nil {
		return nil, fmt.Errorf("encode token order: %w", err)
	}
	if err := s.checkTokenOwner(storefront, req.CustomerToken); err != nil {
		return nil, err
	}
	account, err := s.tokenAccount(storefront, req.CustomerToken, req.Purchase.PurchaseCountry)
	if err != nil {
		return nil, err
	}
	if err := s.withinShare(storefront, account, shareTokenOrder); err != nil {
		return nil, err
	}
	now := s.now()
	id := newID("chg_")
	if req.IdempotencyKey != "" {
		id, err = s.keyedID("chg_", storefront, req.IdempotencyKey, func(id string) (bool, error) {
			_, err := s.charge(id)
			if core.IsNotFound(err) {
				return false, nil
			}
			return err == nil, err
		})
		if err != nil {
			return nil, err
		}
	}
	c := &core.Charge{
		ID:              id,
		Storefront:      storefront,
		KlarnaAccount:   account,
		CustomerToken:   req.CustomerToken,
		CustomerPresent: *req.CustomerPresent,
		Purchase:        req.Purchase,
		AutoCapture:     req.AutoCapture,
		ReturnURLs:      req.ReturnURLs,
		Integration:     req.Integration,
		Status:          core.ChargePending,
		Request:         body,
		CreatedAt:       now,
		UpdatedAt:       now,
		History:         []core.Change{{At: now, To: string(core.ChargePending), Source: core.SourceAPI, Reason: "charge requested"}},
	}
	c.NextTry()
	safety := c.SafetyJob(now, s.chargePolicy())
	// The request makes the first attempt under the safety job's lease,
	// taken in the transaction that writes the job.
	safety.Lease = core.Lease{Owner: s.cfg.Owner, Token: 1, Until: now.Add(s.cfg.LeaseTTL)}
	var existing *core.Charge
	if err := s.db.Update(func(tx store.Tx) error {
		existing = nil
		// A prepared Idempotency-Key is taken in this transaction: the
		// claim, the charge and its safety job are one commit.
		if err := s.claimPrepared(tx, req.Key); err != nil {
			return err
		}
		if cur, err := tx.Charge(c.ID); err == nil {
			existing = cur // a retry of a request whose answer was lost
			return nil
		} else if !core.IsNotFound(err) {
			return err
		}
		if err := s.claimToken(tx, storefront, c.CustomerToken); err != nil {
			return err
		}
		if err := tx.PutCharge(c); err != nil {
			return err
		}
		_, err := tx.AddJob(&safety)
		return err
	}); err != nil {
		if code := core.ErrorCodeOf(err); code == core.CodeNotFound || code == core.CodeConflict {
			return nil, err
		}
		return nil, &core.Error{Code: core.CodeInternal, Message: "store charge", Err: fmt.Errorf("store charge %s: %w", c.ID, err)}
	}
	req.Key.claimed()
	held := &safety
	if existing != nil {
		// A retry of a request whose answer was lost: carry on from where
		// the first attempt stopped.
		c, held = existing, nil
	}
	var ans *keyAnswer
	if req.Key != nil && req.Answer != nil {
		ans = &keyAnswer{key: req.Key, render: req.Answer}
	}
	return s.runCharge(ctx, c, held, ans)
}

// runCharge makes the charge's attempts inside a storefront request (a
// pending charge resends its current attempt with the same key; a decline
// with the customer present gets new attempts) and starts the fallback
// purchase when Klarna calls for it.
//
// Each attempt runs under the lease of the charge's safety job (held: the
// one the request's own transaction leased, nil: lease it now); when the
// job runner holds it, here or in another process, the job makes the
// attempt and the request answers with the charge as it is. ans (may be
// nil) goes to startFallback.
//
// An answer that calls for the fallback purchase is recorded in the
// transaction that first records the fallback session (fallbackWithAnswer),
// one commit instead of two, when Klarna creates the KP session at the
// first try; otherwise it is recorded on its own first, as any other answer.
func (s *Service) runCharge(ctx context.Context, c *core.Charge, held *core.Job, ans *keyAnswer) (*core.Charge, error) {
	log := s.logger(ctx).With("charge_id", c.ID, "storefront", c.Storefront)
	var fl core.Lease // the fallback's lease, when the outcome took it
	if c.Status == core.ChargePending {
		for job := held; ; job = nil {
			if job == nil {
				if job = s.leaseSafety(c); job == nil {
					break
				}
			}
			sent := s.sendTokenOrder(ctx, c, true)
			if callsForFallback(c, sent.answer) {
				if fc, err, merged := s.fallbackWithAnswer(ctx, c, job, sent, ans); merged {
					return s.fallbackStarted(ctx, c, fc, err)
				}
			}
			_, cerr := s.recordTokenOrder(c, job, sent, &fl)
			if cerr == nil {
				break
			}
			if ctx.Err() != nil || !errors.Is(cerr, errTryAgain) {
				log.Warn("charge outcome not known yet; the safety job will resend", "err", cerr)
				s.releaseJob(job)
				break
			}
			// The outcome completed the job; the new attempt has a new one.
			// A definitive decline with the customer present: a new attempt.
			select {
			case <-ctx.Done():
			case <-time.After(s.cfg.PresentRetryDelay):
			}
			if ctx.Err() != nil {
				break
			}
		}
	}
	cur, err := s.charge(c.ID)
	if err != nil {
		return nil, err
	}
	if cur.Status == core.ChargeFallback && cur.SessionID == "" {
		fc, err := s.startFallback(ctx, cur, cur.Integration, core.ReturnURLs{}, fl, ans)
		return s.fallbackStarted(ctx, c, fc, err)
	}
	if fl.Owner != "" {
		s.releaseLease(fallbackLock(c.ID), fl)
	}
	return cur, nil
}

// fallbackStarted is the request's answer once it tried to start the
// fallback purchase: the linked charge, or what the failure means.
func (s *Service) fallbackStarted(ctx context.Context, c, fc *core.Charge, err error) (*core.Charge, error) {
	if err == nil {
		return fc, nil
	}
	var later *RetryLater
	if errors.As(err, &later) {
		// The customer is here and Klarna did not answer in time: the
		// storefront retries with the same Idempotency-Key, which
		// resumes the fallback (the token is not charged again).
		return nil, err
	}
	// Klarna refused the fallback session: the charge failed; the
	// storefront may ask for the fallback again with POST
	// /v1/charges/{id}/fallback.
	s.logger(ctx).Warn("fallback session not created", "charge_id", c.ID, "storefront", c.Storefront, "err", err)
	return s.charge(c.ID)
}

// callsForFallback reports whether answer a, recorded on charge c, moves it
// to fallback without a session (core.Charge.Answered: "unavailable" with
// the customer present, for the charge's current attempt).
func callsForFallback(c *core.Charge, a core.TokenOrderAnswer) bool {
	return a.Attempt.Result == core.AttemptUnavailable && c.CustomerPresent && c.Status.AwaitsAnswer() &&
		a.Attempt.IdempotencyKey == c.AttemptKey && c.SessionID == ""
}

// errAnswerMoved: the charge or its job moved before the answer calling for
// the fallback could be recorded with the fallback session.
var errAnswerMoved = errors.New("the charge moved before its answer was recorded")

// fallbackWithAnswer records Klarna's answer sent (which calls for the
// fallback purchase) in the transaction that first records the fallback
// session, and goes on as startFallback. When Klarna makes the KP and the
// HPP session at the first try, that transaction also holds the HPP ids,
// the link and the request's answer (createdAtOnce): the request's last
// commit. When only the KP session was made, it records the KP session with
// the answer, and the HPP step is retried on it. merged is false when that
// transaction did not commit (Klarna refused or did not answer at the first
// try, the return URLs are invalid, or the charge or its job moved
// meanwhile): then nothing was recorded and the caller records the answer
// on its own. A KP session Klarna created for a commit that did not happen
// is left unused at Klarna, as when hppd dies before recording one; an HPP
// session is disabled.
//
// The merge is as safe as separate commits were: before it, the charge is
// pending under its safety job, which (after a crash) resends the same
// attempt with the same key and body, gets the same answer, and starts the
// fallback purchase from its resume job or the storefront's retry.
func (s *Service) fallbackWithAnswer(ctx context.Context, c *core.Charge, job *core.Job, sent tokenOrderSent, ans *keyAnswer) (fc *core.Charge, err error, merged bool) {
	if c.Integration != core.IntegrationSDK && c.ReturnURLs.Validate("return_urls") != nil {
		return nil, nil, false
	}
	before := *c
	var fl core.Lease // the fallback's lease, taken with the answer
	first := &sessionLink{fn: func(tx store.Tx, _ *core.Session) (bool, error) {
		cur := before
		fl = core.Lease{}
		st, err := s.answerIn(tx, &cur, job, sent, &fl)
		if err != nil {
			return false, err
		}
		if !st.Changed || fl.Owner == "" {
			return false, errAnswerMoved
		}
		return true, nil
	}}
	// With both Klarna sessions made at once, the answer and the link are
	// one step (createAndLink's atOnce): the charge goes from pending to in
	// fallback with its session in one write, with no resume job and no
	// fallback lease in between (nothing else can start this charge's
	// fallback while it is pending; the safety job's lease fences it).
	answered := func(tx store.Tx) (*core.Charge, core.ChargeStep, error) {
		cur, err := tx.Charge(c.ID)
		if err != nil {
			return nil, core.ChargeStep{}, err
		}
		st := cur.Answered(sent.answer, sent.at, s.chargePolicy())
		if !st.Changed || !st.Settled || cur.Status != core.ChargeFallback || cur.SessionID != "" {
			return nil, core.ChargeStep{}, errAnswerMoved
		}
		if err := tx.CompleteJob(job, sent.at); err != nil {
			return nil, core.ChargeStep{}, err
		}
		return cur, st, nil
	}
	fc, err = s.createAndLink(ctx, c, c.Integration, c.ReturnURLs, &fl, ans, first, answered)
	if !first.done && err != nil && !fallbackTransient(err) {
		// Refused at once (Klarna, or the request): record the answer,
		// then what the refusal means, as startFallback would, without
		// asking Klarna again.
		var held core.Lease
		if _, rerr := s.recordTokenOrder(c, job, sent, &held); rerr != nil {
			return nil, nil, false
		}
		if held.Owner != "" {
			defer s.releaseLease(fallbackLock(c.ID), held)
		}
		return nil, s.fallbackFailed(ctx, c, err), true
	}
	if !first.done {
		return nil, nil, false
	}
	if err != nil {
		return nil, s.fallbackFailed(ctx, c, err), true
	}
	return fc, nil, true
}

// leaseSafety leases the safety job of pending charge c to this request,
// writing it when the charge has none (left so by an older hppd); nil when
// another holder has it.
func (s *Service) leaseSafety(c *core.Charge) *core.Job {
	id := core.RetryChargeJobID(c.ID, 0)
	var j *core.Job
	err := s.db.Batch(func(tx store.Tx) error {
		now := s.now()
		var err error
		if j, err = tx.ClaimJob(id, s.cfg.Owner, now, s.cfg.LeaseTTL); !core.IsNotFound(err) {
			return err
		}
		sj := c.SafetyJob(now, s.chargePolicy())
		sj.Lease = core.Lease{Owner: s.cfg.Owner, Token: 1, Until: now.Add(s.cfg.LeaseTTL)}
		j = &sj
		_, err = tx.AddJob(j)
		return err
	})
	if err != nil {
		if !errors.Is(err, store.ErrLeaseHeld) {
			s.log.Error("lease the safety job of a charge", "charge_id", c.ID, "err", err)
		}
		return nil
	}
	return j
}

// errTryAgain: the attempt was declined and another attempt is due now.
var errTryAgain = errors.New("declined; trying again")

// tokenOrder sends the charge's current attempt (the client resends it with
// the same key while no definitive answer comes) and commits what the answer
// does to the charge (recordTokenOrder).
func (s *Service) tokenOrder(ctx context.Context, c *core.Charge, job *core.Job, inRequest bool, fallback *core.Lease) (*klarna.Order, error) {
	return s.recordTokenOrder(c, job, s.sendTokenOrder(ctx, c, inRequest), fallback)
}

// tokenOrderSent is Klarna's answer to a token order attempt.
type tokenOrderSent struct {
	order  *klarna.Order
	err    error
	answer core.TokenOrderAnswer
	at     time.Time
}

// sendTokenOrder sends the charge's current attempt.
func (s *Service) sendTokenOrder(ctx context.Context, c *core.Charge, inRequest bool) tokenOrderSent {
	// The client resends a keyed write on transient failures itself.
	order, err := s.klarnaFor(c.KlarnaAccount).CreateTokenOrderRaw(ctx, c.CustomerToken, c.Request, c.AttemptKey)
	if klarna.IsUnusableAnswer(err) {
		// A 2xx hppd cannot use: the token may be charged. Like a lost
		// answer, the same attempt is resent with the same key (Klarna
		// replays its result); after core.UnusableLimit such answers the
		// 2xx is taken at its word: charged, its order id unknown.
		s.Stats.UnusableTokenOrder.Add(1)
		s.logger(ctx).Error("klarna answered the token order with a 2xx hppd cannot use; the token may be charged, outcome unknown",
			"charge_id", c.ID, "correlation_id", correlationID(err), "err", err)
	}
	now := s.now()
	return tokenOrderSent{order: order, err: err, answer: tokenOrderAnswer(c.AttemptKey, order, err, inRequest, now), at: now}
}

// recordTokenOrder commits what the answer sent does to the charge
// (answerIn). It returns errTryAgain when a new attempt should follow at
// once, another error when the outcome is still unknown. With fallback
// non-nil, an outcome that calls for the fallback purchase also takes the
// fallback's lease into *fallback, in the same transaction, for the request
// to start it at no extra commit.
func (s *Service) recordTokenOrder(c *core.Charge, job *core.Job, sent tokenOrderSent, fallback *core.Lease) (*klarna.Order, error) {
	var st core.ChargeStep
	uerr := s.db.Update(func(tx store.Tx) error {
		var e error
		st, e = s.answerIn(tx, c, job, sent, fallback)
		return e
	})
	err := sent.err
	if uerr != nil {
		if fallback != nil {
			*fallback = core.Lease{}
		}
		// Not recorded: the attempt's job resends it with the same key.
		if err != nil {
			return nil, fmt.Errorf("record the answer to the token order of charge %s: %w (the answer: %w)", c.ID, uerr, err)
		}
		return nil, fmt.Errorf("record the answer to the token order of charge %s: %w", c.ID, uerr)
	}
	if !st.Settled {
		return nil, fmt.Errorf("token order of charge %s: outcome unknown: %w", c.ID, err)
	}
	if st.Again {
		return nil, errTryAgain
	}
	return sent.order, nil
}

// answerIn applies the answer sent to the stored charge inside tx
// (core.Charge.Answered) with, once the attempt is settled, the completion
// of job under its lease; *c becomes the charge as written when the answer
// settled it. With fallback non-nil, see recordTokenOrder.
func (s *Service) answerIn(tx store.Tx, c *core.Charge, job *core.Job, sent tokenOrderSent, fallback *core.Lease) (core.ChargeStep, error) {
	now := sent.at
	cur, e := tx.Charge(c.ID)
	if e != nil {
		return core.ChargeStep{}, e
	}
	st := cur.Answered(sent.answer, now, s.chargePolicy())
	if st.Settled {
		// Settled now, or recorded before by someone else: the job
		// that sent the attempt is done. A result commits only under
		// the job's lease; an answer recorded before needs none (its
		// recorder completed the job).
		if e := tx.CompleteJob(job, now); e != nil && (st.Changed || !errors.Is(e, store.ErrLeaseLost)) {
			return st, e
		}
		if st.Changed {
			*c = *cur
		}
	}
	if e := s.writeCharge(tx, cur, st, now); e != nil {
		return st, e
	}
	if fallback != nil && st.Changed && cur.Status == core.ChargeFallback && cur.SessionID == "" {
		l, le := tx.AcquireLease(fallbackLock(cur.ID), s.cfg.Owner, now, s.cfg.LeaseTTL)
		switch {
		case le == nil:
			*fallback = l
		case !errors.Is(le, store.ErrLeaseHeld): // held: startFallback waits for it
			return st, le
		}
	}
	return st, nil
}

// tokenOrderAnswer classifies Klarna's answer to the token order attempt
// with key for core.Charge.Answered.
func tokenOrderAnswer(key string, order *klarna.Order, err error, inRequest bool, now time.Time) core.TokenOrderAnswer {
	a := core.TokenOrderAnswer{Attempt: attemptOf(key, err, now), InRequest: inRequest}
	switch a.Attempt.Result {
	case core.AttemptCharged:
		a.OrderID, a.FraudStatus = order.OrderID, order.FraudStatus
	case core.AttemptDeclined, core.AttemptUnavailable, core.AttemptFinal:
		a.Error = kerr(err)
	}
	return a
}

func attemptOf(key string, err error, now time.Time) core.Attempt {
	a := core.Attempt{At: now, IdempotencyKey: key}
	var ke *klarna.Error
	if errors.As(err, &ke) {
		a.HTTPStatus, a.ErrorCode, a.CorrelationID = ke.HTTPStatus, ke.Code, ke.CorrelationID
	}
	switch {
	case err == nil:
		a.Result = core.AttemptCharged
	case klarna.IsUnusableAnswer(err):
		a.Result = core.AttemptTransient // outcome unknown: resend with the same key
	case klarna.IsRetryCharge(err):
		a.Result = core.AttemptDeclined
	case klarna.IsFallbackTrigger(err):
		a.Result = core.AttemptUnavailable
	case retryable(err):
		a.Result = core.AttemptTransient
	default:
		a.Result = core.AttemptFinal
	}
	return a
}

// chargePolicy is the charge state machine's policy from the configuration.
func (s *Service) chargePolicy() core.ChargePolicy {
	return core.ChargePolicy{
		RetrySchedule:       s.cfg.ChargeRetrySchedule,
		PresentRetries:      s.cfg.PresentRetries,
		SafetyDelay:         safetyDelay,
		FallbackResumeDelay: fallbackResumeDelay,
		FraudRecheck:        s.fraudRecheck(),
	}
}

// writeCharge writes what a charge transition decided inside tx: the jobs it
// ends and adds, the charge, hppd's view of the token, the counters and the
// storefront event with the charge's next sequence number (as chargeEvent
// numbers it). A step that changed nothing writes nothing.
func (s *Service) writeCharge(tx store.Tx, c *core.Charge, st core.ChargeStep, now time.Time) error {
	if !st.Changed {
		return nil
	}
	for _, id := range st.Drop {
		if err := tx.DeleteJob(id); err != nil {
			return fmt.Errorf("drop job %s: %w", id, err)
		}
	}
	for i := range st.Jobs {
		if _, err := tx.AddJob(&st.Jobs[i]); err != nil {
			return fmt.Errorf("add job %s: %w", st.Jobs[i].ID, err)
		}
	}
	if st.Event != "" {
		c.NextEvent() // the event's sequence number, stored with the charge
	}
	if err := tx.PutCharge(c); err != nil {
		return fmt.Errorf("store charge %s: %w", c.ID, err)
	}
	if st.Token != core.TokenUnchanged {
		if err := recordToken(tx, c, now, st.Token == core.TokenRecovered); err != nil {
			return fmt.Errorf("record token of charge %s: %w", c.ID, err)
		}
	}
	switch st.Outcome {
	case "":
	case core.ChargeCharged:
		if c.OrderIDUnknown {
			s.Stats.OrdersIDUnknown.Add(1)
		}
	case core.ChargeRecovered:
		s.Stats.TokensRecovered.Add(1)
	}
	if st.Outcome != "" {
		s.Stats.chargeOutcome(st.Outcome)
	}
	if st.Event == "" {
		return nil
	}
	if err := s.writeChargeEvent(tx, c, st.Event, now); err != nil {
		return fmt.Errorf("emit %s of charge %s: %w", st.Event, c.ID, err)
	}
	return nil
}

// recordToken updates hppd's view of the charge's token.
func recordToken(tx store.Tx, c *core.Charge, now time.Time, recovered bool) error {
	t, err := tx.Token(c.Storefront, c.CustomerToken)
	if core.IsNotFound(err) {
		t = &core.TokenInfo{Storefront: c.Storefront, CustomerToken: c.CustomerToken}
	} else if err != nil {
		return err
	}
	t.Record(c, recovered, now)
	return tx.PutToken(t)
}

// retryCharge runs a charge's safety or scheduled retry job: it sends the
// attempt the job names (same key, so an earlier answer is replayed).
func (s *Service) retryCharge(ctx context.Context, j *core.Job) error {
	c, err := s.charge(j.ChargeID)
	if err != nil {
		if core.IsNotFound(err) {
			return s.completeJob(j)
		}
		return err
	}
	if c.Status == core.ChargeFallback && c.SessionID == "" {
		if _, err := s.startFallback(ctx, c, c.Integration, core.ReturnURLs{}, core.Lease{}, nil); err != nil {
			return fmt.Errorf("start the fallback of charge %s: %w", c.ID, err)
		}
		// Linking the session (or recording its refusal) ended this job
		// in the same transaction.
		if err := s.completeJob(j); err != nil && !errors.Is(err, store.ErrLeaseLost) {
			return err
		}
		return nil
	}
	if !c.Status.AwaitsAnswer() || c.AttemptKey != j.IdempotencyKey {
		// Settled meanwhile, or the job of an earlier attempt.
		return s.completeJob(j)
	}
	// Outside a storefront request the customer is not there: a decline is
	// scheduled, not repeated at once, and "unavailable" needs the customer.
	_, err = s.tokenOrder(ctx, c, j, false, nil)
	if errors.Is(err, errTryAgain) {
		return nil
	}
	return err
}

// Charge returns a storefront's charge.
func (s *Service) Charge(storefront, id string) (*core.Charge, error) {
	c, err := s.charge(id)
	if err != nil {
		return nil, err
	}
	if c.Storefront != storefront {
		return nil, core.ErrNotFound
	}
	return c, nil
}

func (s *Service) charge(id string) (*core.Charge, error) {
	var c *core.Charge
	err := s.db.View(func(tx store.Tx) error {
		var err error
		c, err = tx.Charge(id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read charge %s: %w", id, err)
	}
	return c, nil
}

// Charges lists a storefront's charges, newest first.
func (s *Service) Charges(q core.ListQuery) ([]*core.Charge, string, error) {
	var out []*core.Charge
	var next string
	err := s.db.View(func(tx store.Tx) error {
		var err error
		out, next, err = tx.ListCharges(q)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list charges of %s: %w", q.Storefront, err)
	}
	return out, next, nil
}

// Fallback starts the fallback purchase for a charge whose customer is back
// (needs_customer, or failed after declines). A charge that is paid is
// refused; one already in fallback is returned as it is.
func (s *Service) Fallback(ctx context.Context, storefront, id, integration string, urls core.ReturnURLs) (*core.Charge, error) {
	c, err := s.Charge(storefront, id)
	if err != nil {
		return nil, err
	}
	if err := c.FallbackRefusal(); err != nil {
		return nil, err
	}
	if integration != "" && integration != core.IntegrationHPP && integration != core.IntegrationSDK {
		return nil, core.Invalid("integration", "must be hpp or sdk")
	}
	if urls != (core.ReturnURLs{}) {
		if err := urls.Validate("return_urls"); err != nil {
			return nil, err
		}
	}
	return s.startFallback(ctx, c, integration, urls, core.Lease{}, nil)
}

// startFallback creates the fallback session of a charge (one at a time per
// charge, under the lease fallbackLock) and links it. held is that lease
// when the caller has it already (zero: take it here). ans (may be nil) is
// the storefront request's Idempotency-Key claim, whose answer is recorded
// with the link.
//
// The link (and the answer) go into the transaction that records the HPP
// session (sessionLink): the session's HPP ids, the charge's move and the
// request's answer are on disk together or not at all. Before that commit
// a crash leaves a charge in fallback without a session and a session
// without HPP ids, both under leases of the dead process; the resume job or
// the storefront's retry (same Idempotency-Key) then takes the fallback's
// lease once it expires and finishes the same session (its id derives from
// fallbackKey), as it did when these were three commits.
func (s *Service) startFallback(ctx context.Context, c *core.Charge, integration string, urls core.ReturnURLs, held core.Lease, ans *keyAnswer) (*core.Charge, error) {
	lock := fallbackLock(c.ID)
	lease := held
	var err error
	if lease.Owner == "" {
		if lease, err = s.acquireWait(ctx, lock); err != nil {
			return nil, err
		}
	}
	c, err = s.charge(c.ID)
	if err != nil {
		s.releaseLease(lock, lease)
		return nil, err
	}
	if c.Status == core.ChargeFallback && c.SessionID != "" {
		if sess, err := s.Session(c.Storefront, c.SessionID); err == nil && !sess.Status.Final() {
			s.releaseLease(lock, lease)
			return c, nil
		}
	}
	if urls == (core.ReturnURLs{}) {
		urls = c.ReturnURLs
	}
	if integration != core.IntegrationSDK {
		if err := urls.Validate("return_urls"); err != nil {
			s.releaseLease(lock, lease)
			return nil, err
		}
	}
	return s.createAndLink(ctx, c, integration, urls, &lease, ans, nil, nil)
}

// createAndLink creates charge c's fallback session and links it (see
// startFallback). *lease is the fallback's lease: held, or taken by first's
// transaction (first, when set, runs in the transaction that first records
// the session; see fallbackWithAnswer). The link ends the lease; a failure
// ends it on the way out. A failure before first's transaction committed is
// returned as it is. answered (with first) is first's answer as a step of
// its own: when Klarna makes both sessions at once, the session's one
// transaction writes it followed by the link, as one write of the charge.
func (s *Service) createAndLink(ctx context.Context, c *core.Charge, integration string, urls core.ReturnURLs, lease *core.Lease, ans *keyAnswer, first *sessionLink, answered func(store.Tx) (*core.Charge, core.ChargeStep, error)) (*core.Charge, error) {
	lock := fallbackLock(c.ID)
	linked := false // the transaction that links the session ends the lease
	defer func() {
		if !linked && lease.Owner != "" {
			s.releaseLease(lock, *lease)
		}
	}()
	var linkErr error   // the fallback's lease was lost before the link
	var answer keyReply // the answer recorded with the link
	// withAnswer records the request's answer under its key, when it has
	// one, in the transaction that links the session.
	withAnswer := func(tx store.Tx, cur *core.Charge, sess *core.Session) (bool, error) {
		if ans != nil {
			var e error
			if answer, e = ans.finish(tx, cur, sess); e != nil {
				return false, e
			}
		}
		return true, nil
	}
	link := &sessionLink{fn: func(tx store.Tx, sess *core.Session) (bool, error) {
		linkErr, answer = nil, keyReply{}
		cur, e := s.linkFallback(tx, c.ID, lock, *lease, sess.ID)
		if errors.Is(e, store.ErrLeaseLost) {
			linkErr = e
			return false, nil
		}
		if e != nil {
			return false, e
		}
		return withAnswer(tx, cur, sess)
	}}
	var atOnce *sessionLink
	if first != nil && answered != nil {
		atOnce = &sessionLink{fn: func(tx store.Tx, sess *core.Session) (bool, error) {
			linkErr, answer = nil, keyReply{}
			cur, st, e := answered(tx)
			if e != nil {
				return false, e
			}
			now := s.now()
			linked := cur.FallbackStarted(sess.ID, now)
			if merged, ok := st.Then(linked); ok {
				e = s.writeCharge(tx, cur, merged, now)
			} else if e = s.writeCharge(tx, cur, st, now); e == nil {
				e = s.writeCharge(tx, cur, linked, now)
			}
			if e != nil {
				return false, e
			}
			return withAnswer(tx, cur, sess)
		}}
	}
	sess, err := s.createFallbackSession(ctx, c, SessionRequest{
		Purchase: c.Purchase, CustomerToken: c.CustomerToken, Integration: integration,
		PlaceOrderMode: core.ModeNone, ReturnURLs: urls, ChargeID: c.ID,
		IdempotencyKey: fallbackKey(c), KlarnaAccount: s.accountName(c.KlarnaAccount),
		first: first, link: link, atOnce: atOnce,
	})
	if err != nil {
		if first != nil && !first.done {
			return nil, err
		}
		return nil, s.fallbackFailed(ctx, c, err)
	}
	if first != nil && !first.done {
		// The session existed already, so first never ran: its caller
		// records on its own and starts again.
		return nil, errAnswerMoved
	}
	s.Stats.FallbacksStarted.Add(1)
	switch {
	case link.done:
		if ans != nil && answer.status != 0 { // zero: the key's claim was lost meanwhile
			ans.key.answered(answer)
		}
	case linkErr != nil:
		return nil, fmt.Errorf("link fallback session %s to charge %s: %w", sess.ID, c.ID, linkErr)
	default:
		// The session's HPP ids were recorded before (a retry found the
		// session complete): link it now.
		err = s.db.Update(func(tx store.Tx) error {
			_, e := s.linkFallback(tx, c.ID, lock, *lease, sess.ID)
			return e
		})
		if err != nil {
			return nil, fmt.Errorf("link fallback session %s to charge %s: %w", sess.ID, c.ID, err)
		}
	}
	linked = true
	return s.charge(c.ID)
}

// linkFallback links session sessionID to charge id as its fallback inside
// tx and ends the fallback's lease; it returns the charge as written.
func (s *Service) linkFallback(tx store.Tx, id, lock string, lease core.Lease, sessionID string) (*core.Charge, error) {
	if e := tx.ReleaseLease(lock, lease); e != nil {
		return nil, e
	}
	cur, e := tx.Charge(id)
	if e != nil {
		return nil, e
	}
	now := s.now()
	if e := s.writeCharge(tx, cur, cur.FallbackStarted(sessionID, now), now); e != nil {
		return nil, e
	}
	return cur, nil
}

// fallbackLock names the lease a charge's fallback is started under.
func fallbackLock(chargeID string) string { return "fallback/" + chargeID }

// fallbackKey names a charge's next fallback session: the session id
// derives from it, so a retry of a fallback whose answer was lost (or whose
// HPP step failed transiently) finishes the same KP session instead of
// making another. It changes once a fallback session was linked, so a later
// fallback (the first one ended) gets a session of its own. Storefront keys
// cannot collide with it: HTTP headers carry no NUL.
func fallbackKey(c *core.Charge) string {
	return "\x00fallback\x00" + c.ID + "\x00" + c.SessionID
}

// createFallbackSession creates a charge's fallback session, retrying
// transient failures (5xx, timeouts, 429) until FallbackWithin has passed
// or ctx ends: a present customer waits for it.
func (s *Service) createFallbackSession(ctx context.Context, c *core.Charge, req SessionRequest) (*core.Session, error) {
	deadline := time.Now().Add(s.cfg.FallbackWithin)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for n := 1; ; n++ {
		sess, err := s.CreateSession(cctx, c.Storefront, req)
		if err == nil && sess.Status.Final() && req.IdempotencyKey != "" {
			// The keyed session of an earlier try ended before it was
			// linked (given up as interrupted, or refused): start afresh.
			req.IdempotencyKey = ""
			continue
		}
		if err == nil && sess.Status.Final() {
			return nil, &core.Error{Code: core.CodeUpstream, Message: "fallback session " + sess.ID + " is " + string(sess.Status), Err: errors.New("fallback session ended at creation")}
		}
		if err == nil {
			return sess, nil
		}
		if !fallbackTransient(err) || ctx.Err() != nil || (req.first != nil && !req.first.done) {
			// With first not committed, its caller records on its own
			// and then tries again (fallbackWithAnswer).
			return nil, err
		}
		req.first = nil // committed; a retry finds the recorded session
		delay := core.Backoff(n, 200*time.Millisecond, 2*time.Second)
		if time.Until(deadline) <= delay {
			return nil, err
		}
		select {
		case <-cctx.Done():
			return nil, err
		case <-time.After(delay):
		}
	}
}

// fallbackTransient reports a failure to create a fallback session that a
// later try may overcome: Klarna gave no definitive answer (5xx, 429,
// timeout), or something of hppd's own failed.
func fallbackTransient(err error) bool {
	if klarna.IsTransient(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch core.ErrorCodeOf(err) {
	case core.CodeUnavailable, core.CodeInternal, core.CodeConflict:
		return true
	}
	return false
}

// RetryLater is the answer "try again": the work is kept, and a repeat of
// the request with the same Idempotency-Key resumes it. It wraps a
// core.Error (CodeUnavailable) and tells the HTTP layer the Retry-After.
type RetryLater struct {
	Err   *core.Error
	After time.Duration
}

func (e *RetryLater) Error() string { return e.Err.Error() }

// Unwrap returns the core.Error.
func (e *RetryLater) Unwrap() error { return e.Err }

// RetryAfter is how long the client should wait before the repeat.
func (e *RetryLater) RetryAfter() time.Duration { return e.After }

// fallbackRetryAfter is the Retry-After of a fallback that could not be
// started yet, unless Klarna asked for longer.
const fallbackRetryAfter = 2 * time.Second

// fallbackFailed decides what a failed fallback session creation means for
// the charge. A transient failure keeps the charge as it is (a charge in
// fallback keeps its resume job, which tries again in the background) and
// becomes a RetryLater; Klarna's refusal fails a charge in fallback (with a
// present customer it never becomes needs_customer) and is returned as is.
func (s *Service) fallbackFailed(ctx context.Context, c *core.Charge, err error) error {
	log := s.logger(ctx).With("charge_id", c.ID, "storefront", c.Storefront)
	if core.ErrorCodeOf(err) == core.CodeInvalid {
		return err
	}
	if fallbackTransient(err) {
		after := fallbackRetryAfter
		var ke *klarna.Error
		if errors.As(err, &ke) && ke.RetryAfter > after {
			after = ke.RetryAfter
		}
		log.Warn("fallback session not created yet; the storefront is asked to retry", "err", err)
		return &RetryLater{
			Err: &core.Error{Code: core.CodeUnavailable, Err: err,
				Message: "the fallback purchase of charge " + c.ID + " could not be started yet (Klarna did not answer in time); retry with the same Idempotency-Key"},
			After: after,
		}
	}
	now := s.now()
	uerr := s.db.Update(func(tx store.Tx) error {
		cur, e := tx.Charge(c.ID)
		if e != nil {
			return e
		}
		return s.writeCharge(tx, cur, cur.FallbackRefused(kerr(err), now), now)
	})
	if uerr != nil {
		return &core.Error{Code: core.CodeInternal, Message: "store charge", Err: fmt.Errorf("record the refused fallback of charge %s: %w", c.ID, uerr)}
	}
	return err
}

// TokenView is hppd's view of a customer token plus Klarna's.
type TokenView struct {
	Info        *core.TokenInfo
	Klarna      *klarna.CustomerToken
	KlarnaError *core.KlarnaError
	// KlarnaAccount is the account Klarna's view was read at.
	KlarnaAccount string
}

// Token returns what hppd and Klarna know of a customer token.
func (s *Service) Token(ctx context.Context, storefront, token string) (*TokenView, error) {
	if token == "" || len(token) > 255 {
		return nil, core.Invalid("customer_token", "must be 1 to 255 characters")
	}
	v := &TokenView{}
	err := s.db.View(func(tx store.Tx) error {
		if ok, err := s.mayUseToken(tx, storefront, token); err != nil || !ok {
			if err == nil {
				err = errTokenNotFound
			}
			return err
		}
		t, err := tx.Token(storefront, token)
		if err == nil {
			v.Info = t
			return nil
		}
		if core.IsNotFound(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read a customer token of %s: %w", storefront, err)
	}
	kt, account, err := s.readToken(ctx, storefront, v.Info, token)
	v.KlarnaAccount = account
	var over *OverShare
	switch {
	case err == nil:
		v.Klarna = kt
	case errors.As(err, &over):
		return nil, err
	case klarna.IsNotFound(err) && v.Info == nil:
		return nil, core.ErrNotFound
	default:
		v.KlarnaError = kerr(err)
	}
	return v, nil
}
