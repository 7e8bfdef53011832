package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is how far a webhook-timestamp may be from the receiver's
// clock, either way, when Verify is given no tolerance (Standard Webhooks'
// reference libraries use 5 minutes).
const DefaultTolerance = 5 * time.Minute

// Verification errors. None of them quotes a secret or a signature.
var (
	ErrInvalidSecret       = errors.New("events: secret is not \"whsec_\" (optional) followed by standard base64 of a non-empty key")
	ErrInvalidMessageID    = errors.New("events: webhook-id is empty or contains '.'")
	ErrMissingHeader       = errors.New("events: missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrInvalidTimestamp    = errors.New("events: webhook-timestamp is not an integer of unix seconds")
	ErrTimestampTooOld     = errors.New("events: webhook-timestamp is too old")
	ErrTimestampTooNew     = errors.New("events: webhook-timestamp is too far in the future")
	ErrNoMatchingSignature = errors.New("events: no v1 signature matches")
)

// secretKey decodes a secret for Sign and Verify: "whsec_" + base64, or the
// base64 alone (as Standard Webhooks' reference libraries accept).
func secretKey(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.Strict().DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(k) == 0 {
		return nil, ErrInvalidSecret
	}
	return k, nil
}

// mac is HMAC-SHA256(key, msgID + "." + unix seconds + "." + body).
func mac(key []byte, msgID string, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msgID))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, ts, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

func validMessageID(id string) bool { return id != "" && !strings.Contains(id, ".") }

// signature is the webhook-signature value of one key: "v1," + base64(MAC).
func signature(key []byte, msgID string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, msgID, ts.Unix(), body))
}

// Sign returns the webhook-signature value "v1,<base64 HMAC-SHA256>" of body
// sent as message msgID at ts (whole unix seconds), under secret ("whsec_" +
// base64 of the key). A message id may not contain '.', the separator of the
// signed content.
func Sign(secret, msgID string, ts time.Time, body []byte) (string, error) {
	k, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	if !validMessageID(msgID) {
		return "", ErrInvalidMessageID
	}
	return signature(k, msgID, ts, body), nil
}

// Verify checks a received event, the storefront's side of Sign: the three
// headers are present, webhook-timestamp is within tolerance of now (either
// way; tolerance <= 0 means DefaultTolerance), and one of the space-separated
// signatures in webhook-signature is a "v1," signature of
// webhook-id.webhook-timestamp.body under secret, compared in constant time.
// Other versions (v1a, …) are skipped. body must be the raw request body,
// not JSON re-encoded. The error is one of the Err* values of this package.
func Verify(secret string, h http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	k, err := secretKey(secret)
	if err != nil {
		return err
	}
	id, tsRaw, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsRaw == "" || sigs == "" {
		return ErrMissingHeader
	}
	if !validMessageID(id) {
		return ErrInvalidMessageID
	}
	ts, err := strconv.ParseInt(tsRaw, 10, 64)
	if err != nil || strconv.FormatInt(ts, 10) != tsRaw {
		// Canonical digits only, so the signed content is the header's text.
		return ErrInvalidTimestamp
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	// Compare in whole seconds, without building times far outside the
	// representable range from a hostile header.
	nowS, tol := now.Unix(), int64(tolerance/time.Second)
	switch {
	case ts < nowS-tol:
		return ErrTimestampTooOld
	case ts > nowS+tol:
		return ErrTimestampTooNew
	}
	want := mac(k, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrNoMatchingSignature
}
