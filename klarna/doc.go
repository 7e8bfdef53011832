// Package klarna is hppd's typed client for the Klarna APIs it uses: Klarna
// Payments v1 (KP sessions, place order, cancel authorization), the Hosted
// Payment Page v1 (HPP sessions: create, read, disable, distribute) and the
// Customer Token v1 API (read a token, create an order with it). The request
// and response bodies live in types.go with Klarna's exact JSON field names;
// the facts behind every choice are in ../shared/klarna/FACTS.md.
//
// # Calls
//
// Every operation has a name (OpCreateKPSession, ...) used in errors, logs,
// metrics labels and by the simulator's fault injection. A call is one or
// more HTTP attempts. Each attempt:
//
//   - waits for a token of its rate category (a token bucket per category,
//     golang.org/x/time/rate). Klarna counts per category and environment
//     (FACTS 4, 8.5): KP session creation and HPP session creation (5/s each
//     in playground, 40/s in production), and every other call (50/s, 200/s).
//     Customer token orders have a bucket of their own (at the creation
//     figure by default) and also take a token of "other", so neither
//     reading of Klarna's category list is exceeded. Defaults follow
//     Config.Environment (DefaultRates). The buckets pace rather than burst
//     (burst 1, at 95% of the rate): Klarna counts requests per one-second
//     window, and a bucket of burst b lets rate+b requests into one window.
//     Processes sharing an account each run at their share (SetShare), less
//     the burst their own bucket adds, so together they keep one bucket's
//     bound.
//     Order placements, token orders, session creation and calls whose ctx
//     is marked WithPriority (reads that confirm a completion) outrank
//     routine calls: routine calls reserve their tokens one at a time, so a
//     priority call waits behind at most one routine reservation;
//   - runs under its own timeout (Config.Timeout, 30 s by default) unless the
//     caller's context ends sooner;
//   - authenticates with HTTP Basic, sends Klarna's User-Agent convention
//     ("Library/hppd_<ver> Language/Go_<ver> OS/<goos>_<goarch>"), JSON
//     Content-Type and Accept headers, and Klarna-Idempotency-Key where the
//     caller gave one;
//   - reads at most 1 MiB of the answer.
//
// # Errors
//
// Every failure of a call that reached the network stage is a *Error holding
// the operation, the HTTP status (0 when no answer came), Klarna's error_code,
// error_messages and correlation id (from the body, or the
// Klarna-Correlation-Id header), the Retry-After delay of a 429 or 503, and
// the transport cause. Its text never holds a token, a secret or a URL
// (request URLs carry authorization and customer tokens). Invalid arguments
// (an empty id, a nil request) are reported before anything is sent, as
// errors wrapping ErrInvalidRequest.
//
// The helpers sort a failure into the classes hppd acts on; an error answer
// (4xx, 5xx) or a missing answer falls in exactly one of them:
//
//   - IsFallbackTrigger: 403 UNAVAILABLE_PAYMENT_METHOD, the customer token
//     cannot be charged, start the fallback purchase flow (FACTS 3.3);
//   - IsRetryCharge: 403 PAYMENT_METHOD_FAILED, a definitive decline that a
//     later, new charge attempt may overcome (FACTS 3.3, 7.7);
//   - IsTransient: no definitive answer (timeout, connection error, a
//     cancelled context), 5xx or 429; resending with the same idempotency key
//     is safe;
//   - IsFinal: any other 4xx; do not resend unchanged.
//
// IsNotFound (404) cuts across IsFinal. A 2xx whose body cannot be decoded
// is in no class: Klarna did act, so it must not be treated as transient.
// A 3xx (the default HTTP client does not follow redirects) is in no class
// either.
//
// # Resends
//
// Only calls that are safe to repeat are resent automatically: reads (GET),
// writes that carry a Klarna-Idempotency-Key (place order and create token
// order when the caller passes a key), and session creation (KP and HPP):
// a 429 processed nothing (FACTS 8.5), and after a 5xx or a timeout a stray
// unpaid session is harmless while a lost checkout is not. A stray HPP
// session whose id an error answer carried is disabled once a resend
// succeeded. Calls are resent on transient failures, up to
// Config.MaxAttempts attempts in all, with the same body bytes and the same
// key, after an exponential backoff with full jitter (a random delay up to
// BackoffBase·2^(n-1), capped at BackoffMax), or after the server's
// Retry-After when that is longer. A Retry-After over Config.MaxRetryAfter
// (30 s by default) is not waited for: the call ends with that answer.
// Distribution and the DELETE calls are never resent. A retry that could
// not start before the caller's deadline is not waited for, and a cancelled
// context stops the call at once; both return the last attempt's error.
package klarna
