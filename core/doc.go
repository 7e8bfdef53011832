// Package core holds hppd's domain: purchases and their money arithmetic,
// sessions, charges, durable jobs, the allowed state transitions and the error
// type every adapter maps to its own protocol. It imports nothing of hppd's and
// does no I/O, so every rule here is a pure function that tests can drive with
// a fixed clock.
//
// # Sessions
//
// A Session is one Klarna purchase: a KP session plus (for the hosted page
// integration) an HPP session on top of it. hppd's own status moves only forward:
//
//	pending ──COMPLETED, mode NONE──► authorized ──order placed──► order_placed
//	   │  └─COMPLETED, PLACE/CAPTURE (order_id)─────────────────► order_placed
//	   ├─storefront cancel (DELETE → DISABLED) ──► cancelled
//	   ├─no final status near expiry (DELETE), or Klarna forgot it ──► expired
//	   └─(authorized) authorization expired / order refused ──► failed
//
// An authorized session whose placement Klarna refuses as already done (the
// order exists: FACTS 8.2) goes to order_placed, with OrderIDUnknown when hppd
// cannot learn the order's id (Session.OrderExists).
//
// WAITING, IN_PROGRESS, BACK, FAILED, ERROR and MANUAL_ID_CHECK keep a session
// pending: the shopper may still pay. Final statuses absorb every later
// observation. Klarna's status is kept beside hppd's as KlarnaStatus.
//
// Observations come from callbacks (unsigned hints), shopper redirects, the
// poller and jobs. Only an authoritative observation (a read of the session from
// Klarna) may move a session to a final status or to authorized; a callback that
// claims one only schedules a re-read (job sync_session). Observe is the one
// transition function: (session, observation) → (changed session, jobs).
//
// # Jobs
//
// Every side effect that must follow a state change (placing the order,
// re-reading, disabling, retrying a charge, delivering a storefront event) is a
// Job written in the same transaction as the change. A job's ID is derived from
// what it is for (e.g. "place_order/<session id>"), so however many callbacks,
// redirects and poller runs see COMPLETED at once, the store keeps one job.
//
// # Charges
//
// A Charge is one token charge and its recovery:
//
//	(new) ─200──────────────────────────────► charged
//	  ├─403 UNAVAILABLE, present──► fallback ──session order_placed──► recovered
//	  │                               └─session cancelled/expired/failed──► failed
//	  ├─403 UNAVAILABLE, absent ──► needs_customer ──POST …/fallback──► fallback
//	  ├─403 PAYMENT_METHOD_FAILED, present ─retries used up─► failed
//	  ├─403 PAYMENT_METHOD_FAILED, absent ──► retrying ──schedule──► charged | failed
//	  └─other 4xx ──► failed
//
// In detail, as the code runs it: "(new)" is pending until the first answer is
// recorded; no answer (timeout, 5xx, 429, 401) keeps the charge where it is and
// the same attempt is resent with the same key, and so is a 2xx hppd cannot use
// until the third, which counts as 200 with the order id unknown. "present"
// retries happen inside the storefront's request (a new key at once,
// PresentRetries times); a decline recorded after the request (by the safety
// job) goes to retrying like an absent customer's. A retry answered UNAVAILABLE
// goes to fallback or needs_customer as a first answer would, by
// CustomerPresent. A charge in fallback whose session Klarna refuses to create
// fails; a failed charge, like needs_customer, may be sent to fallback by POST
// …/fallback. A 200 answered with fraud status PENDING is read again from Order
// Management (check_fraud).
//
// The charge's transitions are pure functions like Observe: (charge, what
// happened, policy, now) → the changed charge and a ChargeStep, which names
// the jobs to add and to drop, the storefront event, the outcome to count and
// how the token's view changes. The caller writes the step in one transaction
// with the charge. Answered applies Klarna's answer to a token order attempt
// (no answer and a 2xx hppd cannot use are recorded and resent with the same
// key; after UnusableLimit unusable 2xx answers the token is taken as
// charged, its order id unknown; a declined attempt with the customer waiting
// gets a new key at once, PresentRetries times, and without the customer the
// retries of ChargePolicy.RetrySchedule); FallbackStarted and FallbackRefused
// link or refuse the fallback session; SessionEnded recovers or fails a charge
// when its fallback session ends; FraudRead records the outcome of a fraud
// review read from Order Management. Paid and failed charges, and charges no
// longer waiting for an answer, absorb later answers: the step is settled and
// changes nothing.
package core
