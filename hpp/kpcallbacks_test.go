package hpp

import (
	"errors"
	"strings"
	"testing"

	"github.com/hppd/hppd/core"
)

func TestDecodeAuthorizationCallback(t *testing.T) {
	cases := []struct {
		name, body, field string
	}{
		{"valid", `{"authorization_token":"tok","session_id":"kp-1"}`, ""},
		{"unknown fields tolerated", `{"authorization_token":"tok","session_id":"kp-1","new":{"x":1}}`, ""},
		{"no token", `{"session_id":"kp-1"}`, "authorization_token"},
		{"empty token", `{"authorization_token":"","session_id":"kp-1"}`, "authorization_token"},
		{"token a number", `{"authorization_token":1,"session_id":"kp-1"}`, "authorization_token"},
		{"token too long", `{"authorization_token":"` + strings.Repeat("a", 1025) + `","session_id":"kp-1"}`, "authorization_token"},
		{"no session id", `{"authorization_token":"tok"}`, "session_id"},
		{"session id null", `{"authorization_token":"tok","session_id":null}`, "session_id"},
		{"not an object", `["tok"]`, "body"},
		{"null", `null`, "body"},
		{"empty", ``, "body"},
		{"trailing data", `{"authorization_token":"tok","session_id":"kp-1"} {}`, "body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cb, err := DecodeAuthorizationCallback([]byte(tc.body))
			if tc.field == "" {
				if err != nil || cb.AuthorizationToken != "tok" || cb.SessionID != "kp-1" {
					t.Fatalf("got %+v, %v", cb, err)
				}
				return
			}
			var e *core.Error
			if !asCoreError(err, &e) || e.Code != core.CodeInvalid || e.Field != tc.field {
				t.Fatalf("err %v, want invalid %s", err, tc.field)
			}
		})
	}
}

func TestDecodeNotification(t *testing.T) {
	cases := []struct {
		name, body, field string
	}{
		{"valid", `{"order_id":"o-1","event_type":"FRAUD_RISK_ACCEPTED"}`, ""},
		{"an event type hppd does not know", `{"order_id":"o-1","event_type":"FRAUD_RISK_SOMETHING_NEW"}`, ""},
		{"no order id", `{"event_type":"FRAUD_RISK_ACCEPTED"}`, "order_id"},
		{"order id a number", `{"order_id":7,"event_type":"FRAUD_RISK_ACCEPTED"}`, "order_id"},
		{"no event type", `{"order_id":"o-1"}`, "event_type"},
		{"not JSON", `order_id=o-1`, "body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := DecodeNotification([]byte(tc.body))
			if tc.field == "" {
				if err != nil || n.OrderID != "o-1" || n.EventType == "" {
					t.Fatalf("got %+v, %v", n, err)
				}
				return
			}
			var e *core.Error
			if !asCoreError(err, &e) || e.Code != core.CodeInvalid || e.Field != tc.field {
				t.Fatalf("err %v, want invalid %s", err, tc.field)
			}
		})
	}
}

func FuzzDecodeKPCallbacks(f *testing.F) {
	f.Add([]byte(`{"authorization_token":"tok","session_id":"kp-1"}`))
	f.Add([]byte(`{"order_id":"o-1","event_type":"FRAUD_RISK_REJECTED"}`))
	f.Add([]byte(`{"order_id":{"a":[1,2]},"session_id":"\u0000"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, decode := range []func([]byte) error{
			func(b []byte) error { _, err := DecodeAuthorizationCallback(b); return err },
			func(b []byte) error { _, err := DecodeNotification(b); return err },
		} {
			err := decode(body)
			if err == nil {
				continue
			}
			var e *core.Error
			if !asCoreError(err, &e) || e.Code != core.CodeInvalid || e.Field == "" {
				t.Fatalf("error %v does not name a field", err)
			}
		}
	})
}

func asCoreError(err error, e **core.Error) bool { return errors.As(err, e) }
