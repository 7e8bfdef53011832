package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
)

// Options configures the storefront and the scripted purchase.
type Options struct {
	// HPPDURL is the base URL of hppd's storefront API.
	HPPDURL string
	// SimURL is the base URL of the Klarna simulator (its /_sim/ driver API).
	SimURL string
	// SimUser and SimPass are the simulator's Basic credentials.
	SimUser, SimPass string
	// Token returns a storefront JWT for hppd; it is called for every call,
	// so a short-lived token can be minted each time.
	Token func() string
	// PublicURL is the base URL browsers reach the storefront at; the return
	// URLs given to hppd point there. Empty: derived from each request's Host
	// (plain http).
	PublicURL string
	// HTTPClient calls hppd and the simulator (default: 30 s timeout).
	HTTPClient *http.Client
	// Logger receives one line per purchase and every failed call (default: discard).
	Logger *slog.Logger
	// Cart is the purchase Walk makes (default Cart; USCart for a US one).
	Cart func(ref string) core.Purchase
}

func (o *Options) check() error {
	var errs []error
	if o.HPPDURL == "" {
		errs = append(errs, errors.New("option HPPDURL is required"))
	}
	if o.SimURL == "" {
		errs = append(errs, errors.New("option SimURL is required"))
	}
	if o.Token == nil {
		errs = append(errs, errors.New("option Token is required"))
	}
	return errors.Join(errs...)
}

func (o *Options) clients() (*hppdClient, *simClient) {
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &hppdClient{base: trimBase(o.HPPDURL), token: o.Token, http: hc},
		&simClient{base: trimBase(o.SimURL), user: o.SimUser, pass: o.SimPass, http: hc}
}

// Scenario is one purchase the storefront offers.
type Scenario struct {
	ID    string
	Title string
	// Story says what happens, in the shop's words.
	Story string
	// Behavior and Failures script the customer token at the simulator
	// (POST /_sim/tokens); an empty Behavior is a plain checkout without a
	// saved token.
	Behavior string
	Failures int
}

// Scenarios are the purchases of the storefront, in the order shown.
var Scenarios = []Scenario{
	{
		ID: "token-ok", Title: "Saved payment method",
		Story:    "The customer has a saved Klarna customer token. hppd charges it at once; no payment page.",
		Behavior: "ok",
	},
	{
		ID: "token-unavailable", Title: "Saved method unavailable",
		Story: "Klarna answers UNAVAILABLE_PAYMENT_METHOD. The customer is present, so hppd falls back to a Klarna " +
			"session with a hosted payment page; after the customer pays there hppd places the order and the token is recovered.",
		Behavior: "unavailable",
	},
	{
		ID: "token-failing-once", Title: "Saved method declined once",
		Story: "Klarna answers PAYMENT_METHOD_FAILED to the first attempt. hppd retries with a new idempotency key " +
			"and the second attempt is charged.",
		Behavior: "failed", Failures: 1,
	},
	{
		ID: "checkout", Title: "Klarna checkout",
		Story: "A plain hosted-payment-page purchase: pay (or decline) on Klarna's page, hppd places the order " +
			"once Klarna reports the session completed.",
	},
}

func scenarioByID(id string) *Scenario {
	for i := range Scenarios {
		if Scenarios[i].ID == id {
			return &Scenarios[i]
		}
	}
	return nil
}

// Cart is what the demo shop sells, as a Klarna purchase in Sweden (SEK,
// Swedish VAT: 25 % on goods, 12 % on food), with merchant reference ref.
func Cart(ref string) core.Purchase {
	line := func(name, typ string, qty, unit, rate int64) core.OrderLine {
		total := qty * unit
		return core.OrderLine{
			Type: typ, Name: name, Quantity: qty, UnitPrice: unit, TaxRate: rate,
			TotalAmount: total, TotalTaxAmount: core.ExpectedLineTax(total, rate),
		}
	}
	p := core.Purchase{
		PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE",
		OrderLines: []core.OrderLine{
			line("Espresso cup", "physical", 2, 12500, 2500),
			line("Coffee beans, 1 kg", "physical", 1, 18900, 1200),
		},
		MerchantReference1: ref,
	}
	for _, l := range p.OrderLines {
		p.OrderAmount += l.TotalAmount
		p.OrderTaxAmount += l.TotalTaxAmount
	}
	return p
}

// USCart is Cart sold in the United States (USD, sales tax in the prices).
func USCart(ref string) core.Purchase {
	p := core.Purchase{
		PurchaseCountry: "US", PurchaseCurrency: "USD", Locale: "en-US",
		OrderLines: []core.OrderLine{
			{Type: "physical", Name: "Espresso cup", Quantity: 2, UnitPrice: 1400, TotalAmount: 2800},
			{Type: "physical", Name: "Coffee beans, 2 lb", Quantity: 1, UnitPrice: 2100, TotalAmount: 2100},
		},
		MerchantReference1: ref,
	}
	for _, l := range p.OrderLines {
		p.OrderAmount += l.TotalAmount
	}
	return p
}

// Storefront is the demo shop (see the package doc). It holds no state of
// its own: every page is built from what hppd reports.
type Storefront struct {
	opts Options
	hppd *hppdClient
	sim  *simClient
	log  *slog.Logger
	mux  *http.ServeMux
}

// New returns the storefront.
func New(opts Options) (*Storefront, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	opts.PublicURL = trimBase(opts.PublicURL)
	s := &Storefront{opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.hppd, s.sim = opts.clients()
	s.mux.HandleFunc("GET /{$}", s.index)
	s.mux.HandleFunc("POST /buy", s.buy)
	s.mux.HandleFunc("GET /result", s.result)
	s.mux.HandleFunc("POST /cancel", s.cancel)
	s.mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	s.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		s.render(w, http.StatusNotFound, "error", errorView{Title: "Not found", Message: "There is no such page in this shop."})
	})
	return s, nil
}

// ServeHTTP serves the shop's pages.
func (s *Storefront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

// base is the storefront's URL as browsers see it.
func (s *Storefront) base(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return s.opts.PublicURL
	}
	return "http://" + r.Host
}

// returnURLs are the pages hppd sends the shopper back to (hppd appends
// hppd_session=<id>).
func returnURLs(base, scenario string) core.ReturnURLs {
	u := func(outcome string) string {
		return base + "/result?" + url.Values{"scenario": {scenario}, "outcome": {outcome}}.Encode()
	}
	return core.ReturnURLs{Success: u("success"), Failure: u("failure"), Cancel: u("cancel"), Back: u("back"), Error: u("error")}
}

type indexView struct {
	Cart      core.Purchase
	Total     string
	Tax       string
	Scenarios []Scenario
}

func (s *Storefront) index(w http.ResponseWriter, _ *http.Request) {
	c := Cart("")
	s.render(w, http.StatusOK, "index", indexView{
		Cart: c, Total: money(c.OrderAmount, c.PurchaseCurrency), Tax: money(c.OrderTaxAmount, c.PurchaseCurrency),
		Scenarios: Scenarios,
	})
}

// buy runs a scenario and sends the browser on.
func (s *Storefront) buy(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		s.render(w, http.StatusBadRequest, "error", errorView{Title: "Bad request", Message: "The form could not be read."})
		return
	}
	sc := scenarioByID(r.PostForm.Get("scenario"))
	if sc == nil {
		s.render(w, http.StatusBadRequest, "error", errorView{Title: "Unknown scenario", Message: "Pick one of the scenarios of the shop."})
		return
	}
	ctx := r.Context()
	ref := newKey("demo")[:17] // "demo-" and 12 hex digits
	urls := returnURLs(s.base(r), sc.ID)
	if sc.Behavior == "" {
		sess, err := s.hppd.createSession(ctx, sessionRequest{Purchase: Cart(ref), ReturnURLs: urls}, newKey("shop-session"))
		if err != nil {
			s.fail(w, "create the Klarna session", err)
			return
		}
		s.log.Info("checkout started", "scenario", sc.ID, "session_id", sess.ID, "status", sess.Status)
		if sess.RedirectURL != "" {
			s.redirectOut(w, r, sess.RedirectURL)
			return
		}
		http.Redirect(w, r, "/result?"+url.Values{"scenario": {sc.ID}, "session": {sess.ID}}.Encode(), http.StatusSeeOther)
		return
	}
	tok, err := s.sim.createToken(ctx, sc.Behavior, sc.Failures)
	if err != nil {
		s.fail(w, "create the customer token at the simulator", err)
		return
	}
	ch, err := s.hppd.createCharge(ctx, chargeRequest{
		Purchase: Cart(ref), CustomerToken: tok, CustomerPresent: true, ReturnURLs: urls,
	}, newKey("shop-charge"))
	if err != nil {
		s.fail(w, "charge the saved payment method", err)
		return
	}
	s.log.Info("charge made", "scenario", sc.ID, "charge_id", ch.ID, "status", ch.Status)
	if ch.Session != nil && ch.Session.RedirectURL != "" {
		s.redirectOut(w, r, ch.Session.RedirectURL)
		return
	}
	http.Redirect(w, r, "/result?"+url.Values{"scenario": {sc.ID}, "charge": {ch.ID}}.Encode(), http.StatusSeeOther)
}

// redirectOut sends the browser to Klarna's payment page.
func (s *Storefront) redirectOut(w http.ResponseWriter, r *http.Request, to string) {
	u, err := url.Parse(to)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		s.log.Error("hppd gave a redirect URL that is not an absolute http(s) URL")
		s.render(w, http.StatusBadGateway, "error", errorView{Title: "Cannot continue", Message: "hppd answered with an unusable payment page URL."})
		return
	}
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// cancel asks hppd to cancel a session the shopper gave up on.
func (s *Storefront) cancel(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil || r.PostForm.Get("session") == "" {
		s.render(w, http.StatusBadRequest, "error", errorView{Title: "Bad request", Message: "Which session should be cancelled?"})
		return
	}
	id := r.PostForm.Get("session")
	if _, err := s.hppd.cancelSession(r.Context(), id, newKey("shop-cancel")); err != nil {
		s.fail(w, "cancel the session", err)
		return
	}
	s.log.Info("session cancelled by the shopper", "session_id", id)
	q := url.Values{"session": {id}}
	if sc := r.PostForm.Get("scenario"); scenarioByID(sc) != nil {
		q.Set("scenario", sc)
	}
	http.Redirect(w, r, "/result?"+q.Encode(), http.StatusSeeOther)
}

// Progress of a purchase as the result page sees it.
const (
	// ProgressWorking: hppd or Klarna have work in flight; the page refreshes.
	ProgressWorking = "working"
	// ProgressShopper: the shopper came back without paying; up to them.
	ProgressShopper = "shopper"
	// ProgressScheduled: hppd retries the charge later, on its schedule.
	ProgressScheduled = "scheduled"
	// ProgressFinal: nothing will change any more.
	ProgressFinal = "final"
)

// Progress says what the result page is waiting for, from the session and
// charge as hppd reports them (either may be nil).
func Progress(sess *api.Session, ch *api.Charge) string {
	working, shopper, scheduled := false, false, false
	sessFinal := sess == nil || core.SessionStatus(sess.Status).Final()
	if !sessFinal {
		switch sess.KlarnaStatus {
		case core.KlarnaFailed, core.KlarnaBack, core.KlarnaErrorStatus:
			// A pending session stays pending at hppd (the shopper may
			// still pay): waiting for it would never end.
			shopper = sess.Status == string(core.SessionPending)
			working = !shopper
		default:
			working = true
		}
	}
	if ch != nil {
		switch core.ChargeStatus(ch.Status) {
		case core.ChargePending:
			working = true
		case core.ChargeFallback:
			// The charge follows its session once that is final.
			working = working || (sess != nil && sessFinal)
		case core.ChargeRetrying:
			scheduled = true
		case core.ChargeNeedsCustomer:
			shopper = true
		}
	}
	switch {
	case working:
		return ProgressWorking
	case shopper:
		return ProgressShopper
	case scheduled:
		return ProgressScheduled
	}
	return ProgressFinal
}

// Headline is the result page's one-line summary.
func Headline(sess *api.Session, ch *api.Charge) string {
	p := Progress(sess, ch)
	if ch != nil {
		switch core.ChargeStatus(ch.Status) {
		case core.ChargeCharged:
			return "Paid with the saved payment method"
		case core.ChargeRecovered:
			return "Paid on Klarna's page; the saved payment method is recovered"
		case core.ChargeFailed:
			return "The purchase failed"
		case core.ChargeRetrying:
			return "Declined for now; hppd retries the charge on its schedule"
		case core.ChargeNeedsCustomer:
			return "The saved payment method is unavailable; the customer has to pay on Klarna's page"
		case core.ChargePending:
			return "Charging the saved payment method…"
		}
	}
	if sess == nil {
		return "Nothing to show"
	}
	switch core.SessionStatus(sess.Status) {
	case core.SessionOrderPlaced:
		return "Order placed"
	case core.SessionAuthorized:
		return "Authorized; hppd is placing the order…"
	case core.SessionCancelled:
		return "The purchase was cancelled"
	case core.SessionExpired:
		return "The payment session expired"
	case core.SessionFailed:
		return "The purchase failed"
	}
	if p == ProgressShopper {
		return "The payment on Klarna's page was not completed"
	}
	return "Waiting for Klarna…"
}

type resultView struct {
	Scenario    *Scenario
	Outcome     string
	Progress    string
	Headline    string
	Tone        string // the banner's colour: good, bad or wait
	Refresh     bool
	Session     *api.Session
	SessionJSON string
	Charge      *api.Charge
	ChargeJSON  string
	Problems    []string
}

// result shows the session and/or the charge as hppd reports them.
func (s *Storefront) result(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := resultView{Scenario: scenarioByID(q.Get("scenario")), Outcome: q.Get("outcome")}
	sessID := q.Get("hppd_session")
	if sessID == "" {
		sessID = q.Get("session")
	}
	chargeID := q.Get("charge")
	if sessID == "" && chargeID == "" {
		s.render(w, http.StatusBadRequest, "error", errorView{Title: "Nothing to show", Message: "The page needs a session or a charge."})
		return
	}
	ctx := r.Context()
	if chargeID != "" {
		v.loadCharge(ctx, s, chargeID)
		if v.Charge != nil && v.Charge.Session != nil && sessID == "" {
			sessID = v.Charge.Session.ID
		}
	}
	if sessID != "" {
		v.loadSession(ctx, s, sessID)
		if v.Session != nil && v.Session.ChargeID != "" && v.Charge == nil {
			v.loadCharge(ctx, s, v.Session.ChargeID)
		}
	}
	if v.Session == nil && v.Charge == nil {
		s.render(w, http.StatusBadGateway, "error", errorView{Title: "hppd did not answer", Message: strings.Join(v.Problems, "; ")})
		return
	}
	v.Progress = Progress(v.Session, v.Charge)
	v.Headline = Headline(v.Session, v.Charge)
	v.Refresh = v.Progress == ProgressWorking
	v.Tone = tone(v.Progress, v.Session, v.Charge)
	s.render(w, http.StatusOK, "result", v)
}

// tone colours the result banner: green once paid, red when the purchase
// ended unpaid or waits for the shopper, amber while hppd is at work.
func tone(progress string, sess *api.Session, ch *api.Charge) string {
	switch {
	case progress == ProgressWorking:
		return "wait"
	case ch != nil && core.ChargeStatus(ch.Status).Paid():
		return "good"
	case ch == nil && sess != nil && sess.Status == string(core.SessionOrderPlaced):
		return "good"
	}
	return "bad"
}

func (v *resultView) loadSession(ctx context.Context, s *Storefront, id string) {
	sess, raw, err := s.hppd.session(ctx, id)
	if err != nil {
		v.Problems = append(v.Problems, s.problem("read the session", err))
		return
	}
	v.Session, v.SessionJSON = sess, indent(raw)
}

func (v *resultView) loadCharge(ctx context.Context, s *Storefront, id string) {
	ch, raw, err := s.hppd.charge(ctx, id)
	if err != nil {
		v.Problems = append(v.Problems, s.problem("read the charge", err))
		return
	}
	v.Charge, v.ChargeJSON = ch, indent(raw)
}

func indent(raw []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}

// problem logs a failed call and returns what the page may show: hppd's and
// the simulator's answers are meant for clients, a transport error is not.
func (s *Storefront) problem(what string, err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		s.log.Warn("call refused", "what", what, "err", err)
		return "Could not " + what + ": " + ae.Error()
	}
	s.log.Error("call failed", "what", what, "err", err)
	return "Could not " + what + ": hppd or the simulator did not answer."
}

func (s *Storefront) fail(w http.ResponseWriter, what string, err error) {
	s.render(w, http.StatusBadGateway, "error", errorView{Title: "Something went wrong", Message: s.problem(what, err)})
}

type errorView struct {
	Title, Message string
}

func (s *Storefront) render(w http.ResponseWriter, status int, name string, data any) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		s.log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
