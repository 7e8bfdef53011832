package klarnasim

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RateLimits are the requests per second the simulator admits per rate
// category, counted per calendar second as Klarna's X-Ratelimit headers
// describe (w=1). Klarna counts "create session" (KP), "create hosted page
// session" (HPP) and every other operation apart (FACTS 4, 8.5). A customer
// token order is counted twice, in a category of its own at the creation
// figure and among the other operations: Klarna's list names a "create
// token session" category, and the simulator takes the harsher reading.
type RateLimits struct {
	// CreateSession applies to KP session creation, HPP session creation
	// and token orders, each counted apart.
	CreateSession int
	// Other applies to every other operation (token orders included).
	Other int
}

// LimitsFor returns Klarna's limits of an environment: production 40
// creations/s and 200 other requests/s; playground ("playground") 5 and 50.
func LimitsFor(env string) RateLimits {
	if strings.EqualFold(env, "playground") {
		return RateLimits{CreateSession: 5, Other: 50}
	}
	return RateLimits{CreateSession: 40, Other: 200}
}

// Rate categories.
const (
	rateKPCreate   = "create_session"
	rateHPPCreate  = "create_hosted_page_session"
	rateTokenOrder = "create_token_order"
	rateOther      = "other"
)

// rateCategories returns the categories a request of op counts in, the
// one whose numbers the X-Ratelimit headers show first.
func rateCategories(op string) []string {
	switch op {
	case OpCreateKPSession:
		return []string{rateKPCreate}
	case OpCreateHPPSession:
		return []string{rateHPPCreate}
	case OpCreateTokenOrder:
		return []string{rateTokenOrder, rateOther}
	}
	return []string{rateOther}
}

func (l RateLimits) of(cat string) int {
	if cat == rateOther {
		return l.Other
	}
	return l.CreateSession
}

// admit counts one request of op in its categories' windows of the current
// second and reports the X-Ratelimit values of the first category and
// whether the request is over a limit. Every request counts, the refused
// ones too: Klarna answers 429 to everything until the window resets.
// Unlimited simulators never refuse.
func (s *Sim) admit(op string) (limit, remaining int, over bool) {
	limits := s.opts.RateLimits
	now := time.Now().Unix() // rates are about real request rates, not the simulated clock
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, cat := range rateCategories(op) {
		w := s.rateWin[cat]
		if w == nil || w.second != now {
			w = &rateWindow{second: now}
			s.rateWin[cat] = w
		}
		w.count++
		l := limits.of(cat)
		if w.count > l {
			over = true
		}
		if i == 0 {
			limit, remaining = l, max(l-w.count, 0)
		}
	}
	return limit, remaining, over && !s.opts.Unlimited
}

// rateLimited is Klarna's answer over the limit: 429, Retry-After and
// X-Ratelimit-Reset until the next window (the rest of this second, so 1).
func rateLimited() reply {
	return fail(http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "Too many requests").
		withHeader("Retry-After", "1").
		withHeader("X-Ratelimit-Reset", "1").
		withHeader("X-Ratelimit-Remaining", "0")
}

// rateHeaders adds the X-Ratelimit headers to rep unless it has its own.
func rateHeaders(rep reply, limit, remaining int) reply {
	if _, ok := rep.header["X-Ratelimit-Limit"]; !ok {
		rep = rep.withHeader("X-Ratelimit-Limit", strconv.Itoa(limit)+", "+strconv.Itoa(limit)+";w=1")
	}
	if _, ok := rep.header["X-Ratelimit-Remaining"]; !ok {
		rep = rep.withHeader("X-Ratelimit-Remaining", strconv.Itoa(remaining))
	}
	if _, ok := rep.header["X-Ratelimit-Reset"]; !ok {
		rep = rep.withHeader("X-Ratelimit-Reset", "1")
	}
	return rep
}
