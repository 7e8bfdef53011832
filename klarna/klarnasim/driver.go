package klarnasim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
)

// driverRoutes registers the test-driver API under /_sim/ (README.md).
func (s *Sim) driverRoutes(mux *http.ServeMux) {
	d := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.driver(h)) }
	d("POST /_sim/tokens", s.simCreateToken)
	d("POST /_sim/hpp/{id}/{action}", s.simAct)
	d("POST /_sim/kp/{id}/authorize", s.simAuthorize)
	d("POST /_sim/kp/{id}/fraud-review", s.simHoldForFraudReview)
	d("POST /_sim/orders/{id}/fraud", s.simDecideFraud)
	d("GET /_sim/orders", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Orders()) })
	d("GET /_sim/requests", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Requests()) })
	d("GET /_sim/callbacks", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Callbacks()) })
	d("GET /_sim/faults", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.currentFaults()) })
	d("POST /_sim/faults", s.simSetFaults)
	d("DELETE /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.SetFaults(Faults{})
		w.WriteHeader(http.StatusNoContent)
	})
	d("GET /_sim/behaviour", s.simGetBehaviour)
	d("POST /_sim/behaviour", s.simSetBehaviour)
	d("GET /_sim/clock", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, clockBody{Now: s.Now()}) })
	d("POST /_sim/clock", s.simClock)
	d("/_sim/", func(w http.ResponseWriter, _ *http.Request) {
		writeDriverError(w, http.StatusNotFound, "no such simulator endpoint")
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
}

// driver checks the simulator's Basic credentials and bounds the body.
func (s *Sim) driver(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="klarnasim"`)
			writeDriverError(w, http.StatusUnauthorized, "unauthorized")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		h(w, r)
	})
}

type driverError struct {
	Error string `json:"error"`
}

type clockBody struct {
	Now time.Time `json:"now"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeDriverError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, driverError{Error: msg})
}

// driverStatus maps a driver error to its HTTP status.
func driverStatus(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrDeclined):
		return http.StatusOK
	}
	return http.StatusBadRequest
}

// decodeStrict decodes an optional JSON body, refusing unknown fields.
func decodeStrict(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (s *Sim) simCreateToken(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Behavior string `json:"behavior"`
		Failures int    `json:"failures"`
		// FraudReview: orders charged to the token are PENDING until
		// POST /_sim/orders/{id}/fraud decides.
		FraudReview bool `json:"fraud_review"`
	}
	if err := decodeStrict(r, &in); err != nil {
		writeDriverError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if in.Behavior == "" {
		in.Behavior = BehaviorOK
	}
	id, err := s.createToken(in.Behavior, in.Failures)
	if err != nil {
		writeDriverError(w, http.StatusBadRequest, err.Error())
		return
	}
	if in.FraudReview {
		s.holdForFraudReview(id)
	}
	writeJSON(w, http.StatusCreated, map[string]string{"customer_token": id})
}

func (s *Sim) simAct(w http.ResponseWriter, r *http.Request) {
	status, target, err := s.Act(r.PathValue("id"), r.PathValue("action"))
	if err != nil {
		writeDriverError(w, driverStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": status, "redirect_to": target})
}

// simAuthorize answers like the callback of Klarna.Payments.authorize().
func (s *Sim) simAuthorize(w http.ResponseWriter, r *http.Request) {
	in := struct {
		Approve *bool `json:"approve"`
	}{}
	if err := decodeStrict(r, &in); err != nil {
		writeDriverError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	approve := in.Approve == nil || *in.Approve
	token, err := s.Authorize(r.PathValue("id"), approve)
	switch {
	case errors.Is(err, ErrDeclined):
		writeJSON(w, http.StatusOK, map[string]any{"approved": false, "show_form": false})
	case err != nil:
		writeDriverError(w, driverStatus(err), err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]any{"approved": true, "show_form": true, "authorization_token": token})
	}
}

func (s *Sim) simSetFaults(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		writeDriverError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	var f Faults
	if err := json.Unmarshal(b, &f); err != nil {
		writeDriverError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.SetFaults(f)
	writeJSON(w, http.StatusOK, s.currentFaults())
}

func (s *Sim) simClock(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Advance Duration `json:"advance"`
	}
	if err := decodeStrict(r, &in); err != nil {
		writeDriverError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	s.Advance(time.Duration(in.Advance))
	writeJSON(w, http.StatusOK, clockBody{Now: s.Now()})
}
