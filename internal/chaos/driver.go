package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
)

// Shopper plans of a purchase.
const (
	planPay            = "pay"          // pays and comes back to the success URL
	planPayVanish      = "pay-vanish"   // pays and closes the browser before the redirect
	planDoubleClick    = "double-click" // pays and loads the success URL twice at once
	planDeclineThenPay = "decline-pay"
	planDecline        = "decline"
	planBackThenPay    = "back-pay"
	planBack           = "back"
	planError          = "error"
	planOpenVanish     = "open-vanish" // opens the page and leaves
	planNever          = "never"       // never shows up
)

// weighted picks one of choices with the given weights.
type weighted []struct {
	v string
	w int
}

func (ws weighted) pick(rng *rand.Rand) string {
	total := 0
	for _, c := range ws {
		total += c.w
	}
	n := rng.IntN(total)
	for _, c := range ws {
		if n < c.w {
			return c.v
		}
		n -= c.w
	}
	return ws[len(ws)-1].v
}

var (
	sessionPlans = weighted{
		{planPay, 22}, {planPayVanish, 14}, {planDoubleClick, 14}, {planDeclineThenPay, 8},
		{planDecline, 10}, {planBackThenPay, 6}, {planBack, 8}, {planError, 5},
		{planOpenVanish, 6}, {planNever, 7},
	}
	modes         = weighted{{core.ModeNone, 80}, {core.ModePlace, 10}, {core.ModeCapture, 10}}
	chargeScripts = weighted{{"ok", 35}, {"failed", 25}, {"unavailable", 25}, {"TOKEN_CANCELLED", 15}}
)

// sessionRec is what the driver knows of one purchase (or of the fallback
// purchase of a charge).
type sessionRec struct {
	Key    string // Idempotency-Key of the create request ("" for a fallback session)
	Mode   string
	Plan   string
	Amount int64
	// ChargeKey names the charge whose fallback purchase this is.
	ChargeKey string

	ID, HPPID, KPID string
	// Seq is the HPP statuses the shopper's actions produced at Klarna, in
	// order, starting with WAITING.
	Seq []string
	// Paid: a pay action was answered COMPLETED by Klarna.
	Paid bool
	// Observed are the statuses hppd answered the storefront with.
	Observed []string
	// FailedIDs are the sessions hppd answered failed at creation (their
	// HPP step failed); the storefront started the purchase again.
	FailedIDs []string
	// Err says why the purchase was not created.
	Err string
}

// chargeRec is what the driver knows of one token charge.
type chargeRec struct {
	Key         string
	Behavior    string // simulator token behaviour
	Failures    int
	Present     bool
	PayFallback bool
	// AskedFallback: the charge came back needs_customer with the customer
	// present and the storefront asked for the fallback purchase.
	AskedFallback bool
	Amount        int64
	Token         string
	ID            string
	Observed      []string
	Fallback      *sessionRec
	Err           string
}

// driver runs the storefronts and shoppers.
type driver struct {
	api  *hppdClient
	sim  *simClient
	seed int64

	sessions []*sessionRec
	charges  []*chargeRec
	order    []int // work order: i >= 0 a session, -i-1 a charge
	next     atomic.Int64
	finished atomic.Int64

	mu     sync.Mutex
	faults []string // driver-side failures (the simulator refused a driver call)
}

// itemRand is the source of one item's choices: the same seed gives every
// item the same plan, whatever the interleaving.
func itemRand(seed int64, kind, i int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), uint64(kind)<<32|uint64(i)))
}

func newDriver(api *hppdClient, sim *simClient, seed int64, sessions, charges int) *driver {
	d := &driver{api: api, sim: sim, seed: seed}
	for i := range sessions {
		rng := itemRand(seed, 1, i)
		d.sessions = append(d.sessions, &sessionRec{
			Key:    fmt.Sprintf("chaos-%d-s-%d", seed, i),
			Mode:   modes.pick(rng),
			Plan:   sessionPlans.pick(rng),
			Amount: 5 * (200 + rng.Int64N(20000)),
			Seq:    []string{core.KlarnaWaiting},
		})
	}
	for i := range charges {
		rng := itemRand(seed, 2, i)
		c := &chargeRec{
			Key:         fmt.Sprintf("chaos-%d-c-%d", seed, i),
			Behavior:    chargeScripts.pick(rng),
			Present:     rng.IntN(2) == 0,
			PayFallback: rng.IntN(10) < 6,
			Amount:      5 * (100 + rng.Int64N(10000)),
		}
		if c.Behavior == "failed" {
			c.Failures = 1
		}
		d.charges = append(d.charges, c)
	}
	for i := range sessions {
		d.order = append(d.order, i)
	}
	for i := range charges {
		d.order = append(d.order, -i-1)
	}
	rng := itemRand(seed, 3, 0)
	rng.Shuffle(len(d.order), func(a, b int) { d.order[a], d.order[b] = d.order[b], d.order[a] })
	return d
}

// progress is the share of the work finished, 0..1.
func (d *driver) progress() float64 {
	if len(d.order) == 0 {
		return 1
	}
	return float64(d.finished.Load()) / float64(len(d.order))
}

func (d *driver) fault(format string, args ...any) {
	d.mu.Lock()
	d.faults = append(d.faults, fmt.Sprintf(format, args...))
	d.mu.Unlock()
}

// run works through the list with n workers and returns when all is done.
func (d *driver) run(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := itemRand(d.seed, 4, w) // think times only
			for ctx.Err() == nil {
				i := int(d.next.Add(1)) - 1
				if i >= len(d.order) {
					return
				}
				if k := d.order[i]; k >= 0 {
					d.runSession(ctx, d.sessions[k], rng)
				} else {
					d.runCharge(ctx, d.charges[-k-1], rng)
				}
				d.finished.Add(1)
			}
		}()
	}
	wg.Wait()
}

func purchase(amount int64) map[string]any {
	return map[string]any{
		"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
		"order_amount": amount, "order_tax_amount": amount / 5,
		"order_lines": []any{map[string]any{
			"type": "physical", "name": "Chaos monkey", "quantity": 1, "unit_price": amount,
			"tax_rate": 2500, "total_amount": amount, "total_tax_amount": amount / 5,
		}},
		"merchant_reference1": "chaos",
	}
}

var returnURLs = map[string]any{
	"success": "https://shop.example/ok", "failure": "https://shop.example/fail",
	"back": "https://shop.example/back", "cancel": "https://shop.example/cancel", "error": "https://shop.example/error",
}

func errText(st int, eb *api.ErrorBody) string {
	if eb == nil {
		return "status " + strconv.Itoa(st)
	}
	return fmt.Sprintf("status %d %s %s: %s", st, eb.Error.Code, eb.Error.Field, eb.Error.Message)
}

func think(ctx context.Context, rng *rand.Rand) {
	t := time.NewTimer(time.Duration(rng.IntN(40)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// maxCreateAttempts bounds how often the storefront starts a purchase anew
// after hppd answered that its creation failed.
const maxCreateAttempts = 8

// runSession creates a purchase and plays its shopper. A purchase whose
// creation failed at Klarna (201 with status failed: the session id derives
// from the Idempotency-Key, so that key now names the failed session) is
// started again under a new key, as a storefront would.
func (d *driver) runSession(ctx context.Context, r *sessionRec, rng *rand.Rand) {
	body := purchase(r.Amount)
	body["place_order_mode"] = r.Mode
	body["return_urls"] = returnURLs
	var s api.Session
	for attempt := 1; ; attempt++ {
		key := r.Key
		if attempt > 1 {
			key = fmt.Sprintf("%s-again-%d", r.Key, attempt)
		}
		s = api.Session{}
		st, eb, err := d.api.call(ctx, http.MethodPost, "/v1/sessions", key, body, &s)
		if err != nil {
			r.Err = err.Error()
			return
		}
		if st != http.StatusCreated {
			r.Err = errText(st, eb)
			d.api.stats.problem("create session %s: %s", key, r.Err)
			return
		}
		if s.Status != string(core.SessionFailed) {
			break
		}
		r.FailedIDs = append(r.FailedIDs, s.ID)
		if attempt == maxCreateAttempts {
			r.Err = fmt.Sprintf("creation failed %d times", attempt)
			return
		}
	}
	r.ID, r.HPPID, r.KPID = s.ID, s.Klarna.HPPSessionID, s.Klarna.KPSessionID
	r.Observed = append(r.Observed, s.Status)
	if r.HPPID == "" {
		d.api.stats.problem("session %s was answered 201 %s without an HPP session", r.ID, s.Status)
		return
	}
	d.shop(ctx, r, rng)
	d.look(ctx, r)
}

// shop plays the shopper's plan on the simulator's payment page.
func (d *driver) shop(ctx context.Context, r *sessionRec, rng *rand.Rand) {
	switch r.Plan {
	case planPay:
		d.act(ctx, r, "pay", 1)
	case planPayVanish:
		d.act(ctx, r, "pay", 0)
	case planDoubleClick:
		d.act(ctx, r, "pay", 2)
	case planDeclineThenPay:
		d.act(ctx, r, "decline", 1)
		think(ctx, rng)
		d.act(ctx, r, "pay", 1)
	case planDecline:
		d.act(ctx, r, "decline", 1)
	case planBackThenPay:
		d.act(ctx, r, "back", 1)
		think(ctx, rng)
		d.act(ctx, r, "pay", 1)
	case planBack:
		d.act(ctx, r, "back", 1)
	case planError:
		d.act(ctx, r, "error", 1)
	case planOpenVanish:
		d.act(ctx, r, "open", 0)
	}
}

// act presses a button on the payment page and loads the page Klarna sends
// the browser to clicks times at once (0: the shopper is gone).
func (d *driver) act(ctx context.Context, r *sessionRec, action string, clicks int) {
	var out struct {
		Status     string `json:"status"`
		RedirectTo string `json:"redirect_to"`
	}
	st, err := d.sim.do(ctx, http.MethodPost, "/_sim/hpp/"+url.PathEscape(r.HPPID)+"/"+action, nil, &out)
	if err != nil || st != http.StatusOK {
		d.fault("shopper %s on HPP session %s: status %d, %v", action, r.HPPID, st, err)
		return
	}
	r.Seq = advance(r.Seq, out.Status)
	if action == "pay" && out.Status == core.KlarnaCompleted {
		r.Paid = true
	}
	if clicks == 0 || out.RedirectTo == "" {
		return
	}
	var wg sync.WaitGroup
	for range clicks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.load(ctx, r.ID, out.RedirectTo)
		}()
	}
	wg.Wait()
}

// advance appends the statuses Klarna passes through when an action ends
// in status: the page is IN_PROGRESS before any button takes effect.
func advance(seq []string, status string) []string {
	if seq[len(seq)-1] != core.KlarnaInProgress {
		seq = append(seq, core.KlarnaInProgress)
	}
	if status != core.KlarnaInProgress {
		seq = append(seq, status)
	}
	return seq
}

// load is the browser arriving at hppd's shopper URL: it must be sent on to
// the storefront with the session named.
func (d *driver) load(ctx context.Context, id, u string) {
	st, loc, err := d.api.follow(ctx, u)
	if err != nil {
		return // the shopper gave up reloading; the poller must cope
	}
	if st != http.StatusSeeOther {
		d.api.stats.problem("shopper URL of session %s answered %d, want 303", id, st)
		return
	}
	lu, perr := url.Parse(loc)
	if perr != nil || lu.Query().Get("hppd_session") != id {
		d.api.stats.problem("shopper URL of session %s redirected to %q, want the storefront with hppd_session=%s", id, loc, id)
	}
}

// look reads the session as the storefront would after the shopper is back.
func (d *driver) look(ctx context.Context, r *sessionRec) {
	var s api.Session
	st, eb, err := d.api.call(ctx, http.MethodGet, "/v1/sessions/"+url.PathEscape(r.ID), "", nil, &s)
	switch {
	case err != nil:
	case st != http.StatusOK:
		d.api.stats.problem("get session %s: %s", r.ID, errText(st, eb))
	default:
		r.Observed = append(r.Observed, s.Status)
	}
}

// runCharge charges a fresh customer token and, when hppd starts the
// fallback purchase, plays that shopper.
func (d *driver) runCharge(ctx context.Context, r *chargeRec, rng *rand.Rand) {
	var tok struct {
		CustomerToken string `json:"customer_token"`
	}
	st, err := d.sim.do(ctx, http.MethodPost, "/_sim/tokens", map[string]any{"behavior": r.Behavior, "failures": r.Failures}, &tok)
	if err != nil || st != http.StatusCreated || tok.CustomerToken == "" {
		d.fault("make %s token: status %d, %v", r.Behavior, st, err)
		r.Err = "no token"
		return
	}
	r.Token = tok.CustomerToken
	body := purchase(r.Amount)
	body["customer_token"] = r.Token
	body["customer_present"] = r.Present
	body["return_urls"] = returnURLs
	var c api.Charge
	st, eb, err := d.api.call(ctx, http.MethodPost, "/v1/charges", r.Key, body, &c)
	if err != nil {
		r.Err = err.Error()
		return
	}
	if st != http.StatusCreated {
		r.Err = errText(st, eb)
		d.api.stats.problem("create charge %s: %s", r.Key, r.Err)
		return
	}
	r.ID = c.ID
	r.Observed = append(r.Observed, c.Status)
	if r.Present && c.Status == string(core.ChargeNeedsCustomer) {
		// hppd could not start the fallback purchase while the customer is
		// here: the storefront asks for it again.
		r.AskedFallback = true
		st, eb, err := d.api.call(ctx, http.MethodPost, "/v1/charges/"+url.PathEscape(r.ID)+"/fallback", r.Key+"-fallback", map[string]any{}, &c)
		switch {
		case err != nil:
			return
		case st != http.StatusOK:
			d.api.stats.problem("fallback of charge %s: %s", r.ID, errText(st, eb))
			return
		}
		r.Observed = append(r.Observed, c.Status)
	}
	if c.Session != nil && c.Status == string(core.ChargeFallback) {
		fs := &sessionRec{Mode: core.ModeNone, Plan: planNever, ChargeKey: r.Key, ID: c.Session.ID, Seq: []string{core.KlarnaWaiting}}
		if r.PayFallback {
			fs.Plan = planPay
		}
		r.Fallback = fs
		var s api.Session
		st, eb, err := d.api.call(ctx, http.MethodGet, "/v1/sessions/"+url.PathEscape(fs.ID), "", nil, &s)
		switch {
		case err != nil:
		case st != http.StatusOK:
			d.api.stats.problem("get fallback session %s: %s", fs.ID, errText(st, eb))
		default:
			fs.HPPID, fs.KPID, fs.Amount = s.Klarna.HPPSessionID, s.Klarna.KPSessionID, s.OrderAmount
			fs.Observed = append(fs.Observed, s.Status)
			if fs.HPPID != "" {
				think(ctx, rng)
				d.shop(ctx, fs, rng)
				d.look(ctx, fs)
			}
		}
	}
	var now api.Charge
	st, eb, err = d.api.call(ctx, http.MethodGet, "/v1/charges/"+url.PathEscape(r.ID), "", nil, &now)
	switch {
	case err != nil:
	case st != http.StatusOK:
		d.api.stats.problem("get charge %s: %s", r.ID, errText(st, eb))
	default:
		r.Observed = append(r.Observed, now.Status)
	}
}

// allSessions are the purchases and fallback purchases the driver knows.
func (d *driver) allSessions() []*sessionRec {
	out := append([]*sessionRec(nil), d.sessions...)
	for _, c := range d.charges {
		if c.Fallback != nil {
			out = append(out, c.Fallback)
		}
	}
	return out
}
