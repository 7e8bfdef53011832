package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna/klarnasim"
)

// hppGone marks an HPP session Klarna answers 404 for (expired or unknown).
const hppGone = "(gone)"

// maxDetails bounds the violation lines kept per check.
const maxDetails = 25

// Check is one row of the report.
type Check struct {
	Name       string
	Checked    int
	Violations int
	Details    []string // the first violations, one line each
}

// OK reports whether the check found no violation.
func (c *Check) OK() bool { return c.Violations == 0 }

func (c *Check) fail(format string, args ...any) {
	c.Violations++
	if len(c.Details) < maxDetails {
		c.Details = append(c.Details, fmt.Sprintf(format, args...))
	}
}

// world is a snapshot of Klarna (the simulator) and of hppd's API.
type world struct {
	now       time.Time
	sessions  map[string]*api.Session // every session of the storefront, by hppd id
	charges   map[string]*api.Charge
	hpp       map[string]string // HPP session id → status at Klarna (hppGone for 404)
	orders    []klarnasim.OrderRecord
	callbacks []klarnasim.CallbackRecord
	byHPP     map[string]*api.Session
	byKP      map[string]*api.Session
}

func newWorld(now time.Time, sessions []api.Session, charges []api.Charge, hpp map[string]string) *world {
	w := &world{
		now: now, hpp: hpp,
		sessions: map[string]*api.Session{}, charges: map[string]*api.Charge{},
		byHPP: map[string]*api.Session{}, byKP: map[string]*api.Session{},
	}
	for i := range sessions {
		s := &sessions[i]
		w.sessions[s.ID] = s
		if s.Klarna.HPPSessionID != "" {
			w.byHPP[s.Klarna.HPPSessionID] = s
		}
		if s.Klarna.KPSessionID != "" {
			w.byKP[s.Klarna.KPSessionID] = s
		}
	}
	for i := range charges {
		w.charges[charges[i].ID] = &charges[i]
	}
	return w
}

// known indexes the driver's records.
type known struct {
	sessions      map[string]*sessionRec // by hppd id
	sessionsByHPP map[string]*sessionRec
	charges       map[string]*chargeRec // by hppd id
	chargesByTok  map[string]*chargeRec
	allSessions   []*sessionRec
	allCharges    []*chargeRec
}

func index(sessions []*sessionRec, charges []*chargeRec) *known {
	k := &known{
		sessions: map[string]*sessionRec{}, sessionsByHPP: map[string]*sessionRec{},
		charges: map[string]*chargeRec{}, chargesByTok: map[string]*chargeRec{},
		allSessions: sessions, allCharges: charges,
	}
	for _, s := range sessions {
		if s.ID != "" {
			k.sessions[s.ID] = s
		}
		if s.HPPID != "" {
			k.sessionsByHPP[s.HPPID] = s
		}
	}
	for _, c := range charges {
		if c.ID != "" {
			k.charges[c.ID] = c
		}
		if c.Token != "" {
			k.chargesByTok[c.Token] = c
		}
	}
	return k
}

// Transitions of hppd's state machines (core's session and charge docs).
var (
	sessionMoves = map[string][]string{
		string(core.SessionPending):    {string(core.SessionAuthorized), string(core.SessionOrderPlaced), string(core.SessionCancelled), string(core.SessionExpired), string(core.SessionFailed)},
		string(core.SessionAuthorized): {string(core.SessionOrderPlaced), string(core.SessionFailed)},
	}
	chargeMoves = map[string][]string{
		string(core.ChargePending):       {string(core.ChargeCharged), string(core.ChargeFallback), string(core.ChargeNeedsCustomer), string(core.ChargeRetrying), string(core.ChargeFailed)},
		string(core.ChargeRetrying):      {string(core.ChargeCharged), string(core.ChargeFailed), string(core.ChargeNeedsCustomer)},
		string(core.ChargeNeedsCustomer): {string(core.ChargeFallback)},
		string(core.ChargeFallback):      {string(core.ChargeRecovered), string(core.ChargeFailed), string(core.ChargeNeedsCustomer)},
		string(core.ChargeFailed):        {string(core.ChargeFallback)},
	}
)

// reachable reports whether to can follow from in zero or more moves.
func reachable(moves map[string][]string, from, to string) bool {
	seen := map[string]bool{from: true}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			return true
		}
		for _, n := range moves[cur] {
			if !seen[n] {
				seen[n] = true
				queue = append(queue, n)
			}
		}
	}
	return false
}

// historyProblems checks that a history starts at pending, that every
// status change starts where the previous one ended and is a transition of
// the state machine, and that it ends at the current status. Entries that
// keep the status (Klarna status notes, disable requests) must name the
// status of that moment.
func historyProblems(hist []core.Change, status string, moves map[string][]string) []string {
	var out []string
	cur := ""
	for i, h := range hist {
		switch {
		case cur == "":
			if h.From != "" || h.To != string(core.SessionPending) {
				out = append(out, fmt.Sprintf("history starts with %q→%q, not at pending", h.From, h.To))
			}
			cur = h.To
		case h.From == h.To:
			if h.To != cur {
				out = append(out, fmt.Sprintf("history[%d] notes status %s while it was %s", i, h.To, cur))
			}
		default:
			if h.From != cur {
				out = append(out, fmt.Sprintf("history[%d] moves from %s while the status was %s", i, h.From, cur))
			}
			if !slices.Contains(moves[h.From], h.To) {
				out = append(out, fmt.Sprintf("history[%d] moves %s→%s (%s: %s), not a transition", i, h.From, h.To, h.Source, h.Reason))
			}
			cur = h.To
		}
	}
	if cur != status {
		out = append(out, fmt.Sprintf("history ends at %q but the status is %s", cur, status))
	}
	return out
}

// klarnaSeen is every Klarna status a session's history shows.
func klarnaSeen(s *api.Session) map[string]bool {
	seen := map[string]bool{}
	if s.KlarnaStatus != "" {
		seen[s.KlarnaStatus] = true
	}
	for _, h := range s.History {
		if h.KlarnaStatus != "" {
			seen[h.KlarnaStatus] = true
		}
	}
	return seen
}

// reflects reports whether the Klarna statuses seen include status or one
// Klarna reached after it (by seq, the statuses in the order Klarna went
// through them; nil when unknown).
func reflects(seen map[string]bool, status string, seq []string) bool {
	if seen[status] {
		return true
	}
	i := slices.Index(seq, status)
	if i < 0 {
		return false
	}
	for _, later := range seq[i+1:] {
		if seen[later] {
			return true
		}
	}
	return false
}

// orderIndex groups Klarna's orders.
type orderIndex struct {
	byKP     map[string][]klarnasim.OrderRecord
	byCharge map[string][]klarnasim.OrderRecord // token orders by the charge id in their key
	byToken  map[string][]klarnasim.OrderRecord
}

// chargeOfKey returns the charge id in a token order's idempotency key
// (core.AttemptKey: "<charge id>-<try>").
func chargeOfKey(key string) string {
	i := strings.LastIndexByte(key, '-')
	if i <= 0 {
		return ""
	}
	return key[:i]
}

func indexOrders(orders []klarnasim.OrderRecord) orderIndex {
	ix := orderIndex{byKP: map[string][]klarnasim.OrderRecord{}, byCharge: map[string][]klarnasim.OrderRecord{}, byToken: map[string][]klarnasim.OrderRecord{}}
	for _, o := range orders {
		switch o.Source {
		case klarnasim.SourceCustomerToken:
			ix.byCharge[chargeOfKey(o.IdempotencyKey)] = append(ix.byCharge[chargeOfKey(o.IdempotencyKey)], o)
			ix.byToken[o.CustomerToken] = append(ix.byToken[o.CustomerToken], o)
		default:
			ix.byKP[o.KPSessionID] = append(ix.byKP[o.KPSessionID], o)
		}
	}
	return ix
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkCompleted: every HPP session Klarna completed has exactly one order
// and hppd reports it order_placed with that order id.
func checkCompleted(w *world, ix orderIndex) Check {
	c := Check{Name: "completed sessions: one order, order_placed with its id"}
	for _, id := range sortedKeys(w.sessions) {
		s := w.sessions[id]
		if s.Klarna.HPPSessionID == "" || w.hpp[s.Klarna.HPPSessionID] != core.KlarnaCompleted {
			continue
		}
		c.Checked++
		orders := ix.byKP[s.Klarna.KPSessionID]
		switch {
		case len(orders) != 1:
			c.fail("session %s (%s, hpp %s): Klarna completed it and holds %d orders for it", s.ID, s.PlaceOrderMode, s.Klarna.HPPSessionID, len(orders))
		case s.Status != string(core.SessionOrderPlaced):
			c.fail("session %s (%s): Klarna completed it with order %s but hppd reports %s", s.ID, s.PlaceOrderMode, orders[0].OrderID, s.Status)
		case s.OrderID != orders[0].OrderID:
			c.fail("session %s: hppd reports order %q, Klarna's order is %s", s.ID, s.OrderID, orders[0].OrderID)
		}
	}
	return c
}

// checkPaidNeverFailed: a session whose KP session has an order at Klarna
// never ends failed (nor does the charge it falls back for), whatever
// Klarna answered to the replays of its placement (FACTS 8.2).
func checkPaidNeverFailed(w *world, ix orderIndex) Check {
	c := Check{Name: "no session or fallback charge with a paid order ends failed"}
	for _, id := range sortedKeys(w.sessions) {
		s := w.sessions[id]
		orders := ix.byKP[s.Klarna.KPSessionID]
		if s.Klarna.KPSessionID == "" || len(orders) == 0 {
			continue
		}
		c.Checked++
		if s.Status == string(core.SessionFailed) {
			c.fail("session %s: Klarna holds order %s for it, hppd reports failed", s.ID, orders[0].OrderID)
		}
		if s.ChargeID == "" {
			continue
		}
		if ch := w.charges[s.ChargeID]; ch != nil && ch.Session != nil && ch.Session.ID == s.ID && ch.Status == string(core.ChargeFailed) {
			c.fail("charge %s: its fallback session %s has order %s at Klarna, hppd reports the charge failed", ch.ID, s.ID, orders[0].OrderID)
		}
	}
	return c
}

// checkNoExtraOrders: no order for a session Klarna did not complete, no
// token order hppd does not account for, no charge (or the one token of a
// storefront charge request) charged twice.
func checkNoExtraOrders(w *world, k *known, ix orderIndex) Check {
	c := Check{Name: "no order without completion; no token charged twice"}
	for _, o := range w.orders {
		c.Checked++
		if o.Source != klarnasim.SourceCustomerToken {
			s := w.byKP[o.KPSessionID]
			switch {
			case s == nil:
				c.fail("%s order %s is for KP session %s, which no hppd session has", o.Source, o.OrderID, o.KPSessionID)
			case w.hpp[s.Klarna.HPPSessionID] != core.KlarnaCompleted:
				c.fail("%s order %s is for session %s, whose HPP session is %q at Klarna", o.Source, o.OrderID, s.ID, w.hpp[s.Klarna.HPPSessionID])
			}
			continue
		}
		cid := chargeOfKey(o.IdempotencyKey)
		ch := w.charges[cid]
		switch {
		case cid == "":
			c.fail("token order %s was placed without an idempotency key naming its charge", o.OrderID)
		case ch == nil:
			c.fail("token order %s (key %s) is for charge %s, which hppd does not have", o.OrderID, o.IdempotencyKey, cid)
		case !core.ChargeStatus(ch.Status).Paid():
			c.fail("token order %s exists for charge %s, which hppd reports %s", o.OrderID, cid, ch.Status)
		case ch.OrderID != o.OrderID:
			c.fail("charge %s: hppd reports order %q, Klarna's token order is %s", cid, ch.OrderID, o.OrderID)
		}
	}
	for _, cid := range sortedKeys(ix.byCharge) {
		if n := len(ix.byCharge[cid]); n > 1 && cid != "" {
			c.fail("charge %s: the token was charged %d times", cid, n)
		}
	}
	for _, tok := range sortedKeys(ix.byToken) {
		orders := ix.byToken[tok]
		if len(orders) < 2 {
			continue
		}
		var ids []string
		for _, o := range orders {
			ids = append(ids, chargeOfKey(o.IdempotencyKey))
		}
		who := "an unknown request"
		if r := k.chargesByTok[tok]; r != nil {
			who = fmt.Sprintf("storefront request %s (answered with charge %q)", r.Key, r.ID)
		}
		c.fail("customer token %s, used by %s only, was charged %d times, by charges %s", api.MaskToken(tok), who, len(orders), strings.Join(ids, ", "))
	}
	return c
}

// checkCallbacks: every status_update hppd answered 2xx has its effect.
func checkCallbacks(w *world, k *known) Check {
	c := Check{Name: "callbacks answered 2xx have their effect"}
	for _, cb := range w.callbacks {
		if cb.Dropped || cb.HTTPStatus < 200 || cb.HTTPStatus > 299 {
			continue
		}
		c.Checked++
		s := w.byHPP[cb.SessionID]
		if s == nil {
			c.fail("callback %s (%s, hpp %s) was answered %d but no hppd session has that HPP session", cb.EventID, cb.Status, cb.SessionID, cb.HTTPStatus)
			continue
		}
		switch {
		case !core.KlarnaStatuses[cb.Status] || len(cb.Status) == 0:
			// An unknown status (FACTS 8.8) or an empty retry is answered
			// with a re-read, which leaves a note in the history.
			if !resynced(s) {
				c.fail("session %s: callback %q (event %s) was answered %d, but the session shows no re-read for it", s.ID, cb.Status, cb.EventID, cb.HTTPStatus)
			}
		case cb.Status == core.KlarnaCompleted:
			if s.Status != string(core.SessionAuthorized) && s.Status != string(core.SessionOrderPlaced) {
				c.fail("session %s: callback COMPLETED (event %s) was answered %d, session is %s", s.ID, cb.EventID, cb.HTTPStatus, s.Status)
			}
		case cb.Status == core.KlarnaCancelled:
			if s.Status != string(core.SessionCancelled) {
				c.fail("session %s: callback CANCELLED (event %s) was answered %d, session is %s", s.ID, cb.EventID, cb.HTTPStatus, s.Status)
			}
		case cb.Status == core.KlarnaDisabled:
			if s.Status != string(core.SessionCancelled) && s.Status != string(core.SessionExpired) {
				c.fail("session %s: callback DISABLED (event %s) was answered %d, session is %s", s.ID, cb.EventID, cb.HTTPStatus, s.Status)
			}
		default:
			if s.Status != string(core.SessionPending) {
				continue // a later, final state reflects it
			}
			var seq []string
			if r := k.sessionsByHPP[cb.SessionID]; r != nil {
				seq = r.Seq
			}
			if !reflects(klarnaSeen(s), cb.Status, seq) {
				c.fail("session %s: callback %s (event %s) was answered %d, but neither it nor a later Klarna status is in the session", s.ID, cb.Status, cb.EventID, cb.HTTPStatus)
			}
		}
	}
	return c
}

// resynced reports whether a callback hppd could not act on made it re-read
// the session (or the session was final by then, which absorbs it).
func resynced(s *api.Session) bool {
	for _, h := range s.History {
		if strings.Contains(h.Reason, "re-reading the session") {
			return true
		}
	}
	return s.Status != string(core.SessionPending)
}

// checkNothingLost: every session and charge the storefront was answered
// for exists; no history has a move the state machine lacks; no status is
// behind one the storefront saw.
func checkNothingLost(w *world, k *known) Check {
	c := Check{Name: "no session or charge lost or moved backwards"}
	for _, r := range k.allSessions {
		for _, id := range r.FailedIDs {
			c.Checked++
			switch s := w.sessions[id]; {
			case s == nil:
				c.fail("session %s (request %s) was answered failed to the storefront but hppd no longer has it", id, r.Key)
			case s.Status != string(core.SessionFailed):
				c.fail("session %s: the storefront was answered failed, hppd now reports %s", id, s.Status)
			}
		}
		if r.ID == "" {
			continue
		}
		c.Checked++
		s := w.sessions[r.ID]
		if s == nil {
			c.fail("session %s (request %s) was answered to the storefront but hppd no longer has it", r.ID, r.Key)
			continue
		}
		for _, o := range r.Observed {
			if o != s.Status && !reachable(sessionMoves, o, s.Status) {
				c.fail("session %s: the storefront saw %s, hppd now reports %s", r.ID, o, s.Status)
			}
		}
	}
	for _, r := range k.allCharges {
		if r.ID == "" {
			continue
		}
		c.Checked++
		ch := w.charges[r.ID]
		if ch == nil {
			c.fail("charge %s (request %s) was answered to the storefront but hppd no longer has it", r.ID, r.Key)
			continue
		}
		for _, o := range r.Observed {
			if o != ch.Status && !reachable(chargeMoves, o, ch.Status) {
				c.fail("charge %s: the storefront saw %s, hppd now reports %s", r.ID, o, ch.Status)
			}
		}
	}
	for _, id := range sortedKeys(w.sessions) {
		s := w.sessions[id]
		c.Checked++
		for _, p := range historyProblems(s.History, s.Status, sessionMoves) {
			c.fail("session %s: %s", id, p)
		}
	}
	for _, id := range sortedKeys(w.charges) {
		ch := w.charges[id]
		c.Checked++
		for _, p := range historyProblems(ch.History, ch.Status, chargeMoves) {
			c.fail("charge %s: %s", id, p)
		}
	}
	return c
}

// sessionState says what is wrong with where a session rests ("" if
// nothing): it must match Klarna's HPP session.
func sessionState(s *api.Session, w *world) string {
	h := s.Klarna.HPPSessionID
	if h == "" {
		if s.Status == string(core.SessionFailed) {
			return "" // its HPP session could not be created
		}
		return fmt.Sprintf("%s without an HPP session: no shopper can pay it and hppd cannot re-read it", s.Status)
	}
	ks := w.hpp[h]
	switch ks {
	case "":
		return "its HPP session's status at Klarna could not be read"
	case core.KlarnaCompleted:
		if s.Status != string(core.SessionOrderPlaced) {
			return "Klarna completed it, hppd reports " + s.Status
		}
	case core.KlarnaCancelled:
		if s.Status != string(core.SessionCancelled) {
			return "Klarna cancelled it, hppd reports " + s.Status
		}
	case core.KlarnaDisabled:
		if s.Status != string(core.SessionCancelled) && s.Status != string(core.SessionExpired) {
			return "Klarna disabled it, hppd reports " + s.Status
		}
	case hppGone:
		if s.Status != string(core.SessionExpired) {
			return "Klarna no longer knows it, hppd reports " + s.Status
		}
	default: // open at Klarna: the shopper may still pay
		switch {
		case s.Status != string(core.SessionPending):
			return fmt.Sprintf("Klarna's session is open (%s), hppd reports %s", ks, s.Status)
		case !s.ExpiresAt.After(w.now):
			return "pending past its expiry " + s.ExpiresAt.Format(time.RFC3339)
		case s.KlarnaStatus != ks:
			return fmt.Sprintf("pending; hppd has Klarna status %q, Klarna says %s", s.KlarnaStatus, ks)
		}
	}
	return ""
}

// chargeState says what is wrong with where a charge rests ("" if nothing).
func chargeState(ch *api.Charge, r *chargeRec, w *world) string {
	var sess *api.Session
	if ch.Session != nil {
		sess = w.sessions[ch.Session.ID]
	}
	switch core.ChargeStatus(ch.Status) {
	case core.ChargePending, core.ChargeRetrying:
		return "still " + ch.Status
	case core.ChargeCharged:
		if ch.OrderID == "" {
			return "charged without an order id"
		}
	case core.ChargeRecovered:
		if sess == nil || sess.Status != string(core.SessionOrderPlaced) || sess.OrderID != ch.OrderID {
			return "recovered, but its fallback session has no matching placed order"
		}
	case core.ChargeFallback:
		if sess == nil {
			return "fallback without a fallback session: nothing can complete it"
		}
		if sess.Status != string(core.SessionPending) {
			return "fallback, but its fallback session is " + sess.Status
		}
	case core.ChargeNeedsCustomer:
		if ch.Session != nil && sess != nil && sess.Status == string(core.SessionPending) {
			return "needs_customer while its fallback session is still open"
		}
	}
	if r == nil {
		return ""
	}
	want := ""
	switch {
	case r.Behavior == "ok" || r.Behavior == "failed":
		want = string(core.ChargeCharged)
	case r.Behavior == "unavailable" && !r.Present:
		want = string(core.ChargeNeedsCustomer)
	case r.Behavior == "unavailable":
		// With the customer present hppd starts the fallback purchase, also
		// when the storefront gave up asking (its resume job does).
		want = string(core.ChargeFallback)
		if sess != nil && w.hpp[sess.Klarna.HPPSessionID] == core.KlarnaCompleted {
			want = string(core.ChargeRecovered)
		}
	default: // a final token error
		want = string(core.ChargeFailed)
	}
	if ch.Status != want {
		return fmt.Sprintf("token %s, customer present %v: want %s, hppd reports %s", r.Behavior, r.Present, want, ch.Status)
	}
	return ""
}

// checkPresentNeverNeedsCustomer: needs_customer means "the customer is
// away", so a charge made with the customer present must never be
// answered or rest there, whatever Klarna did meanwhile.
func checkPresentNeverNeedsCustomer(w *world, k *known) Check {
	c := Check{Name: "no present customer's charge is needs_customer"}
	for _, r := range k.allCharges {
		if !r.Present || r.ID == "" {
			continue
		}
		c.Checked++
		if slices.Contains(r.Observed, string(core.ChargeNeedsCustomer)) {
			c.fail("charge %s (customer present): the storefront was answered needs_customer (%s)", r.ID, strings.Join(r.Observed, ", then "))
			continue
		}
		if ch := w.charges[r.ID]; ch != nil && ch.Status == string(core.ChargeNeedsCustomer) {
			c.fail("charge %s (customer present): hppd reports needs_customer", r.ID)
		}
	}
	return c
}

// movable reports whether a timer of hppd (the poller's re-read, a job's
// retry, a charge's safety resend or scheduled retry) can still change a
// session: pending (with an HPP session to re-read, or without one: the
// re-read job gives up a creation that was interrupted, once the creation's
// lease is free, which with replicas is HPPD_LEASE_TTL after the replica
// holding it died), or authorized with its order job. Every other status is
// final, or waits for a person.
func movable(s *api.Session) bool {
	switch core.SessionStatus(s.Status) {
	case core.SessionPending, core.SessionAuthorized:
		return true
	}
	return false
}

// chargeMovable is movable for a charge: pending or retrying, in fallback
// still without its session, or linked to a session a timer can still move.
func chargeMovable(ch *api.Charge, w *world) bool {
	switch core.ChargeStatus(ch.Status) {
	case core.ChargePending, core.ChargeRetrying:
		return true
	case core.ChargeFallback:
		if ch.Session == nil {
			return true // its resume job creates the fallback session
		}
	}
	if ch.Session != nil {
		if s := w.sessions[ch.Session.ID]; s != nil {
			return movable(s)
		}
	}
	return false
}

// checkSettled: every session and charge is final or waits correctly. It
// also returns how many of the violations a timer of hppd could still
// resolve (the rest can only change by a person's action, or never).
func checkSettled(w *world, k *known) (Check, int) {
	c := Check{Name: "all final or correctly waiting after the settle budget"}
	waiting := 0
	for _, id := range sortedKeys(w.sessions) {
		c.Checked++
		if why := sessionState(w.sessions[id], w); why != "" {
			c.fail("session %s: %s", id, why)
			if movable(w.sessions[id]) {
				waiting++
			}
		}
	}
	for _, r := range k.allSessions {
		if r.Paid && r.ID != "" && w.hpp[r.HPPID] != core.KlarnaCompleted {
			c.fail("session %s: the shopper's payment was answered COMPLETED, Klarna now says %q", r.ID, w.hpp[r.HPPID])
		}
	}
	for _, id := range sortedKeys(w.charges) {
		c.Checked++
		if why := chargeState(w.charges[id], k.charges[id], w); why != "" {
			if r := k.charges[id]; r != nil {
				why += fmt.Sprintf(" (storefront request %s was answered %s)", r.Key, strings.Join(r.Observed, ", then "))
			} else {
				why += " (no storefront request was answered with it)"
			}
			c.fail("charge %s: %s", id, why)
			if chargeMovable(w.charges[id], w) {
				waiting++
			}
		}
	}
	return c, waiting
}

// signature summarises what the settle wait watches change.
func (w *world) signature() string {
	var b strings.Builder
	for _, id := range sortedKeys(w.sessions) {
		s := w.sessions[id]
		fmt.Fprintf(&b, "%s %s %s %s|", id, s.Status, s.KlarnaStatus, s.OrderID)
	}
	for _, id := range sortedKeys(w.charges) {
		c := w.charges[id]
		fmt.Fprintf(&b, "%s %s %s|", id, c.Status, c.OrderID)
	}
	return b.String()
}
