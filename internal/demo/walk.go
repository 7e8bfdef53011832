package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
)

// WalkResult is what the scripted purchase produced.
type WalkResult struct {
	SessionID    string
	HPPSessionID string
	RedirectURL  string
	// ReturnURL is where hppd sent the shopper back to (the storefront's
	// result page of this session).
	ReturnURL string
	OrderID   string
	Order     SimOrder
	// Account is the Klarna account hppd routed the purchase to.
	Account string
}

// walkPoll is how often Walk re-reads the session while it waits.
const walkPoll = 100 * time.Millisecond

// Walk drives one hosted-payment-page purchase end to end and prints each
// step to out (see the package doc). opts.PublicURL is the storefront the
// shopper returns to. ctx bounds the whole walk, including the wait for the
// order.
func Walk(ctx context.Context, opts Options, out io.Writer) (*WalkResult, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	hppd, sim := opts.clients()
	p := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	res := &WalkResult{}

	cart := Cart("demo-walk")
	if opts.Cart != nil {
		cart = opts.Cart("demo-walk")
	}
	p("Step 1. The storefront creates a session: POST %s/v1/sessions (%s, %d order lines, place_order_mode NONE)",
		trimBase(opts.HPPDURL), money(cart.OrderAmount, cart.PurchaseCurrency), len(cart.OrderLines))
	sess, err := hppd.createSession(ctx, sessionRequest{Purchase: cart, ReturnURLs: returnURLs(trimBase(opts.PublicURL), "checkout")}, newKey("walk"))
	if err != nil {
		return res, fmt.Errorf("step 1, create session: %w", err)
	}
	res.SessionID, res.HPPSessionID, res.RedirectURL, res.Account = sess.ID, sess.Klarna.HPPSessionID, sess.RedirectURL, sess.KlarnaAccount
	p("        → 201: session %s, status %s; Klarna KP session %s, HPP session %s",
		sess.ID, sess.Status, sess.Klarna.KPSessionID, sess.Klarna.HPPSessionID)
	if sess.KlarnaAccount != "" {
		p("        (purchase country %s: Klarna account %s)", cart.PurchaseCountry, sess.KlarnaAccount)
	}
	if sess.RedirectURL == "" || sess.Klarna.HPPSessionID == "" {
		return res, errors.New("step 1: the session has no redirect URL or HPP session id")
	}

	p("Step 2. The shopper's browser is sent to Klarna's payment page (the simulator's; step 4 pays it):")
	p("        %s", sess.RedirectURL)

	p("Step 3. The shopper opens the page: POST %s/_sim/hpp/%s/open", trimBase(opts.SimURL), sess.Klarna.HPPSessionID)
	status, _, err := sim.act(ctx, sess.Klarna.HPPSessionID, "open")
	if err != nil {
		return res, fmt.Errorf("step 3, open the payment page: %w", err)
	}
	p("        → Klarna status %s (Klarna calls hppd's status_update callback)", status)

	p("Step 4. The shopper presses Pay: POST %s/_sim/hpp/%s/pay", trimBase(opts.SimURL), sess.Klarna.HPPSessionID)
	status, to, err := sim.act(ctx, sess.Klarna.HPPSessionID, "pay")
	if err != nil {
		return res, fmt.Errorf("step 4, pay: %w", err)
	}
	if status != core.KlarnaCompleted || to == "" {
		return res, fmt.Errorf("step 4: Klarna status %s, redirect %q; want COMPLETED and hppd's success URL", status, to)
	}
	p("        → Klarna status %s; Klarna sends the browser to hppd:", status)
	p("        %s", to)

	p("Step 5. The browser follows that redirect: GET → hppd re-reads the session from Klarna and answers")
	res.ReturnURL, err = follow(ctx, opts.HTTPClient, to)
	if err != nil {
		return res, fmt.Errorf("step 5, follow the redirect to hppd: %w", err)
	}
	p("        → 303 to the storefront: %s", res.ReturnURL)

	p("Step 6. The storefront polls GET %s/v1/sessions/%s until hppd has placed the order", trimBase(opts.HPPDURL), sess.ID)
	final, err := waitOrder(ctx, hppd, sess.ID, func(s *api.Session) {
		line := "        … status " + s.Status
		if s.KlarnaStatus != "" {
			line += " (Klarna " + s.KlarnaStatus + ")"
		}
		if s.OrderID != "" {
			line += ", order " + s.OrderID
		}
		p("%s", line)
	})
	if err != nil {
		return res, fmt.Errorf("step 6, wait for the order: %w", err)
	}
	res.OrderID = final.OrderID
	p("        → history:")
	for _, h := range final.History {
		from := h.From
		if from == "" {
			from = "(new)"
		}
		p("          %s  %-10s → %-12s Klarna %-11s via %s", h.At.Local().Format("15:04:05.000"), from, h.To, h.KlarnaStatus, h.Source)
	}

	p("Step 7. The order at Klarna: GET %s/_sim/orders", trimBase(opts.SimURL))
	orders, err := sim.orders(ctx)
	if err != nil {
		return res, fmt.Errorf("step 7, list orders: %w", err)
	}
	n := 0
	for _, o := range orders {
		if o.KPSessionID == sess.Klarna.KPSessionID {
			n++
			res.Order = o
		}
	}
	if n != 1 || res.Order.OrderID != final.OrderID {
		return res, fmt.Errorf("step 7: %d orders at Klarna for KP session %s (want exactly one, %s)", n, sess.Klarna.KPSessionID, final.OrderID)
	}
	o := res.Order
	p("        → order %s (source %s: hppd placed it with the authorization token), %s, fraud status %s, Klarna-Idempotency-Key %s",
		o.OrderID, o.Source, money(o.OrderAmount, o.PurchaseCurrency), o.FraudStatus, o.IdempotencyKey)
	if o.Account != "" {
		p("        (held by Klarna account %s)", o.Account)
	}
	p("Done: one purchase, one order, placed exactly once.")
	return res, nil
}

// Checkout creates a fresh plain-checkout session for a person to pay: its
// redirect URL opens the simulator's payment page, and the shopper comes back
// to the storefront's result page (opts.PublicURL).
func Checkout(ctx context.Context, opts Options) (*api.Session, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	hppd, _ := opts.clients()
	sess, err := hppd.createSession(ctx, sessionRequest{
		Purchase: Cart(newKey("demo")[:17]), ReturnURLs: returnURLs(trimBase(opts.PublicURL), "checkout"),
	}, newKey("checkout"))
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	if sess.RedirectURL == "" {
		return nil, fmt.Errorf("session %s has no redirect URL", sess.ID)
	}
	return sess, nil
}

// follow is the shopper's browser following Klarna's redirect to hppd; it
// returns where hppd sends the browser next.
func follow(ctx context.Context, hc *http.Client, to string) (string, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	if hc != nil {
		cp := *hc
		c = &cp
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, to, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || loc == "" {
		return "", fmt.Errorf("hppd answered %d (Location %q); want 303 to the storefront", resp.StatusCode, loc)
	}
	return loc, nil
}

// waitOrder re-reads the session until its order is placed, calling seen
// for every new status; a final status without an order is an error.
func waitOrder(ctx context.Context, hppd *hppdClient, id string, seen func(*api.Session)) (*api.Session, error) {
	last := ""
	t := time.NewTicker(walkPoll)
	defer t.Stop()
	for {
		s, _, err := hppd.session(ctx, id)
		if err != nil {
			return nil, err
		}
		if key := s.Status + "/" + s.KlarnaStatus; key != last {
			last = key
			seen(s)
		}
		switch st := core.SessionStatus(s.Status); {
		case st == core.SessionOrderPlaced:
			if s.OrderID == "" {
				return nil, errors.New("order_placed without an order id")
			}
			return s, nil
		case st.Final():
			return nil, fmt.Errorf("session ended %s without an order", st)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("session still %s: %w", s.Status, ctx.Err())
		case <-t.C:
		}
	}
}
