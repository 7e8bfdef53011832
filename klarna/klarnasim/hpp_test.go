package klarnasim

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/klarna"
)

var shopURLs = map[string]string{
	"success": "https://shop.example/ok?sid=s1&hppId={{session_id}}&token={{authorization_token}}&order={{order_id}}",
	"cancel":  "https://shop.example/cancel?hppId={{session_id}}&token={{authorization_token}}",
	"back":    "https://shop.example/back?hppId={{session_id}}",
	"failure": "https://shop.example/fail?hppId={{session_id}}",
	"error":   "https://shop.example/error?hppId={{session_id}}",
}

func TestHPPCreateAndRead(t *testing.T) {
	e := newEnv(t, nil)
	kpID := e.createKP(kpBody())
	h := e.createHPP(kpID, shopURLs, nil)
	base := e.srv.URL
	if h.SessionID == "" || h.RedirectURL != base+"/hpp/pay/"+h.SessionID ||
		h.SessionURL != base+"/hpp/v1/sessions/"+h.SessionID ||
		h.DistributionURL != base+"/hpp/v1/sessions/"+h.SessionID+"/distribution" {
		t.Fatalf("create answer %+v", h)
	}
	if h.ExpiresAt == nil || !h.ExpiresAt.Equal(t0.Add(47*time.Hour)) {
		t.Fatalf("expires_at %v", h.ExpiresAt)
	}
	st := e.readHPP(h.SessionID)
	if st.Status != klarna.HPPWaiting || st.SessionID != h.SessionID || st.AuthorizationToken != "" {
		t.Fatalf("read %+v", st)
	}

	t.Run("public url", func(t *testing.T) {
		e.sim.SetPublicURL("https://sim.example/")
		defer e.sim.SetPublicURL("")
		h := e.createHPP(kpID, nil, nil)
		if h.RedirectURL != "https://sim.example/hpp/pay/"+h.SessionID {
			t.Fatalf("redirect_url %s", h.RedirectURL)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		expectStatus(t, e.do("GET", "/hpp/v1/sessions/nope", nil), http.StatusNotFound)
		expectStatus(t, e.do("DELETE", "/hpp/v1/sessions/nope", nil), http.StatusNotFound)
		expectStatus(t, e.do("POST", "/hpp/v1/sessions/nope/distribution", map[string]any{
			"method": "email", "contact_information": map[string]any{"email": "a@b.example"},
		}), http.StatusNotFound)
	})
	t.Run("lifetime", func(t *testing.T) {
		e.sim.Advance(47*time.Hour - time.Second)
		e.readHPP(h.SessionID)
		e.sim.Advance(time.Second)
		expectStatus(t, e.do("GET", "/hpp/v1/sessions/"+h.SessionID, nil), http.StatusNotFound)
		expectStatus(t, e.do("DELETE", "/hpp/v1/sessions/"+h.SessionID, nil), http.StatusNotFound)
		if _, _, err := e.sim.Act(h.SessionID, ActionPay); !errors.Is(err, ErrNotFound) {
			t.Fatalf("pay on expired session: %v", err)
		}
		// The KP session itself lives one more hour, but no HPP session can be born.
		r := e.do("POST", "/hpp/v1/sessions", map[string]any{"payment_session_url": "https://api.klarna.com/payments/v1/sessions/" + kpID})
		expectStatus(t, r, http.StatusNotFound)
		e.sim.Advance(time.Hour)
		expectStatus(t, e.do("POST", "/hpp/v1/sessions", map[string]any{"payment_session_url": "https://api.klarna.com/payments/v1/sessions/" + kpID}), http.StatusNotFound)
	})
}

func TestHPPCreateValidation(t *testing.T) {
	e := newEnv(t, nil)
	kpID := e.createKP(kpBody())
	psu := "https://api.playground.klarna.com/payments/v1/sessions/" + kpID
	cases := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"payment_session_url missing", map[string]any{}, "payment_session_url"},
		{"payment_session_url not a KP url", map[string]any{"payment_session_url": "https://api.klarna.com/checkout/v3/orders/" + kpID}, "payment_session_url"},
		{"payment_session_url relative", map[string]any{"payment_session_url": "/payments/v1/sessions/" + kpID}, "payment_session_url"},
		{"payment_session_url unknown session", map[string]any{"payment_session_url": "https://api.klarna.com/payments/v1/sessions/nope"}, "payment_session_url"},
		{"place_order_mode enum", map[string]any{"payment_session_url": psu, "options": map[string]any{"place_order_mode": "ALWAYS"}}, "options.place_order_mode"},
		{"category lowercase", map[string]any{"payment_session_url": psu, "options": map[string]any{"payment_method_category": "pay_later"}}, "options.payment_method_category"},
		{"categories item", map[string]any{"payment_session_url": psu, "options": map[string]any{"payment_method_categories": []string{"PAY_NOW", "CASH"}}}, "options.payment_method_categories[1]"},
		{"category and categories", map[string]any{"payment_session_url": psu, "options": map[string]any{
			"payment_method_category": "PAY_NOW", "payment_method_categories": []string{"PAY_LATER"},
		}}, "options.payment_method_categories"},
		{"purchase_type enum", map[string]any{"payment_session_url": psu, "options": map[string]any{"purchase_type": "STEAL"}}, "options.purchase_type"},
		{"success not a url", map[string]any{"payment_session_url": psu, "merchant_urls": map[string]any{"success": "shop/ok"}}, "merchant_urls.success"},
		{"status_update over http", map[string]any{"payment_session_url": psu, "merchant_urls": map[string]any{"status_update": "http://shop.example/cb?hppId={{session_id}}"}}, "merchant_urls.status_update"},
		{"status_update ftp", map[string]any{"payment_session_url": psu, "merchant_urls": map[string]any{"status_update": "ftp://127.0.0.1/cb"}}, "merchant_urls.status_update"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectBadValue(t, e.do("POST", "/hpp/v1/sessions", c.body), c.field)
		})
	}
	t.Run("loopback http callbacks", func(t *testing.T) {
		for _, u := range []string{"http://127.0.0.1:9/cb", "http://localhost/cb", "http://[::1]:8080/cb", "https://shop.example/cb"} {
			expectStatus(t, e.do("POST", "/hpp/v1/sessions", map[string]any{
				"payment_session_url": psu, "merchant_urls": map[string]any{"status_update": u},
			}), http.StatusCreated)
		}
	})
	t.Run("insecure allowed", func(t *testing.T) {
		e2 := newEnv(t, func(o *Options) { o.AllowInsecureCallbacks = true })
		kp := e2.createKP(kpBody())
		e2.createHPP(kp, map[string]string{"status_update": "http://shop.example/cb"}, nil)
	})
	t.Run("completed KP session", func(t *testing.T) {
		kp := e.createKP(kpBody())
		tok, _ := e.sim.Authorize(kp, true)
		expectStatus(t, e.do("POST", "/payments/v1/authorizations/"+tok+"/order", orderBody()), http.StatusOK)
		expectBadValue(t, e.do("POST", "/hpp/v1/sessions", map[string]any{"payment_session_url": "https://api.klarna.com/payments/v1/sessions/" + kp}), "payment_session_url")
	})
}

func TestHPPActions(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		action  string
		channel string
		status  string
		target  string
	}{
		{ActionDecline, "ECOMMERCE", klarna.HPPFailed, "https://shop.example/fail?hppId=%s"},
		{ActionBack, "ECOMMERCE", klarna.HPPBack, "https://shop.example/back?hppId=%s"},
		{ActionCancel, "ECOMMERCE", klarna.HPPBack, "https://shop.example/cancel?hppId=%s&token={{authorization_token}}"},
		{ActionCancel, "IN_STORE", klarna.HPPCancelled, "https://shop.example/cancel?hppId=%s&token={{authorization_token}}"},
		{ActionError, "ECOMMERCE", klarna.HPPError, "https://shop.example/error?hppId=%s"},
		{ActionOpen, "ECOMMERCE", klarna.HPPInProgress, ""},
	}
	for _, c := range cases {
		t.Run(c.action+" "+c.channel, func(t *testing.T) {
			b := kpBody()
			b["acquiring_channel"] = c.channel
			h := e.createHPP(e.createKP(b), shopURLs, nil)
			status, target, err := e.sim.Act(h.SessionID, c.action)
			if err != nil {
				t.Fatal(err)
			}
			want := c.target
			if want != "" {
				want = strings.Replace(want, "%s", h.SessionID, 1)
			}
			if status != c.status || target != want {
				t.Fatalf("got %s %q, want %s %q", status, target, c.status, want)
			}
			if st := e.readHPP(h.SessionID); st.Status != c.status {
				t.Fatalf("read status %s", st.Status)
			}
		})
	}
	t.Run("pay after decline", func(t *testing.T) {
		kp := e.createKP(kpBody())
		h := e.createHPP(kp, shopURLs, nil)
		if _, _, err := e.sim.Act(h.SessionID, ActionDecline); err != nil {
			t.Fatal(err)
		}
		status, target, err := e.sim.Act(h.SessionID, ActionPay)
		if err != nil || status != klarna.HPPCompleted {
			t.Fatalf("pay: %s %v", status, err)
		}
		st := e.readHPP(h.SessionID)
		if st.AuthorizationToken == "" || st.OrderID != "" {
			t.Fatalf("read %+v", st)
		}
		want := "https://shop.example/ok?sid=s1&hppId=" + h.SessionID + "&token=" + st.AuthorizationToken + "&order={{order_id}}"
		if target != want {
			t.Fatalf("target %q, want %q", target, want)
		}
		// The token places the KP order, once.
		expectStatus(t, e.do("POST", "/payments/v1/authorizations/"+st.AuthorizationToken+"/order", orderBody()), http.StatusOK)
		if _, _, err := e.sim.Act(h.SessionID, ActionBack); !errors.Is(err, ErrConflict) {
			t.Fatalf("action on completed session: %v", err)
		}
	})
	t.Run("place order modes", func(t *testing.T) {
		for _, mode := range []string{klarna.PlaceOrderModePlace, klarna.PlaceOrderModeCapture} {
			kp := e.createKP(kpBody())
			h := e.createHPP(kp, shopURLs, map[string]any{"place_order_mode": mode})
			_, target, err := e.sim.Act(h.SessionID, ActionPay)
			if err != nil {
				t.Fatal(err)
			}
			st := e.readHPP(h.SessionID)
			if st.OrderID == "" || st.AuthorizationToken != "" || st.KlarnaReference == "" {
				t.Fatalf("%s read %+v", mode, st)
			}
			if want := "https://shop.example/ok?sid=s1&hppId=" + h.SessionID + "&token={{authorization_token}}&order=" + st.OrderID; target != want {
				t.Fatalf("%s target %q", mode, target)
			}
			var found *OrderRecord
			for _, o := range e.sim.Orders() {
				if o.OrderID == st.OrderID {
					found = &o
				}
			}
			if found == nil || found.Source != SourceHPP || found.HPPSessionID != h.SessionID || found.KPSessionID != kp ||
				found.OrderAmount != 22500 || found.Captured != (mode == klarna.PlaceOrderModeCapture) {
				t.Fatalf("%s order record %+v", mode, found)
			}
			var read map[string]any
			e.do("GET", "/payments/v1/sessions/"+kp, nil).json(t, &read)
			if read["status"] != "complete" {
				t.Fatalf("KP status %v", read["status"])
			}
		}
	})
	t.Run("empty error url falls back to failure", func(t *testing.T) {
		h := e.createHPP(e.createKP(kpBody()), map[string]string{"failure": "https://shop.example/f?h={{session_id}}"}, nil)
		_, target, _ := e.sim.Act(h.SessionID, ActionError)
		if target != "https://shop.example/f?h="+h.SessionID {
			t.Fatalf("target %q", target)
		}
	})
	t.Run("no urls", func(t *testing.T) {
		h := e.createHPP(e.createKP(kpBody()), nil, nil)
		_, target, err := e.sim.Act(h.SessionID, ActionPay)
		if err != nil || target != "" {
			t.Fatalf("target %q %v", target, err)
		}
	})
	t.Run("bad action and unknown session", func(t *testing.T) {
		h := e.createHPP(e.createKP(kpBody()), nil, nil)
		if _, _, err := e.sim.Act(h.SessionID, "dance"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bad action: %v", err)
		}
		if _, _, err := e.sim.Act("nope", ActionPay); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown: %v", err)
		}
	})
	t.Run("second hpp session after the order", func(t *testing.T) {
		kp := e.createKP(kpBody())
		h1 := e.createHPP(kp, nil, map[string]any{"place_order_mode": klarna.PlaceOrderModePlace})
		h2 := e.createHPP(kp, nil, nil)
		if _, _, err := e.sim.Act(h1.SessionID, ActionPay); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.sim.Act(h2.SessionID, ActionPay); !errors.Is(err, ErrConflict) {
			t.Fatalf("second payment of one KP session: %v", err)
		}
	})
}

func TestHPPDisableAndDistribute(t *testing.T) {
	e := newEnv(t, nil)
	h := e.createHPP(e.createKP(kpBody()), nil, nil)
	dist := "/hpp/v1/sessions/" + h.SessionID + "/distribution"

	dcases := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"method missing", map[string]any{"contact_information": map[string]any{"email": "a@b.example"}}, "method"},
		{"method enum", map[string]any{"method": "fax", "contact_information": map[string]any{}}, "method"},
		{"contact missing", map[string]any{"method": "email"}, "contact_information"},
		{"email missing", map[string]any{"method": "email", "contact_information": map[string]any{}}, "contact_information.email"},
		{"sms phone_country", map[string]any{"method": "sms", "contact_information": map[string]any{"phone": "0701234567"}}, "contact_information.phone_country"},
		{"token access_id", map[string]any{"method": "token", "contact_information": map[string]any{}}, "contact_information.access_id"},
	}
	for _, c := range dcases {
		t.Run("distribution "+c.name, func(t *testing.T) {
			expectBadValue(t, e.do("POST", dist, c.body), c.field)
		})
	}
	sms := map[string]any{"method": "sms", "contact_information": map[string]any{"phone": "0701234567", "phone_country": "SE"}}
	expectStatus(t, e.do("POST", dist, sms), http.StatusCreated)

	expectStatus(t, e.do("DELETE", "/hpp/v1/sessions/"+h.SessionID, nil), http.StatusNoContent)
	if st := e.readHPP(h.SessionID); st.Status != klarna.HPPDisabled {
		t.Fatalf("status %s", st.Status)
	}
	expectStatus(t, e.do("DELETE", "/hpp/v1/sessions/"+h.SessionID, nil), http.StatusNoContent)
	expectStatus(t, e.do("POST", dist, sms), http.StatusBadRequest)
	if _, _, err := e.sim.Act(h.SessionID, ActionPay); !errors.Is(err, ErrConflict) {
		t.Fatalf("pay on disabled: %v", err)
	}

	t.Run("completed cannot be disabled", func(t *testing.T) {
		h := e.createHPP(e.createKP(kpBody()), nil, nil)
		if _, _, err := e.sim.Act(h.SessionID, ActionPay); err != nil {
			t.Fatal(err)
		}
		expectStatus(t, e.do("DELETE", "/hpp/v1/sessions/"+h.SessionID, nil), http.StatusBadRequest)
		if st := e.readHPP(h.SessionID); st.Status != klarna.HPPCompleted {
			t.Fatalf("status %s", st.Status)
		}
	})
}

// browser fetches a page without following redirects.
func browser(t *testing.T, method, u string, form url.Values) (int, http.Header, string) {
	t.Helper()
	var res *http.Response
	var err error
	if method == http.MethodPost {
		res, err = noRedirect.PostForm(u, form)
	} else {
		res, err = noRedirect.Get(u)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

func TestPaymentPage(t *testing.T) {
	e := newEnv(t, nil)
	b := kpBody(line("Running <shoe>", 2, 10000), line("Sock", 1, 2500))
	h := e.createHPP(e.createKP(b), shopURLs, map[string]any{"page_title": "Complete your purchase"})

	status, hdr, page := browser(t, "GET", h.RedirectURL, nil)
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("page %d %s", status, hdr.Get("Content-Type"))
	}
	for _, want := range []string{
		"Complete your purchase", "225.00 SEK", "45.00 SEK", "Running &lt;shoe&gt;", "100.00 SEK", "Sock",
		`value="pay">Pay`, `value="decline">Decline`, `value="back">Back`, `value="cancel">Cancel`, `value="error">Error`,
		`<form method="post">`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if st := e.readHPP(h.SessionID); st.Status != klarna.HPPInProgress {
		t.Fatalf("after opening: %s", st.Status)
	}

	status, hdr, _ = browser(t, "POST", h.RedirectURL, url.Values{"action": {"pay"}})
	st := e.readHPP(h.SessionID)
	want := "https://shop.example/ok?sid=s1&hppId=" + h.SessionID + "&token=" + st.AuthorizationToken + "&order={{order_id}}"
	if status != http.StatusSeeOther || hdr.Get("Location") != want || st.Status != klarna.HPPCompleted {
		t.Fatalf("pay: %d %q (%s), want %q", status, hdr.Get("Location"), st.Status, want)
	}

	status, _, page = browser(t, "POST", h.RedirectURL, url.Values{"action": {"pay"}})
	if status != http.StatusConflict || !strings.Contains(page, "COMPLETED") {
		t.Fatalf("second pay: %d %s", status, page)
	}
	status, _, _ = browser(t, "GET", h.RedirectURL, nil)
	if status != http.StatusConflict {
		t.Fatalf("reopening completed: %d", status)
	}
	status, _, _ = browser(t, "GET", e.srv.URL+"/hpp/pay/nope", nil)
	if status != http.StatusNotFound {
		t.Fatalf("unknown page: %d", status)
	}

	t.Run("no merchant url shows a page", func(t *testing.T) {
		h := e.createHPP(e.createKP(kpBody()), nil, nil)
		status, _, page := browser(t, "POST", h.RedirectURL, url.Values{"action": {"decline"}})
		if status != http.StatusOK || !strings.Contains(page, "FAILED") {
			t.Fatalf("decline: %d %s", status, page)
		}
	})
	t.Run("unknown action", func(t *testing.T) {
		h := e.createHPP(e.createKP(kpBody()), nil, nil)
		status, _, _ := browser(t, "POST", h.RedirectURL, url.Values{"action": {"steal"}})
		if status != http.StatusBadRequest {
			t.Fatalf("status %d", status)
		}
	})
	t.Run("expired page", func(t *testing.T) {
		h := e.createHPP(e.createKP(kpBody()), nil, nil)
		e.sim.Advance(47 * time.Hour)
		status, _, _ := browser(t, "GET", h.RedirectURL, nil)
		if status != http.StatusNotFound {
			t.Fatalf("status %d", status)
		}
	})
}
