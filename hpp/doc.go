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
// Within one process a job runs at most once at a time (an in-memory claim);
// across a crash the job is still in the store and runs again on start-up.
//
// # Trust
//
// Callbacks are unsigned. A callback must carry the per-session secret (only
// its SHA-256 is stored; compared in constant time) and the session's HPP id;
// it is de-duplicated on event_id in the same transaction that records it, and a
// final status it claims only schedules a re-read of the session from Klarna.
// Shopper redirects are hints too: hppd re-reads before it acts on them.
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
