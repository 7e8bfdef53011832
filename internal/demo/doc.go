// Package demo is hppd's demonstration: a small storefront a person can click
// through, and a scripted purchase that prints every step. `make demo` (the
// program cmd/hppd-demo) runs both against the Klarna simulator and a real
// hppd, with no Klarna account and no network.
//
// # The storefront
//
// Storefront (New) is a plain http.Handler of server-rendered HTML: forms
// and links, a little CSS, no script. It plays a merchant's shop that uses
// hppd the way a real one would, only through hppd's public storefront API
// (a JWT from Options.Token on every call) and, for the parts a real shop
// gets from its own customer database, the simulator's test-driver API:
//
//	GET  /          the cart and four scenarios, each with a Buy button
//	POST /buy       run a scenario; 303 to Klarna's payment page or to /result
//	GET  /result    the session and/or charge as hppd reports them
//	POST /cancel    ask hppd to cancel a session the shopper gave up on
//
// The scenarios are Scenarios: a saved customer token that charges fine,
// one whose payment method is unavailable (hppd falls back to a Klarna
// session and hosted payment page, and the shopper pays there), one that is
// declined once (hppd retries at once with a new idempotency key, as the
// customer is present), and a plain hosted-payment-page checkout. For a
// token scenario Buy first makes a customer token with the scripted
// behaviour at the simulator (POST /_sim/tokens) and then charges it with
// POST /v1/charges (customer_present true); the plain checkout calls POST
// /v1/sessions. Every Buy sends a fresh Idempotency-Key (a real shop derives
// it from its own order, so that a resubmitted form cannot buy twice; the
// demo's purchases are all new ones). When hppd's answer has a redirect URL
// (the session's, or the fallback session's of a charge) the shopper's
// browser is sent there, otherwise straight to the result page.
//
// The result page reads the session (GET /v1/sessions/{id}) and the charge
// (GET /v1/charges/{id}; a session names its charge in charge_id, a charge
// its session in session.id) and shows their statuses, order ids, charge
// attempts, histories and the raw JSON. It is what hppd reports, never what
// the shop guesses from the redirect it came back on. While hppd still has
// work to do the page refreshes itself (a meta refresh). It stops when both
// resources are final, and also when the shopper came back without paying
// (Klarna's status FAILED, BACK or ERROR): the session then stays pending at
// hppd, since the shopper may still pay, and waiting would never end, so the
// page offers "Pay again" (the session's redirect URL) and "Cancel
// purchase" (POST /v1/sessions/{id}/cancel) instead.
//
// # The scripted purchase
//
// Walk drives one hosted-payment-page purchase through hppd and the
// simulator's test-driver API and prints each step: create the session,
// print the redirect URL, open and pay the page (POST /_sim/hpp/{id}/open and
// /pay), follow Klarna's redirect to hppd as a browser would, poll the session
// until hppd has placed the order, and print the order as the simulator
// recorded it (GET /_sim/orders). It returns an error at the first step
// that does not go as documented.
//
// Nothing here prints or logs a secret: the storefront JWT, the simulator's
// password and the customer tokens (hppd shows them masked) stay out of the
// pages, the output and the logs.
package demo
