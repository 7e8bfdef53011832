// Package hpp holds hppd's flows: creating KP + HPP sessions with templated
// merchant_urls, taking Klarna's status callbacks and the shopper's redirects,
// charging customer tokens with Klarna's recovery flow, and running the durable
// jobs that place orders, re-read and disable sessions and retry charges.
//
// # Exactly once
//
// Every state change is one store transaction that also writes the jobs it
// needs (the outbox). Job ids are derived from their purpose
// (core.PlaceOrderJobID), and a session moves to authorized only once, so
// however many callbacks, redirects and poller runs see COMPLETED at the same
// moment, one place_order job exists. The job's request body and
// Klarna-Idempotency-Key are built and committed with the authorization, before
// the first attempt, and every attempt (also after a crash) sends those exact
// bytes: Klarna answers a replay of an identical body with the same order.
//
// # Lost answers
//
// Klarna may instead refuse the replay as already done (FACTS 8.2: 403
// INVALID_OPERATION "Authorization token already consumed", 404
// SESSION_COMPLETED, 409 "order has been already completed with different
// request body"). The place_order job commits a Sent counter before each
// call, so hppd knows, also after a crash mid-call, that Klarna may have acted
// on an earlier attempt; after such an attempt these answers mean the order
// exists. The session ends order_placed with the order id of the HPP session
// read (FACTS 1.5), or without one and order_id_unknown true (counted in
// hppd_orders_id_unknown_total); a linked fallback charge ends recovered the
// same way. On a first attempt, with no earlier attempt sent, hppd reads the
// three answers the same way: Klarna gives them only for an authorization or
// KP session that has an order, someone placed it (a run whose store was
// restored from a backup, the storefront holding the SDK's token, an
// operator), and a paid order must never be reported failed. That case is
// logged at error level.
//
// A 2xx order answer hppd cannot use (not JSON, no order_id; KP and token
// orders) is an unknown outcome, never a failure: it is logged at error level
// with Klarna's correlation id, counted (hppd_klarna_unusable_answers_total)
// and replayed with the same bytes and key; after three such answers the 2xx
// is taken at its word (order_placed or charged, order id unknown).
//
// hppd's session id goes into merchant_reference2 of the KP session and of the
// order (merchant_reference1 when the storefront set only reference2; nothing
// when it set both), so the merchant can find an order in Klarna's portal.
//
// Who runs what is decided in the store, never in memory (store.Leases): a
// job runs under a lease (owner Config.Owner, expiry Config.LeaseTTL, a
// fencing token), and its result commits in the same transaction as the
// check that the lease still holds, so two processes on one store never both
// record a job's result. The same goes for a session's creation
// ("create/<id>": the job that gives up an interrupted creation waits while a
// request holds it) and a charge's fallback ("fallback/<charge id>"); a
// storefront request makes a charge's attempts under the lease of the
// charge's safety job, taken in the transaction that writes the job. A job
// whose process died is due again when its lease expires (bbolt, which one
// process holds, ends them all at Open); across a crash the job is still in
// the store and runs again.
//
// # Charges
//
// hpp makes the token order calls and creates the fallback sessions; what an
// answer or an event does to a charge is core's charge state machine
// (core.Charge.Answered, FallbackStarted, FallbackRefused, SessionEnded,
// FraudRead),
// pure functions like core.Session.Observe. hpp classifies Klarna's answer
// (tokenOrderAnswer), applies the transition to the charge read inside the
// transaction, and writes the core.ChargeStep it returns (writeCharge): the
// jobs it ends and adds, the charge, hppd's view of the token, the counters
// and the storefront event.
//
// A present customer's fallback within POST /v1/charges commits twice: the
// Idempotency-Key's claim with the charge and its safety job (PrepareKey),
// which must be on disk before the token order is sent; then, once Klarna
// answered "unavailable" and made the KP and the HPP session, the answer,
// the session with both ids, the charge's link and the request's answer
// under its key, in one transaction (fallbackWithAnswer, createdAtOnce,
// sessionLink, keyAnswer). A SIGKILL before the second leaves the charge
// pending under its safety job, which the job or a retry with the same key
// finishes, resending the same attempt with the same Klarna key and body;
// the two Klarna sessions of the dead run were sent to nobody. Should Klarna
// not make the HPP session at once, the KP session is recorded with the
// answer first, and the HPP step retried on it: three commits.
//
// # Errors
//
// An error hpp returns says what was being done and names the records
// involved by id, never by a customer token, an authorization token or a
// secret: "token order of charge chg_…: outcome unknown: klarna
// create_token_order: 503 …". It wraps its cause, so Klarna's typed errors
// and core.Error stay reachable with errors.As. A core.Error's Message is
// what an API client sees; internal causes go into its Err. When the store
// cannot list due work, the job runner logs it and backs off (core.Backoff
// from 1 s to a minute) instead of trying again at every wake-up; a failing
// job is logged and rescheduled with its own backoff.
//
// # Event numbers
//
// Storefront events leave through sessionEvent, chargeEvent and writeCharge,
// inside the transaction of the change: each counts one more event on the
// record (core.Session.NextEvent, core.Charge.NextEvent), stores the record,
// and hands it to the Emitter, so the payload carries its sequence number.
// Numbering at emission rather than at each status change keeps the numbers
// gap-free: a charge moves to fallback before its session exists and emits
// charge.fallback only once it does.
//
// # Placement first
//
// The job runner (Run, runner.go) has three lanes with workers of their own:
// urgent (place_order, retry_charge, check_fraud and sync_session, the
// re-read that confirms a callback's or a redirect's claim), routine
// (reread_session, the poller's re-reads, and disable_session) and events
// (deliver_event). A job goes to a free worker of its lane as soon as there is
// one, so neither a read storm nor a storefront endpoint that does not answer
// delays an order. Urgent jobs' Klarna calls carry klarna.WithPriority and go
// first at the rate limiter too; routine re-reads also wait for their share of
// Klarna's "other" budget (Config.RereadRate, HPPD_REREAD_SHARE), of which
// each of N replicas takes 1/N (SetShare, shares.go). On a store that leases
// due jobs itself (PostgreSQL: FOR UPDATE SKIP LOCKED), each lane's free
// workers' worth is leased in one statement that skips the jobs other
// replicas are taking; on bbolt the runner scans the due index and claims job
// by job.
//
// A pending session with no news is re-read on a schedule that backs off
// (core.Policy.Schedule, HPPD_STALE_AFTER); its position (Session.Rereads)
// is stored with it, and a callback, a redirect or a change of Klarna's status
// starts the schedule again. The poller keeps at most a minute's worth of
// routine re-reads queued as jobs; the rest stay due in the session index and
// show in hppd_reread_backlog.
//
// # Klarna accounts
//
// Config.Accounts lists the Klarna accounts (accounts.go); without them the
// Klarna given to New is the one account, DefaultAccount. A new session or
// charge takes the account its storefront may use that lists its
// purchase_country (else the storefront's account that lists none), records
// it in KlarnaAccount, and every later call for it resolves its client with
// klarnaFor. A customer token is charged at the account of its first charge
// (TokenInfo.KlarnaAccount). Records without an account use the default one.
//
// # Trust
//
// Callbacks are unsigned. A callback must carry the per-session secret (only
// its SHA-256 is stored; compared in constant time) and the session's HPP id;
// it is de-duplicated on event_id in the same transaction that records it, and a
// final status it claims only schedules a re-read of the session from Klarna.
// Shopper redirects are hints too: hppd re-reads before it acts on them, and
// one without the session's HPP id (hppId) is 404, never a redirect.
//
// Between storefronts: ids derived from an Idempotency-Key are an HMAC under
// the data file's secret (keyedID), so they cannot be computed from a guessed
// key; a customer token belongs to the storefront that first charged it and
// those it shares with (owners.go), and any other gets 404 before Klarna is
// called; a storefront with a share of Klarna's rates gets 429 over it
// (shares.go) instead of starving the others.
//
// # Merchant URLs
//
// For a session with id S and callback secret K hppd sends Klarna:
//
//	status_update  {public}/klarna/hpp/S/status?secret=K&hppId={{session_id}}
//	success        {public}/shopper/S/success?hppId={{session_id}}
//	failure, cancel, back, error likewise, with their own last path element
//
// The shopper URLs carry no authorization token: hppd reads it from Klarna, so
// it never lands in browser history or access logs.
//
// An SDK session (integration sdk) has no HPP session; its KP session gets
//
//	authorization  {public}/klarna/kp/S/authorization?secret=K
//
// where Klarna POSTs the authorization token (the authorization callback), so
// the order is placed even when the storefront never posts the token; the
// poller reads the KP session's authorization_token should the callback be
// lost. Every KP order hppd places carries, with a secret of its own (its hash
// is kept as NotifySecretHash),
//
//	notification   {public}/klarna/kp/S/notification?secret=N
//
// for the outcome of a PENDING fraud review, which hppd records only after
// reading the order from Order Management. Unlike the other secrets, N is in
// the stored place_order job until the order is placed (the body is replayed
// byte for byte); all it lets a holder do is make hppd read Order Management.
package hpp
