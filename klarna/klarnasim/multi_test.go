package klarnasim

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hppd/hppd/klarna"
)

// TestMultiAccountsAreSeparate: each account's credentials reach only its
// own sessions, tokens and orders; the payment page goes to the account
// that made it.
func TestMultiAccountsAreSeparate(t *testing.T) {
	m := NewMulti(Options{Seed: 1, Now: func() time.Time { return t0 }, Unlimited: true},
		Account{Name: "eu", Username: "eu-user", Password: "eu-pass"},
		Account{Name: "na", Username: "na-user", Password: "na-pass"})
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(func() { m.Close(); srv.Close() })
	m.SetPublicURL(srv.URL)
	e := &env{t: t, srv: srv}

	r := e.doAuth("POST", "/payments/v1/sessions", kpBody(), "eu-user", "eu-pass")
	expectStatus(t, r, http.StatusOK)
	var kp klarna.KPSession
	r.json(t, &kp)
	expectStatus(t, e.doAuth("GET", "/payments/v1/sessions/"+kp.SessionID, nil, "eu-user", "eu-pass"), http.StatusOK)
	expectStatus(t, e.doAuth("GET", "/payments/v1/sessions/"+kp.SessionID, nil, "na-user", "na-pass"), http.StatusNotFound)
	expectStatus(t, e.doAuth("GET", "/payments/v1/sessions/"+kp.SessionID, nil, "eu-user", "na-pass"), http.StatusUnauthorized)

	tok := m.Account("na").CreateToken(BehaviorOK, 0)
	expectStatus(t, e.doAuth("GET", "/customer-token/v1/tokens/"+tok, nil, "na-user", "na-pass"), http.StatusOK)
	expectStatus(t, e.doAuth("GET", "/customer-token/v1/tokens/"+tok, nil, "eu-user", "eu-pass"), http.StatusNotFound)
	expectStatus(t, e.doAuth("POST", "/customer-token/v1/tokens/"+tok+"/order", tokenOrderBody(), "eu-user", "eu-pass", "Klarna-Idempotency-Key", "k1"), http.StatusNotFound)
	expectStatus(t, e.doAuth("POST", "/customer-token/v1/tokens/"+tok+"/order", tokenOrderBody(), "na-user", "na-pass", "Klarna-Idempotency-Key", "k1"), http.StatusOK)
	orders := m.Orders()
	if len(orders) != 1 || orders[0].Account != "na" || orders[0].CustomerToken != tok {
		t.Fatalf("orders %+v, want one token order at na", orders)
	}

	r = e.doAuth("POST", "/hpp/v1/sessions", map[string]any{"payment_session_url": srv.URL + "/payments/v1/sessions/" + kp.SessionID}, "eu-user", "eu-pass")
	expectStatus(t, r, http.StatusCreated)
	var h klarna.HPPSession
	r.json(t, &h)
	expectStatus(t, e.doAuth("GET", "/hpp/pay/"+h.SessionID, nil, "", ""), http.StatusOK)
	if _, _, err := m.Act(h.SessionID, ActionPay); err != nil {
		t.Fatalf("act on the eu page: %v", err)
	}
	if st := m.Account("eu").readStatus(h.SessionID); st != "COMPLETED" {
		t.Fatalf("eu HPP session %s, want COMPLETED", st)
	}
}

func (s *Sim) readStatus(hppID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hpp[hppID].status
}
