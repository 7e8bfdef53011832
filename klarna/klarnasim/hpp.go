package klarnasim

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hppd/hppd/klarna"
)

// HPP actions of the test driver and the payment page.
const (
	ActionOpen    = "open"
	ActionPay     = "pay"
	ActionDecline = "decline"
	ActionBack    = "back"
	ActionCancel  = "cancel"
	ActionError   = "error"
)

var (
	reKPSessionURL = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^/payments/v1/sessions/([^/]+)/?$`) })
	hppCategories  = []string{"DIRECT_DEBIT", "DIRECT_BANK_TRANSFER", "PAY_NOW", "PAY_LATER", "PAY_OVER_TIME", "KLARNA"}
)

func hppNotFound() reply {
	return fail(http.StatusNotFound, "NOT_FOUND", "HPP session has expired or could not be found by provided id")
}

// liveHPP returns an unexpired HPP session. Caller holds s.mu.
func (s *Sim) liveHPP(id string, now time.Time) *hppSession {
	h := s.hpp[id]
	if h == nil || !now.Before(h.expires) {
		return nil
	}
	return h
}

// createHPPSession is POST /hpp/v1/sessions.
func (s *Sim) createHPPSession(c *call) reply {
	chk := &checker{}
	o, good := chk.root(c.body)
	if !good {
		return badValue(chk.messages())
	}
	var kpID string
	if psu, ok := o.str("payment_session_url", true, 1, 0); ok {
		var m []string
		u, err := url.Parse(psu)
		if err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
			m = reKPSessionURL().FindStringSubmatch(u.EscapedPath())
		}
		if m == nil {
			chk.bad("payment_session_url")
		} else {
			kpID = m[1]
		}
	}
	o.str("profile_id", false, 0, 0)
	var urls hppURLs
	if mu, ok := o.object("merchant_urls", false); ok {
		urls.success = s.merchantURL(mu, "success", false)
		urls.cancel = s.merchantURL(mu, "cancel", false)
		urls.back = s.merchantURL(mu, "back", false)
		urls.failure = s.merchantURL(mu, "failure", false)
		urls.errorURL = s.merchantURL(mu, "error", false)
		urls.statusUpdate = s.merchantURL(mu, "status_update", true)
	}
	mode, title := klarna.PlaceOrderModeNone, ""
	if op, ok := o.object("options", false); ok {
		if m, ok := op.enum("place_order_mode", false, klarna.PlaceOrderModePlace, klarna.PlaceOrderModeCapture, klarna.PlaceOrderModeNone); ok {
			mode = m
		}
		op.enum("payment_method_category", false, hppCategories...)
		if raws, ok := op.array("payment_method_categories", false, 0, 0); ok {
			for i, r := range raws {
				var v string
				if json.Unmarshal(r, &v) != nil || !contains(hppCategories, v) {
					chk.bad(fmt.Sprintf("options.payment_method_categories[%d]", i))
				}
			}
		}
		if op.has("payment_method_category") && op.has("payment_method_categories") {
			chk.bad("options.payment_method_categories")
		}
		op.enum("purchase_type", false, "BUY", "RENT", "BOOK", "SUBSCRIBE", "DOWNLOAD", "ORDER", "CONTINUE")
		op.enum("show_subtotal_detail", false, "HIDE")
		op.str("logo_url", false, 0, 0)
		title, _ = op.str("page_title", false, 0, 0)
		if raws, ok := op.array("background_images", false, 0, 0); ok {
			for i, r := range raws {
				if bi, ok := op.item("background_images", i, r); ok {
					bi.str("url", false, 0, 0)
					bi.integer("width", false, 0, 1<<31-1)
				}
			}
		}
		op.boolean("payment_fallback") // older integrations (FACTS 1.2); no effect here
	}
	if chk.failed() {
		return badValue(chk.messages())
	}

	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kp[kpID]
	switch {
	case k == nil:
		return badValue([]string{"Bad value: payment_session_url"})
	case !now.Before(k.expires.Add(-hppBeforeKPExpiry)): // an HPP session would be born expired
		return fail(http.StatusNotFound, "NOT_FOUND", "Payment session has expired")
	case k.orderID != "":
		return badValue([]string{"Bad value: payment_session_url"})
	}
	h := &hppSession{
		id:      s.newID(),
		kpID:    k.id,
		status:  klarna.HPPWaiting,
		updated: now,
		expires: k.expires.Add(-hppBeforeKPExpiry),
		mode:    mode,
		urls:    urls,
		title:   title,
	}
	s.hpp[h.id] = h
	k.hppIDs = append(k.hppIDs, h.id)
	base := s.base(c.r)
	exp := h.expires
	return ok(http.StatusCreated, klarna.HPPSession{
		SessionID:       h.id,
		SessionURL:      base + "/hpp/v1/sessions/" + h.id,
		RedirectURL:     base + "/hpp/pay/" + h.id,
		DistributionURL: base + "/hpp/v1/sessions/" + h.id + "/distribution",
		ExpiresAt:       &exp,
	})
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// merchantURL validates one merchant URL template: an absolute http(s) URL;
// status_update must be https unless its host is loopback or insecure
// callbacks are allowed.
func (s *Sim) merchantURL(o jobj, name string, callback bool) string {
	v, ok := o.str(name, false, 0, 0)
	if !ok || v == "" {
		return ""
	}
	probe := strings.NewReplacer("{{session_id}}", "x", "{{authorization_token}}", "x", "{{order_id}}", "x").Replace(v)
	u, err := url.Parse(probe)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		o.c.bad(o.at(name))
		return ""
	}
	if callback && u.Scheme == "http" && !s.opts.AllowInsecureCallbacks && !isLoopback(u.Hostname()) {
		o.c.bad(o.at(name))
		return ""
	}
	return v
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// statusBody is the read-session answer, also the callback's "session".
func statusBody(h *hppSession) klarna.HPPSessionStatus {
	upd, exp := h.updated, h.expires
	return klarna.HPPSessionStatus{
		SessionID:          h.id,
		Status:             h.status,
		UpdatedAt:          &upd,
		ExpiresAt:          &exp,
		AuthorizationToken: h.authToken,
		OrderID:            h.orderID,
		KlarnaReference:    h.klarnaRef,
	}
}

// readHPPSession is GET /hpp/v1/sessions/{id}.
func (s *Sim) readHPPSession(c *call) reply {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.liveHPP(c.r.PathValue("id"), now)
	if h == nil {
		return hppNotFound()
	}
	return ok(http.StatusOK, statusBody(h))
}

// disableHPPSession is DELETE /hpp/v1/sessions/{id}.
func (s *Sim) disableHPPSession(c *call) reply {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.liveHPP(c.r.PathValue("id"), now)
	if h == nil {
		return hppNotFound()
	}
	switch h.status {
	case klarna.HPPCompleted:
		return fail(http.StatusBadRequest, "BAD_VALUE", "HPP session has already been successfully completed")
	case klarna.HPPDisabled, klarna.HPPCancelled:
		return ok(http.StatusNoContent, nil)
	}
	s.setStatus(h, klarna.HPPDisabled, now)
	return ok(http.StatusNoContent, nil)
}

// distributeHPPSession is POST /hpp/v1/sessions/{id}/distribution. The
// simulator sends no SMS or e-mail; it validates and accepts.
func (s *Sim) distributeHPPSession(c *call) reply {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.liveHPP(c.r.PathValue("id"), now)
	if h == nil {
		return hppNotFound()
	}
	chk := &checker{}
	o, good := chk.root(c.body)
	if !good {
		return badValue(chk.messages())
	}
	method, _ := o.enum("method", true, "sms", "email", "token")
	if ci, ok := o.object("contact_information", true); ok {
		email, _ := ci.str("email", false, 0, 0)
		phone, _ := ci.str("phone", false, 0, 0)
		country, _ := ci.pattern("phone_country", false, reCountry())
		access, _ := ci.str("access_id", false, 0, 0)
		switch method {
		case "email":
			if email == "" {
				chk.bad("contact_information.email")
			}
		case "sms":
			if phone == "" {
				chk.bad("contact_information.phone")
			}
			if country == "" {
				chk.bad("contact_information.phone_country")
			}
		case "token":
			if access == "" {
				chk.bad("contact_information.access_id")
			}
		}
	}
	o.enum("template", false, "INSTORE_PURCHASE")
	if chk.failed() {
		return badValue(chk.messages())
	}
	if h.final() {
		return fail(http.StatusBadRequest, "BAD_VALUE", "HPP session is "+strings.ToLower(h.status))
	}
	return ok(http.StatusCreated, nil)
}

// setStatus changes an HPP session's status and queues its callback.
// Caller holds s.mu.
func (s *Sim) setStatus(h *hppSession, status string, now time.Time) {
	if h.status == status {
		return
	}
	h.status = status
	h.updated = now
	if h.urls.statusUpdate == "" {
		return
	}
	ev := klarna.StatusCallback{EventID: s.newID(), Session: statusBody(h)}
	body, err := marshal(ev)
	if err != nil {
		s.log.Error("encode callback", "hpp_session_id", h.id, "err", err)
		return
	}
	s.cb.enqueue(s.callbackFaults(), callbackEvent{
		url:       fillTemplate(h.urls.statusUpdate, h, false),
		sessionID: h.id,
		eventID:   ev.EventID,
		status:    status,
		body:      body,
	})
}

// fillTemplate fills the placeholders Klarna fills in a merchant URL
// (FACTS 1.3): {{session_id}} everywhere, {{authorization_token}} and
// {{order_id}} only in the success URL, by place_order_mode.
func fillTemplate(tmpl string, h *hppSession, success bool) string {
	if tmpl == "" {
		return ""
	}
	pairs := []string{"{{session_id}}", url.QueryEscape(h.id)}
	if success && h.mode == klarna.PlaceOrderModeNone {
		pairs = append(pairs, "{{authorization_token}}", url.QueryEscape(h.authToken))
	}
	if success && h.mode != klarna.PlaceOrderModeNone {
		pairs = append(pairs, "{{order_id}}", url.QueryEscape(h.orderID))
	}
	return strings.NewReplacer(pairs...).Replace(tmpl)
}

// Act applies a shopper action to an HPP session as its payment page
// would, and returns the new status and the merchant URL the browser is
// sent to ("" when Klarna would show its own page). Errors: ErrNotFound
// (unknown or expired), ErrConflict (final session, or its KP session
// already has an order), ErrInvalid (unknown action).
func (s *Sim) Act(hppSessionID, action string) (status, redirectTo string, err error) {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.liveHPP(hppSessionID, now)
	if h == nil {
		return "", "", ErrNotFound
	}
	k := s.liveKP(h.kpID, now)
	if k == nil {
		return "", "", ErrNotFound
	}
	if h.final() {
		return h.status, "", fmt.Errorf("hpp session %s is %s: %w", h.id, h.status, ErrConflict)
	}
	switch action {
	case ActionOpen, ActionPay, ActionDecline, ActionBack, ActionCancel, ActionError:
	default:
		return h.status, "", fmt.Errorf("action %q: %w", action, ErrInvalid)
	}
	if action == ActionPay && k.orderID != "" {
		return h.status, "", fmt.Errorf("kp session %s already has an order: %w", k.id, ErrConflict)
	}
	// The shopper is on the page before any button is pressed.
	s.setStatus(h, klarna.HPPInProgress, now)

	switch action {
	case ActionOpen:
		return h.status, "", nil
	case ActionPay:
		if h.mode == klarna.PlaceOrderModeNone {
			a := s.authorize(k, now)
			s.sendAuthorizationCallback(k, a)
			h.authToken = a.token
		} else {
			s.placeHPPOrder(h, k, now)
		}
		s.setStatus(h, klarna.HPPCompleted, now)
		return h.status, fillTemplate(h.urls.success, h, true), nil
	case ActionDecline:
		s.setStatus(h, klarna.HPPFailed, now)
		return h.status, fillTemplate(h.urls.failure, h, false), nil
	case ActionBack:
		s.setStatus(h, klarna.HPPBack, now)
		return h.status, fillTemplate(h.urls.back, h, false), nil
	case ActionCancel:
		// FACTS 1.2: in eCommerce a cancel is treated as back.
		if k.data.Channel == "ECOMMERCE" {
			s.setStatus(h, klarna.HPPBack, now)
		} else {
			s.setStatus(h, klarna.HPPCancelled, now)
		}
		return h.status, fillTemplate(h.urls.cancel, h, false), nil
	default: // ActionError
		s.setStatus(h, klarna.HPPError, now)
		target := h.urls.errorURL
		if target == "" {
			target = h.urls.failure
		}
		return h.status, fillTemplate(target, h, false), nil
	}
}

// placeHPPOrder places the KP order of a PLACE_ORDER or CAPTURE_ORDER
// session, as HPP does on pay. Caller holds s.mu.
func (s *Sim) placeHPPOrder(h *hppSession, k *kpSession, now time.Time) {
	d := k.data
	req, _ := marshal(klarna.OrderRequest{
		PurchaseCountry:  d.Country,
		PurchaseCurrency: d.Currency,
		Locale:           d.Locale,
		OrderAmount:      d.Amount,
		OrderTaxAmount:   d.TaxAmount,
		OrderLines:       d.Lines,
		BillingAddress:   d.Billing,
		ShippingAddress:  d.Shipping,
		AutoCapture:      h.mode == klarna.PlaceOrderModeCapture,
	})
	id := s.newID()
	s.orders = append(s.orders, OrderRecord{
		OrderID:          id,
		Source:           SourceHPP,
		KPSessionID:      k.id,
		HPPSessionID:     h.id,
		OrderAmount:      d.Amount,
		PurchaseCurrency: d.Currency,
		Captured:         h.mode == klarna.PlaceOrderModeCapture,
		FraudStatus:      s.fraudStatusFor(k.id),
		Request:          req,
		CreatedAt:        now,
	})
	h.orderID = id
	h.klarnaRef = strings.ToUpper(strings.ReplaceAll(id, "-", "")[:8])
	k.orderID = id
	s.recoverToken(k)
}
