package chaos

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// hppd's Klarna rate categories (klarna's package doc, FACTS 4 and 8.5), as
// the tap sorts the calls it forwards. A customer token order counts in
// its own category and among the other calls, as hppd's client takes a
// token of both buckets for it.
const (
	rateCreateKP   = "create KP session"
	rateCreateHPP  = "create HPP session"
	rateTokenOrder = "customer token order"
	rateOther      = "every other call"
)

// rateCategories returns the categories a Klarna call counts in.
func rateCategories(method, path string) []string {
	if method == http.MethodPost {
		switch {
		case path == "/payments/v1/sessions":
			return []string{rateCreateKP}
		case path == "/hpp/v1/sessions":
			return []string{rateCreateHPP}
		case strings.HasPrefix(path, "/customer-token/v1/tokens/") && strings.HasSuffix(path, "/order"):
			return []string{rateTokenOrder, rateOther}
		}
	}
	return []string{rateOther}
}

// rateLimit is one category with the limit hppd was configured with
// (requests per second, for all replicas together).
type rateLimit struct {
	Category string
	Limit    int
}

// busiest is the most requests of one category in one second: in a
// calendar second (how Klarna counts, X-Ratelimit w=1) and in any window
// [t, t+1s) (what a client that only paces could still put into one of
// Klarna's seconds, whatever its phase), with when each began.
type busiest struct {
	Calendar, Sliding     int
	CalendarAt, SlidingAt time.Time
}

// busiestSecond scans the request times (in any order; sorted in place).
func busiestSecond(ts []time.Time) busiest {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	var b busiest
	calStart := 0
	lo := 0
	for i, t := range ts {
		if !t.Truncate(time.Second).Equal(ts[calStart].Truncate(time.Second)) {
			calStart = i
		}
		if n := i - calStart + 1; n > b.Calendar {
			b.Calendar, b.CalendarAt = n, t.Truncate(time.Second)
		}
		for t.Sub(ts[lo]) >= time.Second {
			lo++
		}
		if n := i - lo + 1; n > b.Sliding {
			b.Sliding, b.SlidingAt = n, ts[lo]
		}
	}
	return b
}

// checkRates: Klarna never saw more calls per second in a category than
// hppd was configured to send, by calendar second nor by sliding second.
// byCategory holds the arrival times of hppd's calls at the tap.
func checkRates(byCategory map[string][]time.Time, limits []rateLimit) (Check, map[string]busiest) {
	c := Check{Name: "Klarna never saw more calls/s than configured"}
	seen := map[string]busiest{}
	for _, l := range limits {
		ts := byCategory[l.Category]
		c.Checked += len(ts)
		b := busiestSecond(ts)
		seen[l.Category] = b
		if b.Calendar > l.Limit {
			c.fail("%s: %d calls in the calendar second from %s, limit %d/s", l.Category, b.Calendar, b.CalendarAt.UTC().Format(time.TimeOnly), l.Limit)
		}
		if b.Sliding > l.Limit {
			c.fail("%s: %d calls in the second from %s, limit %d/s", l.Category, b.Sliding, b.SlidingAt.UTC().Format("15:04:05.000"), l.Limit)
		}
	}
	return c, seen
}

// rateSummary is the report line of the busiest seconds.
func rateSummary(limits []rateLimit, seen map[string]busiest) string {
	parts := make([]string, 0, len(limits))
	for _, l := range limits {
		b := seen[l.Category]
		parts = append(parts, fmt.Sprintf("%s %d/%d (sliding %d)", l.Category, b.Calendar, l.Limit, b.Sliding))
	}
	return strings.Join(parts, ", ")
}
