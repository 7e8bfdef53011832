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
//
// Replicas. Several processes on one store each run at a part of the
// configured rates (SetShare, 1/N for N replicas: the wiring sets it from
// the same heartbeat that divides the Klarna clients' rates). That part
// divides every storefront's share and the routine re-read rate
// (Config.RereadRate) too, so N replicas together give a storefront its
// share and re-read at the configured rate, not N times either. A
// storefront's requests are counted where they land: a balancer that
// spreads them evenly gives it its whole share; one that sends all of them
// to one replica gives it 1/N of it (a refusal, never an excess).

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
	sl := s.shares[k]
	if sl == nil {
		sl = &shareLimiter{full: share * accountRate}
		r := sl.full * s.share()
		sl.lim = rate.NewLimiter(rate.Limit(r), shareBurst(r))
		if s.shares == nil {
			s.shares = map[shareKey]*shareLimiter{}
		}
		s.shares[k] = sl
	}
	lim := sl.lim
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

// shareLimiter is one storefront share's bucket: full is the share of the
// account's rate in requests/s, lim runs at this process's part of it.
type shareLimiter struct {
	full float64
	lim  *rate.Limiter
}

// shareBurst is a share's burst at rate r: one second's worth, at least 1.
func shareBurst(r float64) int { return max(1, int(r)) }

// SetShare makes this process use share (0 < share <= 1; anything else
// means 1) of the configured storefront shares and routine re-read rate,
// from now on: with N replicas on one store each takes 1/N, so together
// they stay within what is configured. The Klarna clients take the same
// part of their rates (klarna.Client.SetShare).
func (s *Service) SetShare(share float64) {
	if !(share > 0) || share > 1 {
		share = 1
	}
	s.replicaShare.Store(math.Float64bits(share))
	if s.rereadLim != nil {
		s.rereadLim.SetLimit(rate.Limit(s.cfg.RereadRate * share))
	}
	now := s.cfg.Now() // the clock withinShare takes tokens on
	s.sharesMu.Lock()
	defer s.sharesMu.Unlock()
	for _, sl := range s.shares {
		r := sl.full * share
		sl.lim.SetLimitAt(now, rate.Limit(r))
		sl.lim.SetBurstAt(now, shareBurst(r))
	}
}

// share is the part of the configured rates this process uses (SetShare;
// 1 until it is called).
func (s *Service) share() float64 {
	if b := s.replicaShare.Load(); b != 0 {
		return math.Float64frombits(b)
	}
	return 1
}

// rereadRate is the routine re-read rate of this process: Config.RereadRate
// times its share (0: no rate of its own).
func (s *Service) rereadRate() float64 { return s.cfg.RereadRate * s.share() }
