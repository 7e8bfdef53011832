package hpp

import (
	"context"
	"testing"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
)

func TestRouteByCountryAndStorefront(t *testing.T) {
	s := New(nil, nil, Config{
		Accounts: []Account{
			{Name: "eu", Countries: []string{"SE", "NO"}},
			{Name: "rest"},
			{Name: "na", Countries: []string{"US"}},
		},
		StorefrontAccounts: map[string][]string{"nordic": {"eu"}, "us": {"na", "rest"}},
	})
	cases := []struct {
		storefront, country, want string
	}{
		{"any", "SE", "eu"},
		{"any", "se", "eu"},
		{"any", "US", "na"},
		{"any", "GB", "rest"},
		{"nordic", "NO", "eu"},
		{"nordic", "US", ""},
		{"us", "SE", "rest"},
		{"us", "US", "na"},
	}
	for _, tc := range cases {
		got, err := s.route(tc.storefront, tc.country)
		if tc.want == "" {
			if core.ErrorCodeOf(err) != core.CodeInvalid || err.(*core.Error).Field != "purchase_country" {
				t.Errorf("%s %s: %q, %v; want invalid purchase_country", tc.storefront, tc.country, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %s: %q, %v; want %s", tc.storefront, tc.country, got, err, tc.want)
		}
	}
	if !s.mayUse("nordic", "eu") || s.mayUse("nordic", "na") || !s.mayUse("any", "na") {
		t.Error("mayUse does not follow StorefrontAccounts")
	}
}

func TestKlarnaForDefaultsAndMissingAccounts(t *testing.T) {
	s := New(nil, nil, Config{Accounts: []Account{{Name: "first"}, {Name: DefaultAccount}}})
	if s.accountName("") != DefaultAccount {
		t.Fatalf("records without an account use %q, want %q", s.accountName(""), DefaultAccount)
	}
	_, err := s.klarnaFor("gone").ReadOrder(context.Background(), "o1")
	var ke *klarna.Error
	if !asKlarna(err, &ke) || ke.Code != "ACCOUNT_NOT_CONFIGURED" || !klarna.IsTransient(err) {
		t.Fatalf("an account no longer configured: %v (want a transient ACCOUNT_NOT_CONFIGURED, so jobs wait)", err)
	}
	if s := New(nil, nil, Config{}); len(s.Accounts()) != 1 || s.Accounts()[0] != DefaultAccount {
		t.Fatalf("accounts without Config.Accounts: %v", s.Accounts())
	}
}
