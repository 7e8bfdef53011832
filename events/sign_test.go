package events_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/events"
)

// The Standard Webhooks test vector, from the specification's reference
// libraries (standard-webhooks/standard-webhooks, libraries/go/webhook_test.go,
// TestWebhookSign; the same values appear in its other languages' tests).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorMsgID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignStandardWebhooksVector(t *testing.T) {
	got, err := events.Sign(vectorSecret, vectorMsgID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSignature {
		t.Fatalf("Sign = %s, want %s", got, vectorSignature)
	}
	// Sub-second parts of the time are not signed (the header has seconds).
	got, _ = events.Sign(vectorSecret, vectorMsgID, time.Unix(vectorTimestamp, 999_999_999), []byte(vectorPayload))
	if got != vectorSignature {
		t.Fatalf("Sign with nanoseconds = %s", got)
	}
	// The reference libraries also accept the secret without its prefix.
	got, _ = events.Sign(strings.TrimPrefix(vectorSecret, "whsec_"), vectorMsgID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload))
	if got != vectorSignature {
		t.Fatalf("Sign without prefix = %s", got)
	}
	if _, err := events.Sign("whsec_***", vectorMsgID, time.Unix(vectorTimestamp, 0), nil); !errors.Is(err, events.ErrInvalidSecret) {
		t.Fatalf("bad secret: %v", err)
	}
	if _, err := events.Sign(vectorSecret, "msg.1", time.Unix(vectorTimestamp, 0), nil); !errors.Is(err, events.ErrInvalidMessageID) {
		t.Fatalf("id with a dot: %v", err)
	}
}

func vectorHeader() http.Header {
	h := http.Header{}
	h.Set(events.HeaderID, vectorMsgID)
	h.Set(events.HeaderTimestamp, strconv.Itoa(vectorTimestamp))
	h.Set(events.HeaderSignature, vectorSignature)
	return h
}

func TestVerify(t *testing.T) {
	at := time.Unix(vectorTimestamp, 0)
	const tol = 5 * time.Minute
	other := "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
	cases := []struct {
		name   string
		secret string
		edit   func(h http.Header)
		body   string
		now    time.Time
		tol    time.Duration
		want   error
	}{
		{name: "vector verifies", now: at},
		{name: "within tolerance, receiver behind", now: at.Add(-tol)},
		{name: "within tolerance, receiver ahead", now: at.Add(tol)},
		{name: "zero tolerance means the default", now: at.Add(-4 * time.Minute), tol: -1},
		{name: "several signatures, one valid", now: at, edit: func(h http.Header) {
			h.Set(events.HeaderSignature, other+" v2,"+vectorSignature[3:]+"  "+vectorSignature+" v1a,abc")
		}},
		{name: "secret without prefix", now: at, secret: strings.TrimPrefix(vectorSecret, "whsec_")},
		{name: "too old", now: at.Add(tol + time.Second), want: events.ErrTimestampTooOld},
		{name: "too new", now: at.Add(-tol - time.Second), want: events.ErrTimestampTooNew},
		{name: "custom tolerance", now: at.Add(2 * time.Minute), tol: time.Minute, want: events.ErrTimestampTooOld},
		{name: "wrong signature", now: at, edit: func(h http.Header) { h.Set(events.HeaderSignature, other) }, want: events.ErrNoMatchingSignature},
		{name: "only another version", now: at, edit: func(h http.Header) {
			h.Set(events.HeaderSignature, "v1a,"+vectorSignature[3:])
		}, want: events.ErrNoMatchingSignature},
		{name: "signature without version", now: at, edit: func(h http.Header) {
			h.Set(events.HeaderSignature, vectorSignature[3:])
		}, want: events.ErrNoMatchingSignature},
		{name: "signature not base64", now: at, edit: func(h http.Header) { h.Set(events.HeaderSignature, "v1,***") }, want: events.ErrNoMatchingSignature},
		{name: "body changed", now: at, body: `{"test": 2432232315}`, want: events.ErrNoMatchingSignature},
		{name: "id changed", now: at, edit: func(h http.Header) { h.Set(events.HeaderID, "msg_other") }, want: events.ErrNoMatchingSignature},
		{name: "timestamp changed", now: at, edit: func(h http.Header) {
			h.Set(events.HeaderTimestamp, strconv.Itoa(vectorTimestamp+1))
		}, want: events.ErrNoMatchingSignature},
		{name: "wrong secret", now: at, secret: testSecret, want: events.ErrNoMatchingSignature},
		{name: "bad secret", now: at, secret: "whsec_%%%", want: events.ErrInvalidSecret},
		{name: "missing id", now: at, edit: func(h http.Header) { h.Del(events.HeaderID) }, want: events.ErrMissingHeader},
		{name: "missing timestamp", now: at, edit: func(h http.Header) { h.Del(events.HeaderTimestamp) }, want: events.ErrMissingHeader},
		{name: "missing signature", now: at, edit: func(h http.Header) { h.Del(events.HeaderSignature) }, want: events.ErrMissingHeader},
		{name: "id with a dot", now: at, edit: func(h http.Header) { h.Set(events.HeaderID, "msg.x") }, want: events.ErrInvalidMessageID},
		{name: "timestamp not a number", now: at, edit: func(h http.Header) { h.Set(events.HeaderTimestamp, "1614265330.5") }, want: events.ErrInvalidTimestamp},
		{name: "timestamp not canonical", now: at, edit: func(h http.Header) { h.Set(events.HeaderTimestamp, "+1614265330") }, want: events.ErrInvalidTimestamp},
		{name: "timestamp far out", now: at, edit: func(h http.Header) { h.Set(events.HeaderTimestamp, "-9223372036854775808") }, want: events.ErrTimestampTooOld},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := vectorHeader()
			if tc.edit != nil {
				tc.edit(h)
			}
			secret := tc.secret
			if secret == "" {
				secret = vectorSecret
			}
			body := tc.body
			if body == "" {
				body = vectorPayload
			}
			tol := tc.tol
			if tol == 0 {
				tol = 5 * time.Minute
			} else if tol < 0 {
				tol = 0
			}
			err := events.Verify(secret, h, []byte(body), tol, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if err != nil {
				for _, s := range []string{secret, strings.TrimPrefix(secret, "whsec_"), vectorSignature[3:]} {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("error %q discloses a secret or signature", err)
					}
				}
			}
		})
	}
}

// TestSignVerifyRoundTrip signs with Sign and checks with Verify for keys of
// every allowed length.
func TestSignVerifyRoundTrip(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	body := []byte(`{"type":"charge.charged","data":{}}`)
	for n := events.MinSecretBytes; n <= events.MaxSecretBytes; n += 8 {
		secret := secretOf(n, byte(n))
		sig, err := events.Sign(secret, "msg_1", now, body)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		h.Set(events.HeaderID, "msg_1")
		h.Set(events.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		h.Set(events.HeaderSignature, sig)
		if err := events.Verify(secret, h, body, time.Minute, now); err != nil {
			t.Fatalf("%d-byte key: %v", n, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(vectorMsgID, strconv.Itoa(vectorTimestamp), vectorSignature, []byte(vectorPayload))
	f.Add("msg_x", "0", "v1,", []byte(""))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(events.HeaderID, id)
		h.Set(events.HeaderTimestamp, ts)
		h.Set(events.HeaderSignature, sig)
		err := events.Verify(vectorSecret, h, body, time.Minute, time.Unix(vectorTimestamp, 0))
		if err == nil {
			// Only a genuine signature may pass.
			n, perr := strconv.ParseInt(h.Get(events.HeaderTimestamp), 10, 64)
			if perr != nil {
				t.Fatalf("accepted timestamp %q", ts)
			}
			want, serr := events.Sign(vectorSecret, h.Get(events.HeaderID), time.Unix(n, 0), body)
			if serr != nil || !strings.Contains(" "+h.Get(events.HeaderSignature)+" ", want[3:]) {
				t.Fatalf("accepted a forged signature %q", sig)
			}
			return
		}
		if strings.Contains(err.Error(), strings.TrimPrefix(vectorSecret, "whsec_")) {
			t.Fatal("error discloses the secret")
		}
	})
}
