package hpp

import (
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/hppd/hppd/core"
)

// Storefront shares of Klarna's budget. A storefront with a share
// (Config.StorefrontShares) may start at most that fraction of each Klarna
// account's rate of session creations, token reads and token charges; a
// request over it is refused at once with 429 and Retry-After, before
// anything is recorded or sent, so one storefront's burst cannot hold the
// account's Klarna buckets and starve the others. Each share is a token
// bucket per (storefront, account, category) with a burst of one second's
// worth (at least 1). Work hppd does on its own (order placement, re-reads,
// retries, fallbacks) is not counted: it is already paced by the client's
// buckets, with placements first.

type shareCategory int

const (
	shareCreate     shareCategory = iota // KP and HPP session creation
	shareOther                           // token reads
	shareTokenOrder                      // token charges
)

type shareKey struct {
	storefront, account string
	category            shareCategory
}

// OverShare is the refusal of a request over its storefront's share.
type OverShare struct {
	Err   *core.Error
	After time.Duration
}

func (e *OverShare) Error() string { return e.Err.Error() }

// Unwrap returns the core.Error (code rate_limited).
func (e *OverShare) Unwrap() error { return e.Err }

// RetryAfter is how long the storefront should wait before the repeat.
func (e *OverShare) RetryAfter() time.Duration { return e.After }

// withinShare takes a token of storefront's share of account's category,
// or returns an *OverShare saying when the next one is free.
func (s *Service) withinShare(storefront, account string, cat shareCategory) error {
	share, ok := s.cfg.StorefrontShares[storefront]
	if !ok || share <= 0 {
		return nil
	}
	var accountRate float64
	for _, a := range s.acct.list {
		if a.Name == s.accountName(account) {
			switch cat {
			case shareCreate:
				accountRate = a.CreateRate
			case shareOther:
				accountRate = a.OtherRate
			case shareTokenOrder:
				accountRate = a.TokenOrderRate
			}
		}
	}
	if accountRate <= 0 || math.IsInf(accountRate, 0) {
		return nil
	}
	k := shareKey{storefront: storefront, account: s.accountName(account), category: cat}
	s.sharesMu.Lock()
	lim := s.shares[k]
	if lim == nil {
		r := share * accountRate
		lim = rate.NewLimiter(rate.Limit(r), max(1, int(r)))
		if s.shares == nil {
			s.shares = map[shareKey]*rate.Limiter{}
		}
		s.shares[k] = lim
	}
	s.sharesMu.Unlock()
	now := s.cfg.Now()
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return &OverShare{Err: core.Errorf(core.CodeRateLimited, "this storefront is over its share of Klarna account %s's rate", k.account), After: time.Second}
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return &OverShare{Err: core.Errorf(core.CodeRateLimited, "this storefront is over its share of Klarna account %s's rate; try again later", k.account), After: d}
	}
	return nil
}
