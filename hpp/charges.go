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
		return nil, err
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
	safety := &core.Job{ID: core.RetryChargeJobID(c.ID, 0), Kind: core.JobRetryCharge, ChargeID: c.ID, IdempotencyKey: c.AttemptKey, DueAt: now.Add(safetyDelay), CreatedAt: now}
	// The request makes the first attempt under the safety job's lease,
	// taken in the transaction that writes the job.
	safety.Lease = core.Lease{Owner: s.cfg.Owner, Token: 1, Until: now.Add(s.cfg.LeaseTTL)}
	var existing *core.Charge
	if err := s.db.Update(func(tx store.Tx) error {
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
		_, err := tx.AddJob(safety)
		return err
	}); err != nil {
		if core.IsNotFound(err) {
			return nil, err
		}
		return nil, &core.Error{Code: core.CodeInternal, Message: "store charge", Err: err}
	}
	held := safety
	if existing != nil {
		// A retry of a request whose answer was lost: carry on from where
		// the first attempt stopped.
		c, held = existing, nil
	}
	return s.runCharge(ctx, c, held)
}

// runCharge makes the charge's attempts inside a storefront request (a
// pending charge resends its current attempt with the same key; a decline
// with the customer present gets new attempts) and starts the fallback
// purchase when Klarna calls for it.
//
// Each attempt runs under the lease of the charge's safety job (held: the
// one the request's own transaction leased, nil: lease it now); when the
// job runner holds it, here or in another process, the job makes the
// attempt and the request answers with the charge as it is.
func (s *Service) runCharge(ctx context.Context, c *core.Charge, held *core.Job) (*core.Charge, error) {
	log := s.logger(ctx).With("charge_id", c.ID, "storefront", c.Storefront)
	var fl core.Lease // the fallback's lease, when the outcome took it
	if c.Status == core.ChargePending {
		for job := held; ; job = nil {
			if job == nil {
				if job = s.leaseSafety(c); job == nil {
					break
				}
			}
			_, cerr := s.tokenOrder(ctx, c, job, true, &fl)
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
		fc, err := s.startFallback(ctx, cur, cur.Integration, core.ReturnURLs{}, fl)
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
		log.Warn("fallback session not created", "err", err)
		return s.charge(c.ID)
	}
	if fl.Owner != "" {
		s.releaseLease(fallbackLock(c.ID), fl)
	}
	return cur, nil
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
		j = &core.Job{ID: id, Kind: core.JobRetryCharge, ChargeID: c.ID, IdempotencyKey: c.AttemptKey, DueAt: now.Add(safetyDelay), CreatedAt: now,
			Lease: core.Lease{Owner: s.cfg.Owner, Token: 1, Until: now.Add(s.cfg.LeaseTTL)}}
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
// the same key while no definitive answer comes) and commits the outcome with
// the completion of job (under its lease). It returns errTryAgain when a new
// attempt should follow at once, another error when the outcome is still
// unknown. With fallback non-nil, an outcome that calls for the fallback
// purchase also takes the fallback's lease into *fallback, in the same
// transaction, for the request to start it at no extra commit.
func (s *Service) tokenOrder(ctx context.Context, c *core.Charge, job *core.Job, inRequest bool, fallback *core.Lease) (*klarna.Order, error) {
	// The client resends a keyed write on transient failures itself.
	order, err := s.klarnaFor(c.KlarnaAccount).CreateTokenOrderRaw(ctx, c.CustomerToken, c.Request, c.AttemptKey)
	if klarna.IsUnusableAnswer(err) {
		// A 2xx hppd cannot use: the token may be charged. Like a lost
		// answer, the same attempt is resent with the same key (Klarna
		// replays its result); after unusableLimit such answers the 2xx is
		// taken at its word: charged, its order id unknown.
		s.Stats.UnusableTokenOrder.Add(1)
		s.logger(ctx).Error("klarna answered the token order with a 2xx hppd cannot use; the token may be charged, outcome unknown",
			"charge_id", c.ID, "correlation_id", correlationID(err), "err", err)
		seen := 0
		if cur, e := s.charge(c.ID); e == nil {
			seen = unusableAnswers(cur, c.AttemptKey)
		}
		if seen+1 < unusableLimit {
			s.recordAttempt(c.ID, c.AttemptKey, err)
			return nil, err
		}
	}
	if err != nil && retryable(err) {
		s.recordAttempt(c.ID, c.AttemptKey, err)
	}
	if err != nil && retryable(err) {
		return nil, err
	}
	var again bool
	uerr := s.db.Update(func(tx store.Tx) error {
		cur, e := tx.Charge(c.ID)
		if e != nil {
			return e
		}
		if cur.AttemptKey != c.AttemptKey || (cur.Status != core.ChargePending && cur.Status != core.ChargeRetrying) {
			// Someone else recorded this attempt: nothing to record, and
			// nothing to complete when they removed the job too.
			if e := tx.CompleteJob(job, s.now()); e != nil && !errors.Is(e, store.ErrLeaseLost) {
				return e
			}
			return nil
		}
		if e := tx.CompleteJob(job, s.now()); e != nil {
			return e
		}
		again, e = s.chargeOutcome(tx, cur, order, err, inRequest && cur.CustomerPresent)
		*c = *cur
		if e == nil && fallback != nil && cur.Status == core.ChargeFallback && cur.SessionID == "" {
			l, le := tx.AcquireLease(fallbackLock(cur.ID), s.cfg.Owner, s.now(), s.cfg.LeaseTTL)
			switch {
			case le == nil:
				*fallback = l
			case !errors.Is(le, store.ErrLeaseHeld): // held: startFallback waits for it
				e = le
			}
		}
		return e
	})
	if uerr != nil {
		if fallback != nil {
			*fallback = core.Lease{}
		}
		return nil, uerr
	}
	if again {
		return nil, errTryAgain
	}
	return order, nil
}

// recordAttempt notes an attempt without a definitive answer.
func (s *Service) recordAttempt(id, key string, err error) {
	_ = s.db.Update(func(tx store.Tx) error {
		cur, e := tx.Charge(id)
		if e != nil {
			return e
		}
		cur.Attempts = append(cur.Attempts, attemptOf(key, err, s.now()))
		return tx.PutCharge(cur)
	})
}

// unusableAnswers counts the recorded 2xx answers of attempt key that hppd
// could not use.
func unusableAnswers(c *core.Charge, key string) int {
	n := 0
	for _, a := range c.Attempts {
		if a.IdempotencyKey == key && a.HTTPStatus >= 200 && a.HTTPStatus <= 299 && a.Result == core.AttemptTransient {
			n++
		}
	}
	return n
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

// chargeOutcome applies a definitive answer to a charge inside tx. It returns
// true when a new attempt should be made at once (declined, customer present,
// retries left).
func (s *Service) chargeOutcome(tx store.Tx, c *core.Charge, order *klarna.Order, err error, present bool) (bool, error) {
	now := s.now()
	c.Attempts = append(c.Attempts, attemptOf(c.AttemptKey, err, now))
	again := false
	var status core.ChargeStatus
	switch {
	case err == nil:
		c.OrderID, c.FraudStatus = order.OrderID, order.FraudStatus
		c.Error = nil
		status = core.ChargeCharged
		c.SetStatus(status, core.SourceAPI, "token charged", now)
		if e := s.watchChargeFraud(tx, c, now); e != nil {
			return false, e
		}
	case klarna.IsUnusableAnswer(err):
		// unusableLimit 2xx answers in a row that hppd cannot use: Klarna
		// charged the token; the order's id is not known.
		c.OrderID, c.OrderIDUnknown = "", true
		c.Error = nil
		status = core.ChargeCharged
		c.SetStatus(status, core.SourceAPI, "token charged (klarna's answers unusable; order id unknown)", now)
		s.Stats.OrdersIDUnknown.Add(1)
	case klarna.IsFallbackTrigger(err):
		c.Error = kerr(err)
		// A present customer gets the fallback purchase even when the
		// answer is recorded by the safety job after the request: with the
		// customer present a charge never rests in needs_customer.
		if c.CustomerPresent {
			status = core.ChargeFallback
			c.SetStatus(status, core.SourceAPI, "payment method unavailable; fallback purchase", now)
			// Should hppd stop before the fallback session exists, this job
			// starts it (the request normally does, and the job then ends).
			if _, e := tx.AddJob(&core.Job{ID: core.RetryChargeJobID(c.ID, 0), Kind: core.JobRetryCharge, ChargeID: c.ID,
				IdempotencyKey: c.AttemptKey, DueAt: now.Add(fallbackResumeDelay), CreatedAt: now}); e != nil {
				return false, e
			}
		} else {
			status = core.ChargeNeedsCustomer
			c.SetStatus(status, core.SourceAPI, "payment method unavailable; customer absent", now)
		}
	case klarna.IsRetryCharge(err):
		c.Error = kerr(err)
		if present {
			if c.Try <= s.cfg.PresentRetries {
				c.NextTry()
				again = true
				break
			}
			status = core.ChargeFailed
			c.SetStatus(status, core.SourceAPI, "payment method failed; retries used up", now)
			break
		}
		if c.Retries < len(s.cfg.ChargeRetrySchedule) {
			delay := s.cfg.ChargeRetrySchedule[c.Retries]
			c.Retries++
			c.NextTry()
			j := &core.Job{ID: core.RetryChargeJobID(c.ID, c.Retries), Kind: core.JobRetryCharge, ChargeID: c.ID, IdempotencyKey: c.AttemptKey, DueAt: now.Add(delay), CreatedAt: now}
			if _, e := tx.AddJob(j); e != nil {
				return false, e
			}
			status = core.ChargeRetrying
			if !c.SetStatus(status, core.SourceJob, "payment method failed; retry scheduled", now) {
				status = ""
			}
			c.UpdatedAt = now
			break
		}
		status = core.ChargeFailed
		c.SetStatus(status, core.SourceJob, "payment method failed; retry schedule used up", now)
	default:
		c.Error = kerr(err)
		status = core.ChargeFailed
		c.SetStatus(status, core.SourceAPI, "klarna refused the charge", now)
	}
	if err := tx.PutCharge(c); err != nil {
		return false, err
	}
	if again {
		_, err := tx.AddJob(&core.Job{ID: core.RetryChargeJobID(c.ID, 0), Kind: core.JobRetryCharge, ChargeID: c.ID, IdempotencyKey: c.AttemptKey, DueAt: now.Add(safetyDelay), CreatedAt: now})
		return true, err
	}
	if status == "" || status == core.ChargeRetrying {
		return false, nil
	}
	s.Stats.chargeOutcome(status)
	if err := s.recordToken(tx, c, now, false); err != nil {
		return false, err
	}
	if status == core.ChargeFallback {
		return false, nil // the event follows once the session exists
	}
	return false, s.emitCharge(tx, c, now)
}

// recordToken updates hppd's view of the charge's token.
func (s *Service) recordToken(tx store.Tx, c *core.Charge, now time.Time, recovered bool) error {
	t, err := tx.Token(c.Storefront, c.CustomerToken)
	if core.IsNotFound(err) {
		t = &core.TokenInfo{Storefront: c.Storefront, CustomerToken: c.CustomerToken}
	} else if err != nil {
		return err
	}
	if t.KlarnaAccount == "" {
		t.KlarnaAccount = c.KlarnaAccount
	}
	t.LastChargeID, t.LastOutcome, t.LastChargeAt = c.ID, c.Status, now
	if recovered {
		t.Recovered, t.RecoveredAt, t.RecoveredBy = true, now, c.ID
	}
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
		if _, err := s.startFallback(ctx, c, c.Integration, core.ReturnURLs{}, core.Lease{}); err != nil {
			return err
		}
		return s.completeJob(j)
	}
	if (c.Status != core.ChargePending && c.Status != core.ChargeRetrying) || c.AttemptKey != j.IdempotencyKey {
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
	return c, err
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
	return out, next, err
}

// Fallback starts the fallback purchase for a charge whose customer is back
// (needs_customer, or failed after declines). A charge that is paid is
// refused; one already in fallback is returned as it is.
func (s *Service) Fallback(ctx context.Context, storefront, id, integration string, urls core.ReturnURLs) (*core.Charge, error) {
	c, err := s.Charge(storefront, id)
	if err != nil {
		return nil, err
	}
	if c.Status.Paid() {
		return nil, core.Errorf(core.CodeConflict, "charge %s is %s", id, c.Status)
	}
	if c.Status == core.ChargePending || c.Status == core.ChargeRetrying {
		return nil, core.Errorf(core.CodeConflict, "charge %s is still %s; its outcome is not known yet", id, c.Status)
	}
	if integration != "" && integration != core.IntegrationHPP && integration != core.IntegrationSDK {
		return nil, core.Invalid("integration", "must be hpp or sdk")
	}
	if urls != (core.ReturnURLs{}) {
		if err := urls.Validate("return_urls"); err != nil {
			return nil, err
		}
	}
	return s.startFallback(ctx, c, integration, urls, core.Lease{})
}

// startFallback creates the fallback session of a charge (one at a time per
// charge, under the lease fallbackLock) and links it. held is that lease
// when the caller has it already (zero: take it here).
func (s *Service) startFallback(ctx context.Context, c *core.Charge, integration string, urls core.ReturnURLs, held core.Lease) (*core.Charge, error) {
	lock := fallbackLock(c.ID)
	lease := held
	var err error
	if lease.Owner == "" {
		if lease, err = s.acquireWait(ctx, lock); err != nil {
			return nil, err
		}
	}
	linked := false // the transaction that links the session ends the lease
	defer func() {
		if !linked {
			s.releaseLease(lock, lease)
		}
	}()
	c, err = s.charge(c.ID)
	if err != nil {
		return nil, err
	}
	if c.Status == core.ChargeFallback && c.SessionID != "" {
		if sess, err := s.Session(c.Storefront, c.SessionID); err == nil && !sess.Status.Final() {
			return c, nil
		}
	}
	if urls == (core.ReturnURLs{}) {
		urls = c.ReturnURLs
	}
	if integration != core.IntegrationSDK {
		if err := urls.Validate("return_urls"); err != nil {
			return nil, err
		}
	}
	sess, err := s.createFallbackSession(ctx, c, SessionRequest{
		Purchase: c.Purchase, CustomerToken: c.CustomerToken, Integration: integration,
		PlaceOrderMode: core.ModeNone, ReturnURLs: urls, ChargeID: c.ID,
		IdempotencyKey: fallbackKey(c), KlarnaAccount: s.accountName(c.KlarnaAccount),
	})
	if err != nil {
		return nil, s.fallbackFailed(ctx, c, err)
	}
	s.Stats.FallbacksStarted.Add(1)
	now := s.now()
	err = s.db.Update(func(tx store.Tx) error {
		if e := tx.ReleaseLease(lock, lease); e != nil {
			return e
		}
		cur, e := tx.Charge(c.ID)
		if e != nil {
			return e
		}
		cur.SessionID = sess.ID
		cur.SetStatus(core.ChargeFallback, core.SourceAPI, "fallback session "+sess.ID+" created", now)
		cur.UpdatedAt = now
		if e := tx.PutCharge(cur); e != nil {
			return e
		}
		return s.emitCharge(tx, cur, now)
	})
	if err != nil {
		return nil, err
	}
	linked = true
	return s.charge(c.ID)
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
		if !fallbackTransient(err) || ctx.Err() != nil {
			return nil, err
		}
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
		if cur.Status != core.ChargeFallback || cur.SessionID != "" {
			return nil
		}
		cur.Error = kerr(err)
		cur.SetStatus(core.ChargeFailed, core.SourceAPI, "fallback session could not be created", now)
		if e := tx.DeleteJob(core.RetryChargeJobID(cur.ID, 0)); e != nil && !core.IsNotFound(e) {
			return e
		}
		if e := tx.PutCharge(cur); e != nil {
			return e
		}
		s.Stats.chargeOutcome(core.ChargeFailed)
		return s.emitCharge(tx, cur, now)
	})
	if uerr != nil {
		return &core.Error{Code: core.CodeInternal, Message: "store charge", Err: uerr}
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
		return nil, err
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
