package hpp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
)

// DefaultAccount is the name of the account made by the HPPD_KLARNA_*
// variables, and of the only account of a Service given no Accounts.
const DefaultAccount = "default"

// Account is one Klarna account hppd holds credentials for.
type Account struct {
	Name   string
	Klarna Klarna
	// Countries are the purchase countries (ISO 3166 alpha-2) the account
	// serves; none: every country no other account of the storefront claims.
	Countries []string
	// CreateRate, OtherRate and TokenOrderRate are the account's Klarna
	// rates (requests/s) that storefront shares divide (shares.go); 0: no
	// share is enforced for that category.
	CreateRate, OtherRate, TokenOrderRate float64
}

// serves reports whether a lists country.
func (a *Account) serves(country string) bool {
	return slices.ContainsFunc(a.Countries, func(c string) bool { return strings.EqualFold(c, country) })
}

// accounts is the routing table of a Service.
type accounts struct {
	list   []Account
	byName map[string]*Account
	// def serves records that name no account (written before accounts).
	def *Account
	// storefront → names of the accounts it may use (absent: all).
	storefronts map[string][]string
}

func newAccounts(kl Klarna, list []Account, def string, storefronts map[string][]string) *accounts {
	if len(list) == 0 {
		list = []Account{{Name: DefaultAccount, Klarna: kl}}
	}
	a := &accounts{list: list, byName: make(map[string]*Account, len(list)), storefronts: storefronts}
	for i := range a.list {
		a.byName[a.list[i].Name] = &a.list[i]
	}
	a.def = a.byName[def]
	if a.def == nil {
		a.def = a.byName[DefaultAccount]
	}
	if a.def == nil {
		a.def = &a.list[0]
	}
	return a
}

// Accounts returns the names of the Klarna accounts, in configuration order.
func (s *Service) Accounts() []string {
	out := make([]string, len(s.acct.list))
	for i, a := range s.acct.list {
		out[i] = a.Name
	}
	return out
}

// accountName is the account a record naming name uses ("" → the default).
func (s *Service) accountName(name string) string {
	if name == "" {
		return s.acct.def.Name
	}
	return name
}

// klarnaFor is the Klarna client of the named account; "" is the default
// account (records written before accounts existed). An account the
// configuration no longer has answers every call with an error saying so,
// so its records wait (jobs back off) until the operator puts it back.
func (s *Service) klarnaFor(name string) Klarna {
	if name == "" {
		return s.acct.def.Klarna
	}
	if a, ok := s.acct.byName[name]; ok {
		return a.Klarna
	}
	return missingAccount(name)
}

// route picks the account that serves country for storefront: the one of
// the storefront's accounts listing the country, else the one listing no
// countries. Configuration checks (internal/config) make the choice unique.
func (s *Service) route(storefront, country string) (string, error) {
	allowed := s.acct.storefronts[storefront]
	var catchAll *Account
	for i := range s.acct.list {
		a := &s.acct.list[i]
		if allowed != nil && !slices.Contains(allowed, a.Name) {
			continue
		}
		if a.serves(country) {
			return a.Name, nil
		}
		if len(a.Countries) == 0 && catchAll == nil {
			catchAll = a
		}
	}
	if catchAll != nil {
		return catchAll.Name, nil
	}
	return "", core.Invalid("purchase_country", "%s is not served by any Klarna account this storefront may use", strings.ToUpper(country))
}

// mayUse reports whether storefront may use the named account.
func (s *Service) mayUse(storefront, name string) bool {
	allowed, ok := s.acct.storefronts[storefront]
	return !ok || slices.Contains(allowed, s.accountName(name))
}

// missingAccount is the Klarna of an account the configuration does not have.
type missingAccount string

func (m missingAccount) err(op string) error {
	// Transient (no answer, with a cause): its records' jobs back off and
	// resume once the account is configured again.
	msg := fmt.Sprintf("Klarna account %q is not in hppd's configuration", string(m))
	return &klarna.Error{Op: op, Code: "ACCOUNT_NOT_CONFIGURED", Messages: []string{msg}, Err: errors.New(msg)}
}

func (m missingAccount) CreateKPSession(context.Context, *klarna.KPSessionRequest) (*klarna.KPSession, error) {
	return nil, m.err("create_kp_session")
}
func (m missingAccount) ReadKPSession(context.Context, string) (*klarna.KPSessionRead, error) {
	return nil, m.err("read_kp_session")
}
func (m missingAccount) PlaceOrderRaw(context.Context, string, []byte, string) (*klarna.Order, error) {
	return nil, m.err("place_order")
}
func (m missingAccount) CreateHPPSession(context.Context, *klarna.HPPSessionRequest) (*klarna.HPPSession, error) {
	return nil, m.err("create_hpp_session")
}
func (m missingAccount) ReadHPPSessionAt(context.Context, string, string) (*klarna.HPPSessionStatus, error) {
	return nil, m.err("read_hpp_session")
}
func (m missingAccount) DisableHPPSessionAt(context.Context, string, string) error {
	return m.err("disable_hpp_session")
}
func (m missingAccount) ReadCustomerToken(context.Context, string) (*klarna.CustomerToken, error) {
	return nil, m.err("read_customer_token")
}
func (m missingAccount) CreateTokenOrderRaw(context.Context, string, []byte, string) (*klarna.Order, error) {
	return nil, m.err("create_token_order")
}
func (m missingAccount) ReadOrder(context.Context, string) (*klarna.OMOrder, error) {
	return nil, m.err("read_order")
}
func (m missingAccount) PaymentSessionURL(string) string { return "" }

// tokenAccount is the account a new charge of token uses: the one that
// issued it (recorded at its first charge), else the one serving country.
func (s *Service) tokenAccount(storefront, token, country string) (string, error) {
	var t *core.TokenInfo
	if err := s.db.View(func(tx store.Tx) error {
		var err error
		t, err = tx.Token(storefront, token)
		if core.IsNotFound(err) {
			t, err = nil, nil
		}
		return err
	}); err != nil {
		return "", &core.Error{Code: core.CodeInternal, Message: "read token", Err: err}
	}
	if t == nil || t.KlarnaAccount == "" {
		return s.route(storefront, country)
	}
	if !s.mayUse(storefront, t.KlarnaAccount) {
		return "", core.Invalid("customer_token", "was issued by Klarna account %s, which this storefront may not use", t.KlarnaAccount)
	}
	return t.KlarnaAccount, nil
}

// readToken reads a customer token at the account that issued it; a token
// hppd has not charged yet is looked for at each account the storefront may
// use, in configuration order, and the first that knows it answers.
func (s *Service) readToken(ctx context.Context, storefront string, info *core.TokenInfo, token string) (*klarna.CustomerToken, string, error) {
	if info != nil || len(s.acct.list) == 1 {
		name := ""
		if info != nil {
			name = info.KlarnaAccount
		}
		if err := s.withinShare(storefront, name, shareOther); err != nil {
			return nil, "", err
		}
		kt, err := s.klarnaFor(name).ReadCustomerToken(ctx, token)
		return kt, s.accountName(name), err
	}
	var first error
	for _, a := range s.acct.list {
		if !s.mayUse(storefront, a.Name) {
			continue
		}
		if err := s.withinShare(storefront, a.Name, shareOther); err != nil {
			return nil, "", err
		}
		kt, err := a.Klarna.ReadCustomerToken(ctx, token)
		if err == nil || !klarna.IsNotFound(err) {
			return kt, a.Name, err
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = &klarna.Error{Op: "read_customer_token", HTTPStatus: 404, Code: "NOT_FOUND"}
	}
	return nil, "", first
}
