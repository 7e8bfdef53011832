package klarna

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
)

// Klarna's guides show authorized_payment_method as a string, its OpenAPI
// documents as an object (FACTS 8.1); both decode, through the client too.
func TestAuthorizedPaymentMethodShapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want *AuthorizedPaymentMethod
	}{
		{"string", `{"order_id":"o1","fraud_status":"ACCEPTED","authorized_payment_method":"invoice"}`, &AuthorizedPaymentMethod{Type: "invoice"}},
		{"object", `{"order_id":"o1","fraud_status":"ACCEPTED","authorized_payment_method":{"type":"fixed_amount","number_of_installments":3}}`,
			&AuthorizedPaymentMethod{Type: "fixed_amount", NumberOfInstallments: 3}},
		{"null", `{"order_id":"o1","fraud_status":"ACCEPTED","authorized_payment_method":null}`, nil},
		{"absent", `{"order_id":"o1","fraud_status":"ACCEPTED"}`, nil},
		{"unexpected shape", `{"order_id":"o1","fraud_status":"ACCEPTED","authorized_payment_method":["invoice"]}`, nil},
		{"unknown fields", `{"order_id":"o1","fraud_status":"ACCEPTED","authorized_payment_method":{"type":"invoice","new":{"x":1}},"extra":[1,2]}`,
			&AuthorizedPaymentMethod{Type: "invoice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o Order
			if err := json.Unmarshal([]byte(tc.body), &o); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if o.OrderID != "o1" || o.FraudStatus != "ACCEPTED" {
				t.Fatalf("order = %+v", o)
			}
			switch {
			case tc.want == nil && o.AuthorizedPaymentMethod != nil:
				t.Fatalf("authorized_payment_method = %+v, want none", *o.AuthorizedPaymentMethod)
			case tc.want != nil && (o.AuthorizedPaymentMethod == nil || *o.AuthorizedPaymentMethod != *tc.want):
				t.Fatalf("authorized_payment_method = %+v, want %+v", o.AuthorizedPaymentMethod, *tc.want)
			}

			srv := newRecorder(t, jsonReply(200, tc.body))
			c, _ := testClient(t, srv.URL, nil)
			got, err := c.PlaceOrder(context.Background(), authToken, testOrderRequest(), idemKey)
			if err != nil || got.OrderID != "o1" {
				t.Fatalf("PlaceOrder = %+v, %v", got, err)
			}
		})
	}
}

// A field hppd only records may change shape without costing the order.
func TestOrderDecodeIsLenient(t *testing.T) {
	var o Order
	if err := json.Unmarshal([]byte(`{"order_id":"o2","fraud_status":7,"redirect_url":{"u":1}}`), &o); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if o.OrderID != "o2" || o.FraudStatus != "" || o.RedirectURL != "" {
		t.Fatalf("order = %+v", o)
	}
	for _, bad := range []string{`"o3"`, `[1]`, `null`, `{"order_id":5}`} {
		if err := json.Unmarshal([]byte(bad), &o); err == nil {
			t.Errorf("%s decoded as an order", bad)
		}
	}
}

// A 2xx order answer hppd cannot use is an error of its own class: not
// transient (Klarna acted), not final (the order may exist).
func TestUnusableOrderAnswer(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"not json", `<html>`},
		{"no order_id", `{"fraud_status":"ACCEPTED","authorized_payment_method":"invoice"}`},
		{"empty order_id", `{"order_id":""}`},
		{"array", `[]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRecorder(t, reply{status: 200, header: map[string]string{"Content-Type": "application/json", CorrelationIDHeader: "c-u"}, body: tc.body})
			c, _ := testClient(t, srv.URL, nil)
			for _, call := range []func() (*Order, error){
				func() (*Order, error) {
					return c.PlaceOrder(context.Background(), authToken, testOrderRequest(), idemKey)
				},
				func() (*Order, error) {
					return c.CreateTokenOrder(context.Background(), custToken, &TokenOrderRequest{PurchaseCurrency: "SEK", OrderAmount: 1}, idemKey)
				},
			} {
				o, err := call()
				var e *Error
				if o != nil || !errors.As(err, &e) || e.CorrelationID != "c-u" || e.HTTPStatus != 200 {
					t.Fatalf("got %+v, %#v", o, err)
				}
				if !IsUnusableAnswer(err) || !errors.Is(err, ErrUnusableAnswer) {
					t.Fatalf("not reported as unusable: %v", err)
				}
				if IsTransient(err) || IsFinal(err) || IsAlreadyOrdered(err) {
					t.Fatalf("an unusable 2xx is classified: %v", err)
				}
			}
			if n := len(srv.requests()); n != 2 {
				t.Fatalf("%d requests, want one per call (a 2xx is never resent)", n)
			}
		})
	}
	if IsUnusableAnswer(&Error{Op: OpPlaceOrder, HTTPStatus: 503}) || IsUnusableAnswer(errors.New("x")) {
		t.Fatal("other failures reported as unusable answers")
	}
}

func TestIsAlreadyOrdered(t *testing.T) {
	for _, tc := range []struct {
		e    *Error
		want bool
	}{
		{&Error{HTTPStatus: 403, Code: "INVALID_OPERATION", Messages: []string{"Authorization token already consumed"}}, true},
		{&Error{HTTPStatus: 404, Code: "SESSION_COMPLETED", Messages: []string{"Session has already been completed"}}, true},
		{&Error{HTTPStatus: 409, Code: "BAD_VALUE", Messages: []string{"The order has been already completed with different request body"}}, true},
		{&Error{HTTPStatus: 409, Code: "BAD_VALUE", Messages: []string{"Not matching fields: [order_amount]"}}, false},
		{&Error{HTTPStatus: 404, Code: "NOT_FOUND", Messages: []string{"Invalid authorization token"}}, false},
		{&Error{HTTPStatus: 403, Code: "REJECTED"}, false},
		{&Error{HTTPStatus: 500, Code: "INTERNAL_SERVER_ERROR"}, false},
	} {
		if got := IsAlreadyOrdered(tc.e); got != tc.want {
			t.Errorf("IsAlreadyOrdered(%v) = %v, want %v", tc.e, got, tc.want)
		}
	}
}

// The HPP read decides whether an order is placed: a changed shape of a
// field hppd only records must not cost the read (FACTS 8.1).
func TestReadHPPSessionIsLenient(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"as documented", `{"session_id":"h1","status":"COMPLETED","authorization_token":"a1","order_id":"o1","updated_at":"2026-01-02T03:04:05.000Z","customer":{"given_name":"Anna"}}`, true},
		{"changed shapes of recorded fields", `{"session_id":"h1","status":"COMPLETED","authorization_token":"a1","order_id":"o1","updated_at":1767323045,"expires_at":"soon","klarna_reference":7,"customer":"Anna","new":{"a":[1]}}`, true},
		{"order_id not a string", `{"session_id":"h1","status":"COMPLETED","order_id":5}`, false},
		{"not an object", `["h1"]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRecorder(t, jsonReply(200, tc.body))
			c, _ := testClient(t, srv.URL, nil)
			st, err := c.ReadHPPSession(context.Background(), "h1")
			if !tc.ok {
				if err == nil || !IsUnusableAnswer(err) {
					t.Fatalf("got %+v, %v; want an unusable answer", st, err)
				}
				return
			}
			if err != nil || st.SessionID != "h1" || st.Status != "COMPLETED" || st.AuthorizationToken != "a1" || st.OrderID != "o1" {
				t.Fatalf("got %+v, %v", st, err)
			}
			if tc.name == "as documented" && (st.UpdatedAt == nil || st.Customer == nil || st.Customer.GivenName != "Anna") {
				t.Fatalf("documented fields lost: %+v", st)
			}
		})
	}
}
