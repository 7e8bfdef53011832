package klarnasim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// Operation names, as used by faults and in RequestRecord.Operation.
const (
	OpCreateKPSession      = "create_kp_session"
	OpReadKPSession        = "read_kp_session"
	OpUpdateKPSession      = "update_kp_session"
	OpPlaceOrder           = "place_order"
	OpCancelAuthorization  = "cancel_authorization"
	OpCreateHPPSession     = "create_hpp_session"
	OpReadHPPSession       = "read_hpp_session"
	OpDisableHPPSession    = "disable_hpp_session"
	OpDistributeHPPSession = "distribute_hpp_session"
	OpReadCustomerToken    = "read_customer_token"
	OpCreateTokenOrder     = "create_token_order"
	OpUpdateTokenStatus    = "update_token_status"
	OpReadOrder            = "read_order"
	// OpAll in Faults.Operations applies a rule to every operation.
	OpAll = "*"
	// OpUnknown is recorded for a request on no known Klarna path.
	OpUnknown = "unknown"
)

var operations = map[string]bool{
	OpCreateKPSession: true, OpReadKPSession: true, OpUpdateKPSession: true,
	OpPlaceOrder: true, OpCancelAuthorization: true, OpCreateHPPSession: true,
	OpReadHPPSession: true, OpDisableHPPSession: true, OpDistributeHPPSession: true,
	OpReadCustomerToken: true, OpCreateTokenOrder: true, OpUpdateTokenStatus: true, OpReadOrder: true,
	OpAll: true,
}

// Duration is a time.Duration that reads and writes JSON as "50ms".
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string such as "1.5s" or "61m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"50ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// Faults is the set of injected faults: rules per operation and callback
// faults. On the wire it is one JSON object whose keys are operation names
// (or "*") with a list of rules each, plus "callbacks":
//
//	{"place_order": [{"error_rate": 1, "status": 503, "after_effect": true}],
//	 "*": [{"latency": "20ms"}],
//	 "callbacks": {"drop_rate": 0.3}}
type Faults struct {
	Operations map[string][]FaultRule
	Callbacks  *CallbackFaults
}

// FaultRule is one fault on an operation. The dice of all rates come from
// the seeded source.
type FaultRule struct {
	// ErrorRate is the probability that the answer is an error with
	// Status (default 503) and Code (default from the status).
	ErrorRate float64 `json:"error_rate,omitempty"`
	Status    int     `json:"status,omitempty"`
	Code      string  `json:"code,omitempty"`
	// AfterEffect makes an injected error or timeout happen after the
	// operation took effect: the order exists, but the caller sees the
	// error (or nothing).
	AfterEffect bool `json:"after_effect,omitempty"`
	// Latency is added before the operation.
	Latency Duration `json:"latency,omitempty"`
	// TimeoutRate is the probability that the request hangs for Timeout
	// (default 30s; abandoned as soon as the client goes away). Before the
	// effect the request then gets 504 and has no effect; after the effect
	// the real answer comes late.
	TimeoutRate float64  `json:"timeout_rate,omitempty"`
	Timeout     Duration `json:"timeout,omitempty"`
	// Burst429 answers 429 to the first Length of every Every requests.
	Burst429 *Burst `json:"burst_429,omitempty"`
	// GarbleRate is the probability that a 2xx answer with a body, after
	// the operation took effect, reaches the caller cut off halfway (not
	// JSON any more): the order exists, the answer is unusable.
	GarbleRate float64 `json:"garble_rate,omitempty"`
	// Times limits the rule to the first Times requests that reach it (a
	// "*" rule: of any operation), counted from when the faults were set;
	// 0 applies it to every request. {"garble_rate": 1, "times": 1} garbles
	// exactly the first answer, whenever its resend comes.
	Times int `json:"times,omitempty"`
}

// Burst describes periodic 429 answers: requests 1..Length of every cycle
// of Every requests get 429 with Retry-After and X-Ratelimit-Reset set to
// Reset seconds (default 1). With Status the burst answers that error
// instead (as ErrorRate would), and with AfterEffect it does so after the
// operation took effect; {"every": 1000000, "length": 1, "status": 500}
// fails just the first request.
type Burst struct {
	Every       int  `json:"every"`
	Length      int  `json:"length"`
	Reset       int  `json:"reset,omitempty"`
	Status      int  `json:"status,omitempty"`
	AfterEffect bool `json:"after_effect,omitempty"`
}

// CallbackFaults disturb status_update deliveries. Each event is dropped
// with DropRate (never sent), duplicated with DuplicateRate (1 to
// MaxDuplicates extra copies with the same event_id, default 1), delayed
// by Delay with DelayRate, and with ReorderRate held back until the next
// event of the same session has been sent (at most ReorderWindow, default
// 1s). Two faults reproduce what Klarna may send (FACTS 8.8, 8.9): with
// UnknownStatusRate an event carries a status outside today's enum
// (UnknownStatus, default "PENDING_CONFIRMATION") instead of its own, and
// with EmptyBodyRate one extra delivery of the event is sent with an empty
// body, as a retry without a body. Both apply to status_update only.
type CallbackFaults struct {
	DropRate          float64  `json:"drop_rate,omitempty"`
	DuplicateRate     float64  `json:"duplicate_rate,omitempty"`
	MaxDuplicates     int      `json:"max_duplicates,omitempty"`
	Delay             Duration `json:"delay,omitempty"`
	DelayRate         float64  `json:"delay_rate,omitempty"`
	ReorderRate       float64  `json:"reorder_rate,omitempty"`
	ReorderWindow     Duration `json:"reorder_window,omitempty"`
	UnknownStatusRate float64  `json:"unknown_status_rate,omitempty"`
	UnknownStatus     string   `json:"unknown_status,omitempty"`
	EmptyBodyRate     float64  `json:"empty_body_rate,omitempty"`
	// Kinds limits the faults to these callback kinds (status_update,
	// authorization, notification); empty means every kind.
	Kinds []string `json:"kinds,omitempty"`
}

// MarshalJSON writes the wire form described on Faults.
func (f Faults) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(f.Operations)+1)
	for op, rules := range f.Operations {
		m[op] = rules
	}
	if f.Callbacks != nil {
		m["callbacks"] = f.Callbacks
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads the wire form described on Faults and refuses unknown
// operation names and unknown rule fields.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	out := Faults{Operations: make(map[string][]FaultRule)}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		dec := json.NewDecoder(bytes.NewReader(m[k]))
		dec.DisallowUnknownFields()
		if k == "callbacks" {
			var cf CallbackFaults
			if err := dec.Decode(&cf); err != nil {
				return fmt.Errorf("faults callbacks: %w", err)
			}
			out.Callbacks = &cf
			continue
		}
		if !operations[k] {
			return fmt.Errorf("faults: unknown operation %q", k)
		}
		var rules []FaultRule
		if err := dec.Decode(&rules); err != nil {
			return fmt.Errorf("faults %s: %w", k, err)
		}
		for i, r := range rules {
			if err := r.check(); err != nil {
				return fmt.Errorf("faults %s[%d]: %w", k, i, err)
			}
		}
		out.Operations[k] = rules
	}
	*f = out
	return nil
}

func (r FaultRule) check() error {
	if r.ErrorRate < 0 || r.ErrorRate > 1 || r.TimeoutRate < 0 || r.TimeoutRate > 1 || r.GarbleRate < 0 || r.GarbleRate > 1 {
		return fmt.Errorf("rates must be within 0..1")
	}
	if r.Status != 0 && (r.Status < 400 || r.Status > 599) {
		return fmt.Errorf("status %d is not an error status", r.Status)
	}
	if r.Times < 0 {
		return fmt.Errorf("times must be 0 (every request) or more")
	}
	if b := r.Burst429; b != nil && (b.Every < 1 || b.Length < 0 || b.Length > b.Every || b.Reset < 0) {
		return fmt.Errorf("burst_429 needs every >= 1 and 0 <= length <= every")
	}
	if b := r.Burst429; b != nil && b.Status != 0 && (b.Status < 400 || b.Status > 599) {
		return fmt.Errorf("burst_429 status %d is not an error status", b.Status)
	}
	return nil
}

func (r FaultRule) errorReply() reply {
	status := r.Status
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	code := r.Code
	if code == "" {
		code = defaultCode(status)
	}
	rep := fail(status, code, http.StatusText(status))
	if status == http.StatusTooManyRequests {
		rep = rep.withHeader("Retry-After", "1").withHeader("X-Ratelimit-Reset", "1").withHeader("X-Ratelimit-Remaining", "0")
	}
	return rep
}

func defaultCode(status int) string {
	switch status {
	case http.StatusInternalServerError:
		return "INTERNAL_SERVER_ERROR"
	case http.StatusServiceUnavailable:
		return "SERVICE_UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "TIMEOUT"
	case http.StatusTooManyRequests:
		return "TOO_MANY_REQUESTS"
	case http.StatusBadGateway:
		return "BAD_GATEWAY"
	}
	return "ERROR"
}

// SetFaults replaces the injected faults (the zero Faults clears them) and
// restarts the 429 burst counters. Rules under names that are no operation
// never match; POST /_sim/faults refuses them.
func (s *Sim) SetFaults(f Faults) {
	cp := Faults{Operations: make(map[string][]FaultRule, len(f.Operations))}
	for op, rules := range f.Operations {
		cp.Operations[op] = append([]FaultRule(nil), rules...)
	}
	if f.Callbacks != nil {
		c := *f.Callbacks
		cp.Callbacks = &c
	}
	s.mu.Lock()
	s.faults = cp
	s.burstCount = make(map[string]int)
	s.ruleSeen = make(map[string]int)
	s.mu.Unlock()
}

// currentFaults returns a copy of the faults.
func (s *Sim) currentFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := Faults{Operations: make(map[string][]FaultRule, len(s.faults.Operations))}
	for op, rules := range s.faults.Operations {
		cp.Operations[op] = append([]FaultRule(nil), rules...)
	}
	if s.faults.Callbacks != nil {
		c := *s.faults.Callbacks
		cp.Callbacks = &c
	}
	return cp
}

// faultPlan is what the rules decided for one request.
type faultPlan struct {
	latency      time.Duration
	burst        *reply
	timeoutFirst time.Duration // hang, then 504, no effect
	timeoutAfter time.Duration // effect, then hang, then the real answer
	errFirst     *reply
	errAfter     *reply
	garble       bool
}

// plan rolls the dice of op's rules, in the order "*" rules then op rules.
func (s *Sim) plan(op string) faultPlan {
	var p faultPlan
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, key := range []string{OpAll, op} {
		for i, r := range s.faults.Operations[key] {
			if r.Times > 0 {
				ck := key + "#" + strconv.Itoa(i)
				n := s.ruleSeen[ck]
				if n >= r.Times {
					continue
				}
				s.ruleSeen[ck] = n + 1
			}
			p.latency += time.Duration(r.Latency)
			if b := r.Burst429; b != nil && p.burst == nil && b.Length > 0 {
				ck := key + "#" + strconv.Itoa(i)
				n := s.burstCount[ck]
				s.burstCount[ck] = n + 1
				if n%b.Every < b.Length && b.Status != 0 {
					rep := FaultRule{Status: b.Status}.errorReply()
					switch {
					case !b.AfterEffect:
						p.burst = &rep
					case p.errAfter == nil:
						p.errAfter = &rep
					}
				} else if n%b.Every < b.Length {
					reset := b.Reset
					if reset == 0 {
						reset = 1
					}
					rep := fail(http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "Too many requests").
						withHeader("Retry-After", strconv.Itoa(reset)).
						withHeader("X-Ratelimit-Reset", strconv.Itoa(reset)).
						withHeader("X-Ratelimit-Remaining", "0")
					p.burst = &rep
				}
			}
			if s.roll(r.TimeoutRate) {
				d := time.Duration(r.Timeout)
				if d == 0 {
					d = 30 * time.Second
				}
				if r.AfterEffect {
					p.timeoutAfter = max(p.timeoutAfter, d)
				} else {
					p.timeoutFirst = max(p.timeoutFirst, d)
				}
			}
			if s.roll(r.GarbleRate) {
				p.garble = true
			}
			if s.roll(r.ErrorRate) {
				rep := r.errorReply()
				if r.AfterEffect {
					if p.errAfter == nil {
						p.errAfter = &rep
					}
				} else if p.errFirst == nil {
					p.errFirst = &rep
				}
			}
		}
	}
	return p
}

// garbled cuts a 2xx answer's body in half; other answers stay as they are.
func garbled(rep reply) reply {
	if rep.status < 200 || rep.status > 299 || rep.errCode != "" || rep.body == nil {
		return rep
	}
	b, err := marshal(rep.body)
	if err != nil {
		return rep
	}
	b = bytes.TrimRight(b, "\n")
	rep.raw = b[:len(b)/2]
	rep.body = nil
	return rep
}

// withFaults runs do under the faults of op. It returns ok=false when the
// client went away while a fault made it wait (nothing is then written).
func (s *Sim) withFaults(ctx context.Context, op string, do func() reply) (reply, bool) {
	p := s.plan(op)
	if !s.sleep(ctx, p.latency) {
		return reply{}, false
	}
	if p.burst != nil {
		return *p.burst, true
	}
	if p.timeoutFirst > 0 {
		if !s.sleep(ctx, p.timeoutFirst) {
			return reply{}, false
		}
		return fail(http.StatusGatewayTimeout, "TIMEOUT", "Request timed out"), true
	}
	if p.errFirst != nil {
		return *p.errFirst, true
	}
	rep := do()
	if p.errAfter != nil {
		rep = *p.errAfter
	} else if p.garble {
		rep = garbled(rep)
	}
	if p.timeoutAfter > 0 && !s.sleep(ctx, p.timeoutAfter) {
		return reply{}, false
	}
	return rep, true
}
