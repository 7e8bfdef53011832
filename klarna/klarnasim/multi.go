package klarnasim

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
)

// Account is one Klarna account a Multi simulates: its name (on orders) and
// its API credentials.
type Account struct {
	Name, Username, Password string
}

// Multi simulates several Klarna accounts behind one address, as a merchant
// with one account per region or brand sees them. Each account is a Sim of
// its own (its own sessions, tokens, orders, rate limits and faults); the
// Basic credentials of a request pick the account, so one account's
// credentials never see another's sessions or tokens: Klarna's 404. The
// shopper's pages (no credentials) go to the account that made the page.
type Multi struct {
	names   []string
	sims    map[string]*Sim
	handler http.Handler
}

// NewMulti returns a Multi of accounts, each a Sim made from opts with the
// account's credentials and name (and, when opts.Seed is set, a seed of its
// own, so ids never collide across accounts).
func NewMulti(opts Options, accounts ...Account) *Multi {
	m := &Multi{sims: make(map[string]*Sim, len(accounts))}
	for i, a := range accounts {
		o := opts
		o.Username, o.Password, o.Account = a.Username, a.Password, a.Name
		if o.Seed != 0 {
			o.Seed += int64(i) * 7919
		}
		m.names = append(m.names, a.Name)
		m.sims[a.Name] = New(o)
	}
	m.handler = http.HandlerFunc(m.serve)
	return m
}

// Account returns the simulator of the named account (nil if none).
func (m *Multi) Account(name string) *Sim { return m.sims[name] }

// Handler serves every account's Klarna paths, /_sim/ and payment pages.
func (m *Multi) Handler() http.Handler { return m.handler }

// SetPublicURL sets every account's public base URL.
func (m *Multi) SetPublicURL(u string) {
	for _, s := range m.sims {
		s.SetPublicURL(u)
	}
}

// Close closes every account.
func (m *Multi) Close() {
	for _, s := range m.sims {
		s.Close()
	}
}

// Orders returns the orders of every account, account by account.
func (m *Multi) Orders() []OrderRecord {
	var out []OrderRecord
	for _, n := range m.names {
		out = append(out, m.sims[n].Orders()...)
	}
	return out
}

// Act is the shopper pressing a button on an HPP page of whichever account
// made it.
func (m *Multi) Act(hppSessionID, action string) (status, redirectTo string, err error) {
	if s := m.ownerOfPage(hppSessionID); s != nil {
		return s.Act(hppSessionID, action)
	}
	return "", "", ErrNotFound
}

func (m *Multi) serve(w http.ResponseWriter, r *http.Request) {
	if id, ok := pageID(r.URL.Path); ok {
		if s := m.ownerOfPage(id); s != nil {
			s.Handler().ServeHTTP(w, r)
			return
		}
	}
	if id, ok := strings.CutPrefix(r.URL.Path, "/redirect/orders/"); ok {
		for _, n := range m.names {
			if m.sims[n].hasOrder(id) {
				m.sims[n].Handler().ServeHTTP(w, r)
				return
			}
		}
	}
	u, p, _ := r.BasicAuth()
	for _, n := range m.names {
		s := m.sims[n]
		uOK := subtle.ConstantTimeCompare([]byte(u), []byte(s.opts.Username))
		pOK := subtle.ConstantTimeCompare([]byte(p), []byte(s.opts.Password))
		if uOK&pOK == 1 {
			s.Handler().ServeHTTP(w, r)
			return
		}
	}
	// No account's credentials: the first account answers (401, or the
	// page's 404).
	m.sims[m.names[0]].Handler().ServeHTTP(w, r)
}

// pageID is the HPP session id of a payment page path.
func pageID(path string) (string, bool) {
	id, ok := strings.CutPrefix(path, "/hpp/pay/")
	return id, ok && id != "" && !strings.Contains(id, "/")
}

func (m *Multi) ownerOfPage(hppSessionID string) *Sim {
	for _, n := range m.names {
		if m.sims[n].hasHPP(hppSessionID) {
			return m.sims[n]
		}
	}
	return nil
}

func (s *Sim) hasHPP(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.hpp[id]
	return ok
}

func (s *Sim) hasOrder(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.orders {
		if s.orders[i].OrderID == id {
			return true
		}
	}
	return false
}

// ListenAndServeMulti is ListenAndServe for several accounts (NewMulti).
func ListenAndServeMulti(ctx context.Context, addr string, opts Options, accounts ...Account) error {
	if len(accounts) == 0 {
		return errors.New("no accounts")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	if opts.PublicURL == "" {
		opts.PublicURL = "http://" + ln.Addr().String()
	}
	m := NewMulti(opts, accounts...)
	defer m.Close()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Info("simulator listening", "addr", ln.Addr().String(), "public_url", opts.PublicURL, "accounts", len(accounts))
	return serve(ctx, addr, ln, m.Handler(), m.Close)
}
