package hpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
)

// retryable reports whether a job that failed with err should run again rather
// than record a final outcome. Transient Klarna failures are; so are 401s (a
// credentials problem an operator fixes, while the authorization still lives).
func retryable(err error) bool {
	if klarna.IsTransient(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var ke *klarna.Error
	if errors.As(err, &ke) {
		return ke.HTTPStatus == 401 || ke.HTTPStatus == 0
	}
	return true // not a Klarna answer at all (e.g. the store): try again
}

// RunDue starts every due job (place_order first), at most Workers at a time,
// and waits for them. It returns how many ran. While the job runner (Run)
// runs, RunDue only hands the due jobs to the runner's idle workers and
// returns how many it handed over: it never runs event deliveries and order
// placements in one batch. Either way each job runs under a lease in the
// store (see Run).
func (s *Service) RunDue(ctx context.Context) int {
	if feeds := s.lanes.Load(); feeds != nil {
		n, _ := s.dispatch(feeds)
		return n
	}
	now := s.now()
	var ids []string
	if err := s.db.View(func(tx store.Tx) error {
		due, err := tx.JobsDue(now, 1024)
		sort.SliceStable(due, func(a, b int) bool { return due[a].Kind.Priority() < due[b].Kind.Priority() })
		ids = ids[:0]
		for _, j := range due {
			ids = append(ids, j.ID)
		}
		return err
	}); err != nil {
		s.log.Error("look for due jobs", "err", err)
		return 0
	}
	if len(ids) == 0 {
		return 0
	}
	// Leased a worker's worth at a time, so that no lease waits long for
	// a slot (a lease that expired before its job started would let
	// another process run the job too).
	done := make(chan struct{}, len(ids))
	n := 0
	for len(ids) > 0 && ctx.Err() == nil {
		chunk := ids[:min(len(ids), cap(s.slots))]
		ids = ids[len(chunk):]
		due, err := s.claimDue(chunk, s.now())
		if err != nil {
			s.log.Error("lease due jobs", "err", err)
			break
		}
		for i, j := range due {
			slot := false
			if ctx.Err() == nil {
				select {
				case s.slots <- struct{}{}:
					slot = true
				case <-ctx.Done():
				}
			}
			if !slot {
				s.releaseJobs(due[i:]) // not started: due again at once
				break
			}
			n++
			s.jobsWG.Add(1)
			go func(j *core.Job) {
				defer func() { <-s.slots; s.jobsWG.Done(); done <- struct{}{} }()
				if err := s.runJob(context.WithoutCancel(ctx), j); err != nil {
					s.log.Debug("job will retry", "job_id", j.ID, "err", err)
				}
			}(j)
		}
	}
	for i := 0; i < n; i++ {
		<-done
	}
	return n
}

// acquire takes the named lease (work that is not a job) for this process;
// false when another holder's lease is in force, here or in another
// process.
func (s *Service) acquire(name string) (core.Lease, bool, error) {
	var l core.Lease
	err := s.db.Batch(func(tx store.Tx) error {
		var err error
		l, err = tx.AcquireLease(name, s.cfg.Owner, s.now(), s.cfg.LeaseTTL)
		return err
	})
	if errors.Is(err, store.ErrLeaseHeld) {
		return core.Lease{}, false, nil
	}
	if err != nil {
		return core.Lease{}, false, fmt.Errorf("lease %s: %w", name, err)
	}
	return l, true, nil
}

// acquireWait waits for the named lease until ctx ends, looking at it in
// read transactions while another holder has it.
func (s *Service) acquireWait(ctx context.Context, name string) (core.Lease, error) {
	for {
		var held bool
		if err := s.db.View(func(tx store.Tx) error {
			l, err := tx.Lease(name)
			held = l.Held(s.now())
			return err
		}); err != nil {
			return core.Lease{}, fmt.Errorf("lease %s: %w", name, err)
		}
		if !held {
			l, ok, err := s.acquire(name)
			if err != nil || ok {
				return l, err
			}
		}
		select {
		case <-ctx.Done():
			return core.Lease{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// releaseLease ends a named lease this process holds. One that expired and
// was taken over is not this process's to end.
func (s *Service) releaseLease(name string, l core.Lease) {
	err := s.db.Batch(func(tx store.Tx) error { return tx.ReleaseLease(name, l) })
	if err != nil && !errors.Is(err, store.ErrLeaseLost) {
		s.log.Warn("end a lease; it ends when it expires", "lease", name, "err", err)
	}
}

// RunJob runs one job now, or waits while another holds its lease (a worker
// of this process, a request, another process). A missing job (done
// meanwhile) is not an error.
func (s *Service) RunJob(ctx context.Context, id string) error {
	for {
		var j *core.Job
		err := s.db.Batch(func(tx store.Tx) error {
			var err error
			j, err = tx.ClaimJob(id, s.cfg.Owner, s.now(), s.cfg.LeaseTTL)
			return err
		})
		switch {
		case core.IsNotFound(err):
			return nil
		case errors.Is(err, store.ErrLeaseHeld):
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
			continue
		case err != nil:
			return fmt.Errorf("lease job %s: %w", id, err)
		}
		return s.runJob(ctx, j)
	}
}

// completeJob removes job j, its work done, under its lease.
func (s *Service) completeJob(j *core.Job) error {
	return s.db.Update(func(tx store.Tx) error { return tx.CompleteJob(j, s.now()) })
}

// releaseJob ends the lease of a job that was not run, so that it is due
// again as it was. A lease already lost needs no release.
func (s *Service) releaseJob(j *core.Job) {
	err := s.db.Batch(func(tx store.Tx) error { return tx.ReleaseJob(j, s.now()) })
	if err != nil && !errors.Is(err, store.ErrLeaseLost) {
		s.log.Warn("end a job's lease; it is due again when the lease expires", "job_id", j.ID, "err", err)
	}
}

func (s *Service) releaseJobs(jobs []*core.Job) {
	for _, j := range jobs {
		s.releaseJob(j)
	}
}

// runJob runs a job this process leased and commits its outcome under the
// lease: a result whose lease was lost (expired and taken over) is not
// committed, and the job's later holder decides.
func (s *Service) runJob(ctx context.Context, j *core.Job) error {
	kctx, cancel := context.WithTimeout(ctx, s.cfg.KlarnaTimeout)
	defer cancel()
	var err error
	switch j.Kind {
	case core.JobPlaceOrder:
		err = s.placeOrder(kctx, j)
	case core.JobSyncSession, core.JobRereadSession:
		err = s.syncJob(kctx, j)
	case core.JobDisableSession:
		err = s.disable(kctx, j)
	case core.JobRetryCharge:
		err = s.retryCharge(kctx, j)
	case core.JobCheckFraud:
		err = s.checkChargeFraud(kctx, j)
	case core.JobDeliverEvent:
		if s.cfg.Emitter == nil {
			err = s.completeJob(j)
			break
		}
		if err = s.cfg.Emitter.Deliver(kctx, j); err == nil {
			err = s.completeJob(j)
		}
	default:
		s.log.Error("unknown job kind; dropping", "job_id", j.ID, "kind", j.Kind)
		err = s.completeJob(j)
	}
	if errors.Is(err, store.ErrLeaseLost) {
		s.log.Warn("job's lease lost before its result was recorded; its next holder runs it", "job_id", j.ID)
		return err
	}
	if err != nil {
		s.reschedule(j, err)
	}
	return err
}

// reschedule records a failed attempt and sets the next one with backoff
// (at least the Retry-After Klarna asked for), ending the lease.
func (s *Service) reschedule(j *core.Job, cause error) {
	s.Stats.JobsFailed.Add(1)
	now := s.now()
	d := core.Backoff(j.Attempts+1, s.cfg.JobBackoffBase, s.cfg.JobBackoffMax)
	var ke *klarna.Error
	var ra interface{ RetryAfter() time.Duration }
	switch {
	case errors.As(cause, &ke):
		d = max(d, ke.RetryAfter)
	case errors.As(cause, &ra):
		d = ra.RetryAfter() // the job's own schedule (e.g. event delivery)
	}
	nj := *j
	nj.Failed(cause.Error(), now, d)
	err := s.db.Update(func(tx store.Tx) error { return tx.ReleaseJob(&nj, now) })
	if err != nil && !errors.Is(err, store.ErrLeaseLost) {
		s.log.Error("reschedule job", "job_id", j.ID, "err", err)
	}
}

// placeOrder sends the persisted place-order request, byte for byte.
//
// Before each call the job's Sent counter is committed, so hppd knows, also
// after a crash mid-call, whether Klarna may have acted on an earlier attempt.
// The answers (FACTS 2.3, 7.2, 8.1, 8.2) are taken as follows:
//
//   - an order: order_placed;
//   - no definitive answer (timeout, connection error, 5xx, 429, 401): the job
//     runs again and replays the same bytes;
//   - a 2xx hppd cannot use (not JSON, no order_id): the order may exist, so
//     the outcome is unknown, never a failure: logged at error level with
//     Klarna's correlation id, counted, and replayed like a lost answer; after
//     unusableLimit such answers the order is taken to exist (a 2xx says so)
//     and its id is looked for as below;
//   - 403 INVALID_OPERATION ("Authorization token already consumed"), 404
//     SESSION_COMPLETED, or 409 "order has been already completed with
//     different request body" (klarna.IsAlreadyOrdered): the order exists.
//     hppd looks for its id in the HPP session read (order_id, FACTS 1.5); the
//     session ends order_placed with that id, or without one and
//     order_id_unknown true. On a first attempt (no earlier job run sent one,
//     and the client did not resend within this call) these answers mean the
//     same: Klarna gives them only for an authorization
//     or KP session that has an order, which someone placed (an earlier run
//     whose store was restored from a backup, the storefront with the SDK's
//     token, an operator). A paid order must never be reported as failed, so
//     hppd records it as placed and logs the surprise at error level;
//   - any other refusal: the session fails, unless an earlier attempt was sent
//     and the HPP session read shows an order id (the lost answer had placed
//     it, and the authorization has expired since).
func (s *Service) placeOrder(ctx context.Context, j *core.Job) error {
	var sess *core.Session
	if err := s.db.View(func(tx store.Tx) error {
		var err error
		sess, err = tx.Session(j.SessionID)
		return err
	}); err != nil {
		if core.IsNotFound(err) {
			return s.completeJob(j)
		}
		return err
	}
	log := s.log.With("session_id", sess.ID, "job_id", j.ID)
	if sess.Status != core.SessionAuthorized {
		return s.completeJob(j)
	}
	sentBefore := j.Sent
	if err := s.markSent(j); err != nil {
		return err
	}
	order, err := s.klarnaFor(sess.KlarnaAccount).PlaceOrderRaw(ctx, sess.AuthorizationToken, j.Request, j.IdempotencyKey)
	switch {
	case err == nil:
	case klarna.IsUnusableAnswer(err):
		s.Stats.UnusablePlaceOrder.Add(1)
		log.Error("klarna answered the order with a 2xx hppd cannot use; the order may exist, outcome unknown",
			"correlation_id", correlationID(err), "attempt", j.Attempts+1, "err", err)
		if j.Attempts+1 < unusableLimit {
			return err
		}
		return s.orderExists(ctx, sess, j, log, "klarna answered 2xx without a usable order")
	case klarna.IsAlreadyOrdered(err):
		if sentBefore == 0 && !resent(err) {
			log.Error("klarna says the order already exists though hppd sent no earlier attempt; recording it as placed",
				"correlation_id", correlationID(err), "err", err)
		} else {
			log.Warn("replay answered: the order already exists", "correlation_id", correlationID(err), "err", err)
		}
		return s.orderExists(ctx, sess, j, log, "klarna says the order exists ("+klarna.ErrorCode(err)+")")
	case retryable(err):
		log.Warn("place order: no definitive answer; will replay", "attempt", j.Attempts+1, "err", err)
		return err
	case (sentBefore > 0 || resent(err)) && sess.HPPSessionID != "":
		// Refused after an attempt that may have placed the order: the HPP
		// session may know it.
		if id, rerr := s.hppOrderID(ctx, sess); rerr == nil && id != "" {
			log.Warn("order refused on replay, but the HPP session has an order", "order_id", id, "err", err)
			return s.commitOrderExists(sess, j, id, "the HPP session has the order of an earlier attempt", log)
		}
	}
	now := s.now()
	return s.update(sess.ID, func(tx store.Tx, cur *core.Session) (bool, error) {
		if err := tx.CompleteJob(j, s.now()); err != nil {
			return false, err
		}
		if err != nil {
			s.Stats.OrdersFailed.Add(1)
			log.Error("klarna refused the order", "err", err)
			return cur.Fail(kerr(err), core.SourceJob, "klarna refused the order", now), nil
		}
		s.Stats.OrdersPlaced.Add(1)
		log.Info("order placed", "order_id", order.OrderID, "fraud_status", order.FraudStatus)
		changed := cur.OrderPlaced(order.OrderID, order.FraudStatus, now)
		if changed && cur.FraudReviewPending() {
			// Klarna notifies the outcome; re-read it should that be lost.
			cur.CheckAt = now.Add(s.fraudRecheck())
		}
		return changed, nil
	})
}

// unusableLimit: after this many unusable 2xx answers to one place_order job
// the order is taken to exist (each was a 2xx) rather than replayed again.
const unusableLimit = 3

// orderIDReadLimit: a failing HPP read delays the verdict of an order known to
// exist for at most this many job attempts; then it is recorded without id.
const orderIDReadLimit = 3

// markSent commits, before a place-order call, that one more attempt may
// reach Klarna.
func (s *Service) markSent(j *core.Job) error {
	nj := *j
	nj.Sent++
	if err := s.db.Update(func(tx store.Tx) error { return tx.UpdateJob(&nj, s.now()) }); err != nil {
		return err
	}
	j.Sent = nj.Sent
	return nil
}

// orderExists settles a session whose order Klarna says exists: its id comes
// from the HPP session read when that has one (FACTS 1.5). A read without an
// answer is retried with the job a few times before the order is recorded
// without its id.
func (s *Service) orderExists(ctx context.Context, sess *core.Session, j *core.Job, log *slog.Logger, reason string) error {
	id := ""
	if sess.HPPSessionID != "" {
		var err error
		id, err = s.hppOrderID(ctx, sess)
		if err != nil && retryable(err) && j.Attempts+1 < orderIDReadLimit {
			log.Warn("the order exists; reading its id from the HPP session failed, will try again", "err", err)
			return err
		}
	}
	return s.commitOrderExists(sess, j, id, reason, log)
}

func (s *Service) hppOrderID(ctx context.Context, sess *core.Session) (string, error) {
	hs, err := s.klarnaFor(sess.KlarnaAccount).ReadHPPSessionAt(ctx, sess.HPPSessionID, sess.HPPSessionURL)
	if err != nil {
		return "", err
	}
	return hs.OrderID, nil
}

func (s *Service) commitOrderExists(sess *core.Session, j *core.Job, orderID, reason string, log *slog.Logger) error {
	now := s.now()
	return s.update(sess.ID, func(tx store.Tx, cur *core.Session) (bool, error) {
		if err := tx.CompleteJob(j, s.now()); err != nil {
			return false, err
		}
		if !cur.OrderExists(orderID, reason, now) {
			return false, nil
		}
		s.Stats.OrdersPlaced.Add(1)
		if orderID == "" {
			s.Stats.OrdersIDUnknown.Add(1)
			log.Error("order placed with unknown id; find it in Klarna's portal by the session id in merchant_reference1/2", "reason", reason)
		} else {
			log.Info("order placed (found after a lost answer)", "order_id", orderID, "reason", reason)
		}
		return true, nil
	})
}

// resent reports whether err ends a call the client had resent: an earlier
// attempt of it may have reached Klarna.
func resent(err error) bool {
	var ke *klarna.Error
	return errors.As(err, &ke) && ke.Attempt > 1
}

// correlationID is Klarna's correlation id of err, "" if none.
func correlationID(err error) string {
	var ke *klarna.Error
	if errors.As(err, &ke) {
		return ke.CorrelationID
	}
	return ""
}

// syncJob re-reads a session from Klarna and applies what it says. Every
// read waits for a read of the same session in flight. A job a shopper URL
// made (a redirect inside the interval, or one whose own read failed) is
// also spaced: inside the interval it is moved to the interval's end, not
// dropped, so the claim it checks is still read. A callback's job is not
// spaced: the callback proved it comes from Klarna (the secret), Klarna's
// repeats are de-duplicated by event id and by the one sync job per
// session, and a claimed completion is confirmed at once.
func (s *Service) syncJob(ctx context.Context, j *core.Job) error {
	src := j.Source
	if src == "" {
		src = core.SourcePoller
	}
	err := s.reads.do(ctx, j.SessionID, outsideSource(src), s.now, s.cfg.ReadEvery, func() error {
		return s.syncSessionJob(ctx, j.SessionID, src, j)
	})
	if until, ok := recentUntil(err); ok {
		return s.deferJob(j, until)
	}
	return err
}

// outsideSource reports whether a read for src was asked for by a request
// anybody holding a shopper link can repeat.
func outsideSource(src core.Source) bool {
	return src == core.SourceRedirect
}

// deferJob moves job j to until (when it is due sooner), without counting
// a failed attempt, and ends its lease.
func (s *Service) deferJob(j *core.Job, until time.Time) error {
	nj := *j
	if nj.DueAt.Before(until) {
		nj.DueAt = until
	}
	return s.db.Update(func(tx store.Tx) error { return tx.ReleaseJob(&nj, s.now()) })
}

// syncSession re-reads a session from Klarna and applies what it says.
func (s *Service) syncSession(ctx context.Context, id string, src core.Source) error {
	return s.syncSessionJob(ctx, id, src, nil)
}

func (s *Service) syncSessionJob(ctx context.Context, id string, src core.Source, job *core.Job) error {
	if src == core.SourceCallback || src == core.SourceRedirect {
		// The read confirms a completion somebody claimed: it outranks the
		// poller's routine re-reads at the rate limiter.
		ctx = klarna.WithPriority(ctx)
	}
	var sess *core.Session
	if err := s.db.View(func(tx store.Tx) error {
		var err error
		sess, err = tx.Session(id)
		return err
	}); err != nil {
		if core.IsNotFound(err) && job != nil {
			return s.completeJob(job)
		}
		return err
	}
	obs := core.Observation{Source: src, Authoritative: true}
	if sess.Status == core.SessionPending && sess.Integration != core.IntegrationSDK && sess.HPPSessionID == "" {
		// hppd stopped between creating the KP session and recording the HPP
		// session: the storefront never got a redirect URL, so nobody can pay
		// (a callback for an unrecorded HPP session is refused). Give it up,
		// unless a request is still creating it (it holds the lease).
		l, ok, err := s.acquire(createClaim(id))
		if err != nil {
			return err
		}
		if !ok {
			return errCreating
		}
		defer s.releaseLease(createClaim(id), l) // held until the verdict is committed
		now := s.now()
		return s.update(id, func(tx store.Tx, cur *core.Session) (bool, error) {
			if job != nil {
				if err := tx.CompleteJob(job, s.now()); err != nil {
					return false, err
				}
			}
			if cur.HPPSessionID != "" {
				return false, nil
			}
			return cur.Fail(&core.KlarnaError{Messages: []string{"session creation was interrupted before the HPP session was recorded"}},
				src, "creation interrupted", now), nil
		})
	}
	switch {
	case sess.FraudReviewPending():
		// The order waits for Klarna's fraud review: read it from Order
		// Management (a lost notification must not leave it pending).
		return s.checkFraud(ctx, sess, src, job)
	case sess.Status != core.SessionPending:
		// Nothing to learn: authorized sessions wait for their order job.
	case sess.Integration == core.IntegrationSDK:
		kp, err := s.klarnaFor(sess.KlarnaAccount).ReadKPSession(ctx, sess.KPSessionID)
		if err != nil && !klarna.IsNotFound(err) {
			return err
		}
		obs.Gone = err != nil
		if err == nil && kp.AuthorizationToken != "" {
			// The customer authorized, and neither the storefront nor the
			// authorization callback said so: place the order from the
			// read (FACTS 8.3).
			obs.KlarnaStatus = core.KlarnaCompleted
			obs.AuthorizationToken = kp.AuthorizationToken
		}
	default:
		hs, err := s.klarnaFor(sess.KlarnaAccount).ReadHPPSessionAt(ctx, sess.HPPSessionID, sess.HPPSessionURL)
		if err != nil && !klarna.IsNotFound(err) {
			return err
		}
		if err != nil {
			obs.Gone = true
		} else {
			obs.KlarnaStatus = hs.Status
			obs.AuthorizationToken = hs.AuthorizationToken
			obs.OrderID = hs.OrderID
			if hs.UpdatedAt != nil {
				obs.KlarnaUpdatedAt = hs.UpdatedAt.UTC()
			}
		}
	}
	now := s.now()
	var woke bool
	err := s.update(id, func(tx store.Tx, cur *core.Session) (bool, error) {
		changed := false
		if job != nil {
			if err := tx.CompleteJob(job, s.now()); err != nil {
				return false, err
			}
		}
		if cur.Status != core.SessionPending {
			return false, nil
		}
		c, jobs := cur.Observe(obs, now, s.cfg.Policy)
		changed = c || changed
		if cur.FraudReviewPending() {
			// Klarna placed the order: learn its fraud status from Order
			// Management (the HPP read does not carry it).
			jobs = append(jobs, core.Job{ID: core.SyncJobID(id), Kind: core.JobSyncSession, SessionID: id, DueAt: now, CreatedAt: now, Source: src})
		}
		if err := s.addJobs(tx, cur, jobs); err != nil {
			return false, err
		}
		woke = len(jobs) > 0
		return changed, nil
	})
	if woke {
		s.Wake()
	}
	return err
}

// disable asks Klarna to disable a session hppd gives up on.
func (s *Service) disable(ctx context.Context, j *core.Job) error {
	var sess *core.Session
	if err := s.db.View(func(tx store.Tx) error {
		var err error
		sess, err = tx.Session(j.SessionID)
		return err
	}); err != nil {
		if core.IsNotFound(err) {
			return s.completeJob(j)
		}
		return err
	}
	if sess.Status != core.SessionPending {
		return s.completeJob(j)
	}
	var err error
	if sess.Integration != core.IntegrationSDK {
		err = s.klarnaFor(sess.KlarnaAccount).DisableHPPSessionAt(ctx, sess.HPPSessionID, sess.HPPSessionURL)
	}
	var ke *klarna.Error
	switch {
	case err == nil:
		now := s.now()
		return s.update(sess.ID, func(tx store.Tx, cur *core.Session) (bool, error) {
			if err := tx.CompleteJob(j, s.now()); err != nil {
				return false, err
			}
			return cur.Disabled(core.SourceJob, now), nil
		})
	case errors.As(err, &ke) && ke.HTTPStatus == 400:
		// Completed meanwhile: read it instead of marking it dead (FACTS 7.6).
		return s.syncSessionJob(ctx, sess.ID, core.SourceJob, j)
	case klarna.IsNotFound(err):
		now := s.now()
		return s.update(sess.ID, func(tx store.Tx, cur *core.Session) (bool, error) {
			if err := tx.CompleteJob(j, s.now()); err != nil {
				return false, err
			}
			c, _ := cur.Observe(core.Observation{Source: core.SourceJob, Authoritative: true, Gone: true}, now, s.cfg.Policy)
			return c, nil
		})
	}
	return err
}
