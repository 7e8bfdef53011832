package core

import (
	"slices"
	"time"
)

// ChargePolicy holds the rules of token charges.
type ChargePolicy struct {
	// RetrySchedule: the delays of the scheduled retries of a declined
	// charge with the customer absent, one retry each.
	RetrySchedule []time.Duration
	// PresentRetries: new attempts at once after a decline while the
	// customer waits in the storefront's request.
	PresentRetries int
	// SafetyDelay: an attempt whose answer is not recorded by then is
	// resent (same key) by the charge's safety job this long after it began.
	SafetyDelay time.Duration
	// FallbackResumeDelay: a charge left in fallback without its session
	// (hppd stopped in between) gets the session from a job this long after.
	FallbackResumeDelay time.Duration
	// FraudRecheck: an order answered with fraud status PENDING is read from
	// Order Management this long after (token orders have no notification).
	FraudRecheck time.Duration
}

// UnusableLimit: after this many 2xx answers hppd cannot use to one attempt
// (or one place_order job), the 2xx is taken at its word: Klarna acted, and
// the order exists with an id hppd does not know.
const UnusableLimit = 3

// TokenOrderAnswer is Klarna's answer to one attempt of a charge's token
// order, as the caller classified it.
type TokenOrderAnswer struct {
	// Attempt is the attempt's record: its key, its result (Attempt*) and
	// Klarna's codes. An answer with no definitive outcome is
	// AttemptTransient; a 2xx hppd cannot use is AttemptTransient with its
	// 2xx HTTPStatus (Attempt.Unusable).
	Attempt Attempt
	// OrderID and FraudStatus: the order of an AttemptCharged answer.
	OrderID     string
	FraudStatus string
	// Error is what Klarna refused (declined, unavailable, final).
	Error *KlarnaError
	// InRequest: the attempt was made inside the storefront's request, so a
	// present customer is waiting for new attempts.
	InRequest bool
}

// Unusable reports a 2xx answer hppd could not use (not JSON, no order id):
// the token may be charged; the outcome is unknown.
func (a Attempt) Unusable() bool {
	return a.Result == AttemptTransient && a.HTTPStatus >= 200 && a.HTTPStatus <= 299
}

// TokenChange says how a charge step changes hppd's view of its token.
type TokenChange int

// Token changes.
const (
	TokenUnchanged TokenChange = iota
	// TokenCharged: the token's last charge and its outcome are this one.
	TokenCharged
	// TokenRecovered: as TokenCharged, and the token is recovered by it.
	TokenRecovered
)

// ChargeStep is what a charge transition asks its caller to write, in one
// transaction with the charge. The zero step changes nothing.
type ChargeStep struct {
	// Changed: the charge changed and is stored.
	Changed bool
	// Settled: the attempt has a definitive outcome, now or recorded before:
	// the job that sent it is done. An attempt that is not settled is sent
	// again with the same key.
	Settled bool
	// Again: a new attempt (the charge's new AttemptKey) is due at once; the
	// customer waits.
	Again bool
	// Drop lists job ids that end with this step (removed before Jobs are
	// added); Jobs are the jobs it adds.
	Drop []string
	Jobs []Job
	// Outcome is the status the charge reached, for counters; "" when none.
	Outcome ChargeStatus
	// Token says how the token's view changes.
	Token TokenChange
	// Event is the storefront event type to emit; "" when none.
	Event string
}

// Then is st followed by next, on the same charge, as one step to write in
// one transaction: what either changes, the jobs st adds less those next
// ends (the drops are kept: a job of that id may exist from before), and
// next's outcome, token change and event where it has one. ok is false when
// both emit an event (a step has one): then they are written one after the
// other.
func (st ChargeStep) Then(next ChargeStep) (merged ChargeStep, ok bool) {
	if st.Event != "" && next.Event != "" {
		return ChargeStep{}, false
	}
	merged = ChargeStep{
		Changed: st.Changed || next.Changed, Settled: st.Settled || next.Settled, Again: st.Again || next.Again,
		Drop: append(slices.Clone(st.Drop), next.Drop...), Outcome: st.Outcome, Token: st.Token, Event: st.Event,
	}
	for _, j := range st.Jobs {
		if !slices.Contains(next.Drop, j.ID) {
			merged.Jobs = append(merged.Jobs, j)
		}
	}
	merged.Jobs = append(merged.Jobs, next.Jobs...)
	if next.Outcome != "" {
		merged.Outcome = next.Outcome
	}
	if next.Token != TokenUnchanged {
		merged.Token = next.Token
	}
	if next.Event != "" {
		merged.Event = next.Event
	}
	return merged, true
}

// AwaitsAnswer reports whether a charge with this status waits for the
// answer to its current attempt.
func (s ChargeStatus) AwaitsAnswer() bool { return s == ChargePending || s == ChargeRetrying }

// EventType is the storefront event of reaching status s ("charge.charged"),
// "" for the statuses that have none (pending, retrying).
func (s ChargeStatus) EventType() string {
	switch s {
	case ChargeCharged, ChargeFallback, ChargeRecovered, ChargeNeedsCustomer, ChargeFailed:
		return "charge." + string(s)
	}
	return ""
}

// SafetyJob is the job that resends the charge's current attempt (same key)
// should its answer not be recorded: written before the attempt is sent.
func (c *Charge) SafetyJob(now time.Time, p ChargePolicy) Job {
	return c.retryJob(0, now.Add(p.SafetyDelay), now)
}

func (c *Charge) retryJob(n int, due, now time.Time) Job {
	return Job{ID: RetryChargeJobID(c.ID, n), Kind: JobRetryCharge, ChargeID: c.ID, IdempotencyKey: c.AttemptKey, DueAt: due, CreatedAt: now}
}

// unusableAnswers counts the recorded 2xx answers to attempt key hppd could
// not use.
func (c *Charge) unusableAnswers(key string) int {
	n := 0
	for _, a := range c.Attempts {
		if a.IdempotencyKey == key && a.Unusable() {
			n++
		}
	}
	return n
}

// Answered applies Klarna's answer to an attempt of the charge's token order
// (core's charge state machine). It is the only place a token order's answer
// moves a charge:
//
//   - no definitive answer (AttemptTransient): the attempt is recorded and
//     nothing else changes; the same attempt is sent again. A 2xx hppd cannot
//     use counts the same way until it is the UnusableLimit-th for the
//     attempt: then the token is taken as charged, its order id unknown;
//   - an answer to an attempt that is not the charge's current one, or to a
//     charge no longer waiting (paid, failed, in fallback): settled, nothing
//     changes (a final charge absorbs later answers);
//   - charged: charged (and a check_fraud job when the fraud status is
//     PENDING);
//   - unavailable: fallback with the customer present (a job starts the
//     fallback session should the request not; its event follows the
//     session), needs_customer without;
//   - declined: with the customer waiting, a new attempt at once while
//     PresentRetries last, then failed; without, retrying with the next
//     delay of RetrySchedule, then failed;
//   - any other refusal: failed.
func (c *Charge) Answered(a TokenOrderAnswer, now time.Time, p ChargePolicy) ChargeStep {
	key := a.Attempt.IdempotencyKey
	if a.Attempt.Result == AttemptTransient && (!a.Attempt.Unusable() || c.unusableAnswers(key)+1 < UnusableLimit) {
		c.Attempts = append(c.Attempts, a.Attempt)
		return ChargeStep{Changed: true}
	}
	if key != c.AttemptKey || !c.Status.AwaitsAnswer() {
		return ChargeStep{Settled: true}
	}
	c.Attempts = append(c.Attempts, a.Attempt)
	st := ChargeStep{Changed: true, Settled: true}
	var to ChargeStatus
	switch a.Attempt.Result {
	case AttemptCharged:
		c.OrderID, c.FraudStatus = a.OrderID, a.FraudStatus
		c.Error = nil
		to = ChargeCharged
		c.SetStatus(to, SourceAPI, "token charged", now)
		if c.FraudReviewPending() {
			st.Jobs = append(st.Jobs, Job{ID: CheckFraudJobID(c.ID), Kind: JobCheckFraud, ChargeID: c.ID,
				DueAt: now.Add(p.FraudRecheck), CreatedAt: now, Source: SourceJob})
		}
	case AttemptTransient:
		// UnusableLimit 2xx answers hppd cannot use: Klarna charged the
		// token; the order's id is not known.
		c.OrderID, c.OrderIDUnknown = "", true
		c.Error = nil
		to = ChargeCharged
		c.SetStatus(to, SourceAPI, "token charged (klarna's answers unusable; order id unknown)", now)
	case AttemptUnavailable:
		c.Error = a.Error
		// A present customer gets the fallback purchase even when the
		// answer is recorded by the safety job after the request: with the
		// customer present a charge never rests in needs_customer.
		if c.CustomerPresent {
			to = ChargeFallback
			c.SetStatus(to, SourceAPI, "payment method unavailable; fallback purchase", now)
			// Should hppd stop before the fallback session exists, this job
			// starts it (the request normally does, and the job then ends).
			st.Jobs = append(st.Jobs, c.retryJob(0, now.Add(p.FallbackResumeDelay), now))
		} else {
			to = ChargeNeedsCustomer
			c.SetStatus(to, SourceAPI, "payment method unavailable; customer absent", now)
		}
	case AttemptDeclined:
		c.Error = a.Error
		switch {
		case a.InRequest && c.CustomerPresent && c.Try <= p.PresentRetries:
			c.NextTry()
			st.Again = true
			st.Jobs = append(st.Jobs, c.SafetyJob(now, p))
			return st
		case a.InRequest && c.CustomerPresent:
			to = ChargeFailed
			c.SetStatus(to, SourceAPI, "payment method failed; retries used up", now)
		case c.Retries < len(p.RetrySchedule):
			delay := p.RetrySchedule[c.Retries]
			c.Retries++
			c.NextTry()
			st.Jobs = append(st.Jobs, c.retryJob(c.Retries, now.Add(delay), now))
			c.SetStatus(ChargeRetrying, SourceJob, "payment method failed; retry scheduled", now)
			c.NextRetryAt = now.Add(delay)
			c.UpdatedAt = now
			return st
		default:
			to = ChargeFailed
			c.SetStatus(to, SourceJob, "payment method failed; retry schedule used up", now)
		}
	default:
		c.Error = a.Error
		to = ChargeFailed
		c.SetStatus(to, SourceAPI, "klarna refused the charge", now)
	}
	st.Outcome, st.Token = to, TokenCharged
	if to != ChargeFallback { // a fallback's event follows once its session exists
		st.Event = to.EventType()
	}
	return st
}

// FallbackRefusal says why the fallback purchase of the charge may not start
// now (a conflict: the charge is paid, or its outcome is not known yet); nil
// when it may: the charge waits for its customer (needs_customer), failed, or
// is in fallback already.
func (c *Charge) FallbackRefusal() error {
	switch {
	case c.Status.Paid():
		return Errorf(CodeConflict, "charge %s is %s", c.ID, c.Status)
	case c.Status.AwaitsAnswer():
		return Errorf(CodeConflict, "charge %s is still %s; its outcome is not known yet", c.ID, c.Status)
	}
	return nil
}

// FallbackStarted links the fallback session sessionID to the charge, which
// is (or now becomes) in fallback, and emits charge.fallback. The job that
// would start the session should hppd stop first (Answered) ends with it:
// left, it would only wake up to find the session linked, two commits for
// nothing. A charge whose fallback may not start (FallbackRefusal) is left
// as it is.
func (c *Charge) FallbackStarted(sessionID string, now time.Time) ChargeStep {
	if c.FallbackRefusal() != nil {
		return ChargeStep{}
	}
	c.SessionID = sessionID
	c.SetStatus(ChargeFallback, SourceAPI, "fallback session "+sessionID+" created", now)
	c.UpdatedAt = now
	return ChargeStep{Changed: true, Drop: []string{RetryChargeJobID(c.ID, 0)}, Event: ChargeFallback.EventType()}
}

// FallbackRefused records that Klarna refused to create the fallback session
// of a charge in fallback that has none yet: the charge fails, and its job
// that would start the session ends. The storefront may ask for the fallback
// again. A charge with a session, or not in fallback, is left as it is.
func (c *Charge) FallbackRefused(kerr *KlarnaError, now time.Time) ChargeStep {
	if c.Status != ChargeFallback || c.SessionID != "" {
		return ChargeStep{}
	}
	c.Error = kerr
	c.SetStatus(ChargeFailed, SourceAPI, "fallback session could not be created", now)
	return ChargeStep{Changed: true, Drop: []string{RetryChargeJobID(c.ID, 0)}, Outcome: ChargeFailed, Event: ChargeFailed.EventType()}
}

// SessionEnded moves a charge in fallback when its fallback session s has
// reached a final status: an order placed recovers the charge (with the
// order's id and fraud status) and its token; a session cancelled, expired or
// failed fails it with the session's error. A session that is not the
// charge's, not final, or a charge not in fallback changes nothing.
func (c *Charge) SessionEnded(s *Session, now time.Time) ChargeStep {
	if c.SessionID != s.ID || c.Status != ChargeFallback {
		return ChargeStep{}
	}
	switch s.Status {
	case SessionOrderPlaced:
		c.OrderID = s.OrderID
		c.OrderIDUnknown = s.OrderIDUnknown
		c.FraudStatus = s.FraudStatus
		c.SetStatus(ChargeRecovered, SourceJob, "fallback purchase completed", now)
		return ChargeStep{Changed: true, Outcome: ChargeRecovered, Token: TokenRecovered, Event: ChargeRecovered.EventType()}
	case SessionCancelled, SessionExpired, SessionFailed:
		c.Error = s.Error
		c.SetStatus(ChargeFailed, SourceJob, "fallback session "+string(s.Status), now)
		return ChargeStep{Changed: true, Outcome: ChargeFailed, Event: ChargeFailed.EventType()}
	}
	return ChargeStep{}
}

// EventChargeFraudStatus is the storefront event of a fraud review outcome
// recorded on a charge.
const EventChargeFraudStatus = "charge.fraud_status_changed"

// FraudReviewPending reports whether the charge's order waits for Klarna's
// fraud review: its check_fraud job reads it from Order Management.
func (c *Charge) FraudReviewPending() bool { return c.FraudStatus == FraudPending && c.OrderID != "" }

// FraudRead applies the fraud status Order Management reports for the
// charge's order (its check_fraud job). While the review is still PENDING
// the step is not settled: the job waits another ChargePolicy.FraudRecheck.
// Otherwise it is settled, and an outcome the charge's fraud status may move
// to (SetFraudStatus) is recorded with its storefront event.
func (c *Charge) FraudRead(fs string, now time.Time) ChargeStep {
	if !FraudDecided(fs) && c.FraudStatus == FraudPending {
		return ChargeStep{}
	}
	if !c.SetFraudStatus(fs, SourceJob, "fraud review: order management reports "+fs, now) {
		return ChargeStep{Settled: true}
	}
	return ChargeStep{Changed: true, Settled: true, Event: EventChargeFraudStatus}
}

// Record updates the token's view with charge c's outcome, at c's account
// when the token has none yet; recovered marks the token recovered by c.
func (t *TokenInfo) Record(c *Charge, recovered bool, now time.Time) {
	if t.KlarnaAccount == "" {
		t.KlarnaAccount = c.KlarnaAccount
	}
	t.LastChargeID, t.LastOutcome, t.LastChargeAt = c.ID, c.Status, now
	if recovered {
		t.Recovered, t.RecoveredAt, t.RecoveredBy = true, now, c.ID
	}
}
