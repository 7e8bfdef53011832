// Package chaos is hppd's chaos run: it drives the real `hppd serve` binary
// against the Klarna simulator (`hppd sim`), both as separate processes,
// while the simulator injects faults on every operation and a killer
// SIGKILLs hppd at random moments, then checks that nothing was lost,
// duplicated or moved backwards, and prints the result as a table.
//
// `make chaos` runs the large version (cmd/hppd-chaos), `make chaos
// REPLICAS=3` the same with three replicas on PostgreSQL; the Go test of
// this package runs a small one inside `make test`. The driver itself (this
// package) runs under the race detector in the Go test; hppd runs as a
// built binary, which the test builds with -race, so races inside hppd are
// reported as well (GORACE log_path in the work directory).
//
// # Processes and wiring
//
//	driver (this package) ──storefront API──► hppd serve ──► tap ──► hppd sim
//	   │ └─shopper: POST /_sim/hpp/{id}/{action}, GET hppd's shopper URL      │
//	   └─/_sim/ driver API (faults, tokens, orders, requests, callbacks) ─────┘
//	                           hppd ◄── status_update callbacks ── hppd sim
//
// The simulator stays up for the whole run: it is Klarna, and its state is
// the ground truth the checks compare hppd with. hppd listens on one fixed
// port for the whole run (restarts reuse it, so the status_update URLs
// Klarna holds stay valid) and keeps one bbolt file across restarts.
// hppd's Klarna base URL points at the tap, a reverse proxy inside the
// driver that forwards every Klarna call unchanged and counts the calls in
// flight per operation. The tap is how the killer knows that a kill lands
// while a place_order (or a customer token order) is in flight, instead of
// guessing from timing; when hppd dies the proxied call is abandoned
// exactly as a direct call would be. The tap also notes when each call
// arrived, by rate category, for the rate check.
//
// # Replicas (Options.Replicas > 1, make chaos REPLICAS=3)
//
//	driver ──storefront API, shoppers──► balancer ──► hppd serve ×N ──► tap ──► hppd sim
//	                          hppd sim ── callbacks ──► balancer           │
//	                                       PostgreSQL ◄─────────────────────┘ (every replica)
//
// The replicas share one PostgreSQL database: the server of
// HPPD_TEST_DATABASE_URL, or a throwaway cluster of internal/pgtest that the
// run starts and removes. Each replica listens on a fixed port of its own
// and reaches Klarna through its own port of the tap, so the killer knows
// which replica has a place_order in flight. The balancer is a reverse
// proxy inside the driver on one port, and HPPD_PUBLIC_URL points at it, so
// the merchant_urls Klarna holds (callbacks, the shopper's redirects) go
// through it like the storefront's calls. It sends each request to the next
// replica that is up, round-robin; a replica that refuses the connection is
// down (the request goes to the next one: nothing reached the dead replica)
// until the driver sees its /readyz answer 200 after the restart. A request
// that reached a replica which then died is answered 502, and its sender
// retries, as behind any balancer. The killer SIGKILLs one replica at a
// time, with a chance of a second one at once, and restarts them on their
// ports; the others keep serving meanwhile. The replicas run with the
// shortest lease (HPPD_LEASE_TTL 1m), and the settle budget adds it twice
// (ReplicaBound): work leased by a killed replica waits out its lease
// before another takes it, and a job that met the held lease retries on its
// doubling backoff, up to another lease's length after it ended.
// The replicas run at lower Klarna rates than one process (replicaRates),
// low enough that the work presses on the budget they share.
//
// # The run
//
//  1. Start the simulator, the tap and hppd; get a storefront JWT from
//     `hppd token`; set the faults: on every operation injected 503s and
//     timeouts longer than hppd's Klarna timeout (some after the operation
//     took effect), 429 bursts on session creation, extra latency on
//     place_order, and callbacks dropped, duplicated, delayed and reordered.
//  2. Workers work through a shuffled list of purchases and token charges.
//     A purchase is POST /v1/sessions (started again under a new key when
//     hppd answers that its creation failed at Klarna), then a shopper who
//     pays, declines, goes back, errs, double-clicks the success link, pays
//     and vanishes before the redirect, or never shows up. A charge makes a fresh
//     customer token at the simulator (ok, unavailable, failed once, or
//     cancelled), POSTs /v1/charges with the customer present or absent;
//     when hppd could not start the fallback purchase while the customer
//     is present (needs_customer), the storefront asks for it (POST
//     /v1/charges/{id}/fallback), and the shopper may pay it. Every
//     storefront POST carries an Idempotency-Key and is retried with the
//     same key, with bounded backoff, while hppd is dead, answers 5xx, or
//     says the key is still in progress.
//  3. The killer SIGKILLs hppd Options.Kills times at random moments of
//     the work: at seeded progress points spread over 5-70% of it, but at
//     most a few seconds apart, so a run whose progress stalls cannot push
//     the kills back. Every other kill, the first included, waits for a
//     place_order call in flight at the tap. After a short pause hppd is
//     restarted with the same environment, port and data file.
//  4. When the workers are done, the faults are cleared and hppd is given a
//     bounded budget to settle: the poller's bound (the charge safety
//     resend delay, the stale period, the poll period, the charge retry
//     schedule and slack for job backoff; see Bound). The wait ends early
//     once every session and charge is where it must be, or once every
//     violation left is in a state no timer of hppd can move (only pending
//     and authorized sessions and pending or retrying charges can move on
//     their own) and nothing changed for ten
//     seconds: waiting longer could not change the verdict. It never
//     asserts speed.
//  5. The checks run on snapshots of the simulator (orders, callbacks,
//     HPP statuses) and of hppd's API (every session and charge of the
//     storefront, with history), then hppd is stopped and its data file is
//     opened and checked (store.Check).
//
// # The checks (one table row each)
//
//   - every HPP session Klarna completed has exactly one order at Klarna,
//     and hppd reports it order_placed with that order id;
//   - no order exists for a session that was not completed, no token order
//     exists for a charge hppd does not report paid with that order, and no
//     charge, nor the one customer token a storefront charge request used,
//     was charged twice;
//   - no session whose KP session has an order at Klarna, and no charge
//     whose fallback session has one, ends failed, whatever Klarna answered
//     to the replays of its placement;
//   - every status_update hppd answered 2xx has its effect: a COMPLETED
//     one an authorized or placed session, a non-final one that status (or
//     one Klarna reached later) in the session's history;
//   - no session or charge the storefront was answered for is missing, no
//     history moves along a transition the state machines do not have, and
//     no final state is behind a state the storefront saw earlier;
//   - after the settle budget every session and charge is final, or waits
//     correctly: pending only while Klarna's session is open and unpaid,
//     unexpired and with Klarna's status known; a charge fallback only with
//     an open fallback session, needs_customer only without the customer;
//   - Klarna never saw more calls per second than hppd was configured to
//     send, per rate category (KP session creation, HPP session creation,
//     customer token orders, every other call, token orders included): not
//     in the busiest calendar second, as Klarna counts, nor in the busiest
//     sliding second [t, t+1s), from the arrival times at the tap (which
//     sees hppd's calls only; the driver's own reads of Klarna go around
//     it);
//   - plus rows for the storefront API (every request answered, no 500),
//     the kills (enough, at least one during place_order), the data file's
//     (or database's) integrity, and data races reported by a race-built
//     hppd.
//
// # Klarna's replay answers
//
// Options.Replay (hppd-chaos -replay) selects how the simulator answers a
// repeated place-order for an authorization that already has an order: with
// the original order (identical, the default), or the harsher ways Klarna's
// error page lists (FACTS 8.2): 403 INVALID_OPERATION "already consumed"
// (consumed) or 404 SESSION_COMPLETED (session_completed); the harsher modes
// also answer authorized_payment_method as a bare string (FACTS 8.1). The
// mode is the simulator's behaviour, not a fault: it stays while hppd
// settles. `make chaos` runs identical, then consumed, each with every check.
//
// # Replay
//
// The seed is printed first. It fixes every choice of the driver (the order
// of the work, each purchase's and charge's plan, the killer's progress
// points) and seeds the simulator's ids and fault dice. Concurrency still
// interleaves requests differently from run to run, so a replay reproduces
// the same workload and fault rates, not the same schedule.
package chaos
