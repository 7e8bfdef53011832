// Package events tells storefronts what happened to their sessions and
// charges, so that they need not poll: signed HTTP POSTs following the
// Standard Webhooks specification (https://www.standardwebhooks.com),
// delivered from hppd's durable outbox.
//
// # Configuration
//
// HPPD_EVENTS_FILE names a JSON file (LoadFile, ParseConfig):
//
//	{"storefronts": {
//	  "shop-eu": {"url": "https://shop.example/hooks/hppd", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
//	}}
//
// A storefront's name is its JWT iss (^[A-Za-z0-9._-]{1,64}$); url is an
// absolute http(s) URL; secret is "whsec_" + base64 of 24 to 64 random bytes,
// one per storefront (e.g. `echo whsec_$(head -c 32 /dev/urandom | base64)`).
// A storefront without an entry gets no events. Errors name the field, never
// the secret, and a Config prints secrets as "<redacted>".
//
// # Design: an outbox, not a fire-and-forget call
//
// SessionEvent and ChargeEvent are called inside the store transaction of
// the state change (hpp calls them from sessionChanged and emitCharge). They
// build the payload there, so it is the resource as it is in that
// transaction, and return it as a core.Job of kind deliver_event with the
// exact body bytes, which the caller writes in that transaction (events
// itself writes nothing and knows no store):
//
//	ID "deliver_event/msg_<26 random base32>", Storefront, EventType, Request <body>, DueAt now
//
// The change and its event commit together or not at all: no event without
// its change, no change without its event, whatever crashes when. hpp's job
// runner then calls Deliver, which POSTs the stored bytes unchanged. A 2xx
// removes the job. Anything else (3xx included: redirects are never
// followed, a timeout of 10 s, a connection error) is a *DeliveryError whose
// RetryAfter the runner reschedules the job by: Options.Schedule indexed by
// the job's failed attempts (default 5s, 5m, 30m, 2h, 5h, 10h, 10h: eight
// attempts over about 27.6 hours), plus up to 10% random jitter, or the
// receiver's Retry-After if longer. The schedule lives in the job's Attempts
// and DueAt in bbolt, so it survives restarts. When it is used up the event
// is logged (ids and type, never the body or secret) and counted in Dropped,
// and the job is removed. Delivery is at least once: a storefront may see an
// event twice (a crash after its 2xx, before the job's removal commits) and
// must de-duplicate on webhook-id, which is the same on every attempt.
// Events of one resource may arrive out of order after retries; the
// resource's status and history in data, and timestamp, tell which is newer.
//
// # Payload and headers
//
// The body is an Event:
//
//	{"type": "session.order_placed", "timestamp": "2026-03-01T12:00:00.123Z", "data": {…}}
//
// type is one of session.authorized, session.order_placed, session.cancelled,
// session.expired, session.failed, session.fraud_status_changed (data:
// api.Session) or charge.charged, charge.fallback, charge.recovered,
// charge.needs_customer, charge.failed, charge.fraud_status_changed (data:
// api.Charge with its fallback session); timestamp is when the change
// happened. Each attempt carries
//
//	Content-Type: application/json
//	webhook-id: msg_…                (the same on every attempt of one event)
//	webhook-timestamp: 1772366400    (unix seconds of this attempt)
//	webhook-signature: v1,<base64(HMAC-SHA256(key, webhook-id + "." + webhook-timestamp + "." + body))>
//
// where key is the base64-decoded part of the secret after "whsec_".
//
// # Verifying an event (storefront side)
//
//  1. Read the raw body (bounded); do not parse and re-encode it first.
//  2. Call Verify(secret, r.Header, body, 5*time.Minute, time.Now()): it
//     checks that webhook-timestamp is within the tolerance (replays of old
//     deliveries fail) and that one of the space-separated "v1," signatures
//     matches, in constant time.
//  3. Skip a webhook-id already processed; then decode the Event and act on
//     type. Answer 2xx quickly; any other answer means "send it again later".
//
// Example (example_test.go) is a complete handler. Receivers in other
// languages can use any Standard Webhooks library with the same secret.
package events
