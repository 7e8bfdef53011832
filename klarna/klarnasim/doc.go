// Package klarnasim is a stateful, in-memory simulator of the Klarna APIs hppd
// talks to: Klarna Payments v1 (KP), the Hosted Payment Page v1 (HPP) with a
// real HTML payment page, and the Customer Token v1 API (CT). It is used
// in-process by Go tests (New, Handler) and as a stand-alone server by
// `hppd sim` (ListenAndServe).
//
// # Source of truth
//
// Every behaviour follows ../shared/klarna/FACTS.md and the OpenAPI documents
// in ../shared/klarna/openapi; where Klarna is silent the simulator does what
// FACTS section 7 says hppd expects. The rule of thumb is "no kinder than
// Klarna": whatever Klarna would refuse, the simulator refuses too, so a bug
// in hppd shows up against the simulator first.
//
// # Request pipeline
//
// Every request on a Klarna path goes through one pipeline (see api.go):
// the body is read (bounded), the request is recorded (Requests), HTTP Basic
// credentials are checked in constant time (401 otherwise), then Klarna's
// rate limits of the operation's categories (ratelimit.go: per environment,
// per calendar second; 429 with Retry-After over them, nothing processed),
// then the fault rules of the operation run (latency, 429 bursts, timeouts, injected
// errors, before or after the effect), then the operation's handler. A
// handler never writes to the network: it returns a reply value, so a fault
// with after_effect can let the operation take effect and still replace the
// answer, and a customer token order can store its reply for an
// idempotency-key replay. Every answer carries Klarna-Correlation-Id and the
// X-Ratelimit-* headers; errors are Klarna's ErrorV2 body
// {"error_code","error_messages","correlation_id"}.
//
// # State and time
//
// All state lives in maps behind one mutex (Sim.mu); the simulator is
// race-free under any number of concurrent requests. The clock is
// Options.Now plus an offset that tests move with Advance or POST
// /_sim/clock; nothing ever waits for simulated time to pass. Lifetimes
// (FACTS 1.8): a KP session lives 48 h, its HPP sessions expire 1 h earlier
// (then every HPP call gives 404), an authorization token lives 60 min and a
// newer authorization of the same KP session supersedes it, and a KP session
// can have one order only.
//
// Identifiers (session ids, tokens, order ids, event ids, correlation ids)
// and the fault dice come from one math/rand source seeded with
// Options.Seed, so the same seed and the same request sequence give the same
// identifiers.
//
// # Validation
//
// Bodies are checked field by field against the OpenAPI schemas and Klarna's
// documented arithmetic (validate.go): required fields, enums, patterns and
// lengths, purchase_country against a table of Klarna markets and its
// currency, locale as ll-CC with CC equal to the purchase country, per line
// total_amount = quantity*unit_price - total_discount_amount and
// total_tax_amount within ±1 of total_amount*tax_rate/(10000+tax_rate), and
// order_amount and order_tax_amount as the sums over the lines (a sales_tax
// line counts with its total_amount towards order_tax_amount, Klarna's US
// tax model). All arithmetic is done with math/big, so no input can
// overflow it. Negative unit_price and total_amount are accepted only on
// discount, gift_card and store_credit lines. A failure is 400 BAD_VALUE
// with one message per field, "Bad value: order_lines[0].total_amount".
//
// # The hosted payment page
//
// redirect_url is <PublicURL>/hpp/pay/{id}, a plain HTML page (no script)
// that shows the amount and the lines and has the buttons Pay, Decline,
// Back, Cancel and Error, each a form POST. Opening the page moves the
// session to IN_PROGRESS; a button applies the action and answers 303 to
// the matching merchant URL with {{session_id}} filled in everywhere,
// {{authorization_token}} only in the success URL of a place_order_mode
// NONE session and {{order_id}} only in the success URL of a PLACE_ORDER or
// CAPTURE_ORDER session (FACTS 1.3). Actions: pay gives COMPLETED (with an
// authorization token, or with an order the simulator places itself),
// decline gives FAILED, back gives BACK, error gives ERROR (redirect to
// error, or failure when error is empty). Cancel follows FACTS 1.2: "in
// eCommerce a cancel URL is always treated as back", so for a KP session
// with acquiring_channel ECOMMERCE (the default) cancel gives BACK and the
// session stays usable, and only for IN_STORE and TELESALES does it give
// the final CANCELLED; either way the browser goes to the cancel URL. An
// action on a WAITING session first opens it (the shopper must see the
// page before pressing a button), so both status changes are reported.
//
// # Callbacks
//
// Every HPP status change (the actions above and DISABLED by DELETE) POSTs
// {"event_id","session"} to merchant_urls.status_update with
// {{session_id}} filled in; session is exactly the read-session body.
// Deliveries run in goroutines owned by a dispatcher (callbacks.go): the
// first attempts of one session's events are made in order, an attempt
// without a 2xx within CallbackTimeout is retried after CallbackRetryDelay,
// up to CallbackRetries times (FACTS 1.7). Callback faults drop, duplicate,
// delay or reorder events. Close stops and waits for every goroutine;
// WaitCallbacks waits until nothing is pending. Callback URLs are recorded
// and logged without their query string, which holds the merchant's secret.
//
// # Customer tokens
//
// Tokens are made by the test driver with a scripted behaviour: ok;
// unavailable (403 UNAVAILABLE_PAYMENT_METHOD until a KP order is placed,
// by KP place order or by an HPP PLACE_ORDER/CAPTURE_ORDER payment, for a KP
// session with intent buy, Klarna's default, that carries the token in
// customer.customer_token; then the token is recovered); failed with N
// failures (403 PAYMENT_METHOD_FAILED for the first N charge attempts, then
// success); or one final error. A Klarna-Idempotency-Key on a token order
// is remembered for 24 h: a repeated key gets the original reply, success
// or error, and never charges again. Faults injected before the effect are
// not remembered, since Klarna never processed that request.
//
// # The test driver
//
// Under /_sim/ (same Basic auth, documented in README.md) and mirrored by
// Go methods: make tokens, act on HPP sessions, authorize KP sessions as
// the Klarna Payments widget would, list orders, requests and callback
// attempts, set faults and move the clock.
package klarnasim
