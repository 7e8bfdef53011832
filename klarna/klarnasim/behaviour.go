package klarnasim

import (
	"fmt"
	"net/http"
)

// Replay modes: how place-order answers a repeat for an authorization that
// already has an order (FACTS 7.2, 8.2).
const (
	// ReplayIdentical (the default) answers a repeat with an identical body
	// with the original order, and one with a different body with 409
	// BAD_VALUE "order has been already completed with different request
	// body".
	ReplayIdentical = "identical"
	// ReplayConsumed answers every repeat 403 INVALID_OPERATION
	// "Authorization token already consumed".
	ReplayConsumed = "consumed"
	// ReplaySessionCompleted answers every repeat 404 SESSION_COMPLETED
	// "Session has already been completed".
	ReplaySessionCompleted = "session_completed"
)

// Behaviour selects, where Klarna's sources disagree or promise nothing,
// the harsher of the answers they show (FACTS 8). The zero value is the
// simulator's default: identical replays, the OpenAPI documents' object
// form of authorized_payment_method, and an HPP read that carries the order
// id of an order placed through KP.
type Behaviour struct {
	// Replay is ReplayIdentical (also ""), ReplayConsumed or
	// ReplaySessionCompleted.
	Replay string `json:"replay,omitempty"`
	// PaymentMethodString answers authorized_payment_method as a bare
	// string ("invoice"), the form of Klarna's guides (FACTS 8.1).
	PaymentMethodString bool `json:"payment_method_string,omitempty"`
	// HPPOrderIDHidden leaves order_id out of the HPP read of a NONE-mode
	// session whose order the merchant placed through KP: the sources do not
	// say that HPP learns it.
	HPPOrderIDHidden bool `json:"hpp_order_id_hidden,omitempty"`
}

// Check reports an unknown replay mode.
func (b Behaviour) Check() error {
	switch b.Replay {
	case "", ReplayIdentical, ReplayConsumed, ReplaySessionCompleted:
		return nil
	}
	return fmt.Errorf("behaviour: unknown replay mode %q (want %s, %s or %s)", b.Replay, ReplayIdentical, ReplayConsumed, ReplaySessionCompleted)
}

// SetBehaviour replaces the simulator's behaviour (see Behaviour). An
// unknown replay mode is an error and changes nothing.
func (s *Sim) SetBehaviour(b Behaviour) error {
	if err := b.Check(); err != nil {
		return err
	}
	if b.Replay == "" {
		b.Replay = ReplayIdentical
	}
	s.mu.Lock()
	s.behaviour = b
	s.mu.Unlock()
	return nil
}

// CurrentBehaviour returns the simulator's behaviour.
func (s *Sim) CurrentBehaviour() Behaviour {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.behaviour
}

// replayReply is the answer to a repeated place-order under the current
// replay mode, or ok=false for ReplayIdentical. Caller holds s.mu.
func (s *Sim) replayReply() (reply, bool) {
	switch s.behaviour.Replay {
	case ReplayConsumed:
		return fail(http.StatusForbidden, "INVALID_OPERATION", "Authorization token already consumed"), true
	case ReplaySessionCompleted:
		return fail(http.StatusNotFound, "SESSION_COMPLETED", "Session has already been completed"), true
	}
	return reply{}, false
}

func (s *Sim) simGetBehaviour(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.CurrentBehaviour())
}

func (s *Sim) simSetBehaviour(w http.ResponseWriter, r *http.Request) {
	var b Behaviour
	if err := decodeStrict(r, &b); err != nil {
		writeDriverError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if err := s.SetBehaviour(b); err != nil {
		writeDriverError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.CurrentBehaviour())
}
