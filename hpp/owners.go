package hpp

import (
	"slices"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// A customer token belongs to the storefront that first charged it
// (store's token_owners) and to the storefronts its owner shares its tokens
// with (Config.TokenSharing). Any other storefront is told the token does
// not exist: 404 for a read or a charge, before Klarna is called.

// mayUseToken reports whether storefront may read or charge token: nobody
// owns it yet, storefront owns it, or its owner shares it.
func (s *Service) mayUseToken(tx store.Tx, storefront, token string) (bool, error) {
	owner, err := tx.TokenOwner(token)
	if err != nil {
		return false, err
	}
	return owner == "" || owner == storefront || slices.Contains(s.cfg.TokenSharing[owner], storefront), nil
}

// checkTokenOwner is mayUseToken in a read transaction of its own: an
// error is core.ErrNotFound for a token of another storefront.
func (s *Service) checkTokenOwner(storefront, token string) error {
	var ok bool
	if err := s.db.View(func(tx store.Tx) error {
		var err error
		ok, err = s.mayUseToken(tx, storefront, token)
		return err
	}); err != nil {
		return &core.Error{Code: core.CodeInternal, Message: "read token owner", Err: err}
	}
	if !ok {
		return errTokenNotFound
	}
	return nil
}

// claimToken makes storefront the owner of a token nobody owns, in the
// transaction that records its first charge; a token another storefront
// claimed in between is refused.
func (s *Service) claimToken(tx store.Tx, storefront, token string) error {
	owner, err := tx.TokenOwner(token)
	if err != nil {
		return err
	}
	if owner == "" {
		return tx.SetTokenOwner(token, storefront)
	}
	if owner != storefront && !slices.Contains(s.cfg.TokenSharing[owner], storefront) {
		return errTokenNotFound
	}
	return nil
}

var errTokenNotFound = &core.Error{Code: core.CodeNotFound, Field: "customer_token", Message: "no such customer token"}
