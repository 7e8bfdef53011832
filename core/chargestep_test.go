package core

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

var testChargePolicy = ChargePolicy{
	RetrySchedule:       []time.Duration{time.Hour, 6 * time.Hour},
	PresentRetries:      2,
	SafetyDelay:         time.Minute,
	FallbackResumeDelay: 10 * time.Second,
	FraudRecheck:        15 * time.Minute,
}

// newCharge is a charge at try 1 (key chg_1-1) in status st.
func newCharge(st ChargeStatus, present bool) *Charge {
	c := &Charge{ID: "chg_1", Storefront: "shop", CustomerToken: "tok", CustomerPresent: present, Status: st, KlarnaAccount: "eu",
		CreatedAt: t0, UpdatedAt: t0}
	c.NextTry()
	return c
}

func answer(key, result string, status int) TokenOrderAnswer {
	a := TokenOrderAnswer{Attempt: Attempt{At: t0, IdempotencyKey: key, Result: result, HTTPStatus: status}}
	switch result {
	case AttemptCharged:
		a.OrderID, a.FraudStatus = "ord_1", FraudAccepted
	case AttemptDeclined:
		a.Error = &KlarnaError{HTTPStatus: 403, Code: "PAYMENT_METHOD_FAILED"}
	case AttemptUnavailable:
		a.Error = &KlarnaError{HTTPStatus: 403, Code: "UNAVAILABLE_PAYMENT_METHOD"}
	case AttemptFinal:
		a.Error = &KlarnaError{HTTPStatus: 400, Code: "BAD_VALUE"}
	}
	return a
}

type wantJob struct {
	id, key string
	due     time.Duration // after now
}

func jobsOf(js []Job, now time.Time) []wantJob {
	var out []wantJob
	for _, j := range js {
		out = append(out, wantJob{j.ID, j.IdempotencyKey, j.DueAt.Sub(now)})
	}
	return out
}

// TestChargeAnswered drives every transition of a token order's answer,
// including the ones a charge must refuse.
func TestChargeAnswered(t *testing.T) {
	now := t0.Add(time.Minute)
	cases := []struct {
		name    string
		charge  func() *Charge
		answer  TokenOrderAnswer
		status  ChargeStatus
		step    ChargeStep // Jobs compared apart
		jobs    []wantJob
		key     string // the charge's attempt key after
		history int    // entries added
	}{
		{name: "charged", charge: func() *Charge { return newCharge(ChargePending, true) }, answer: answer("chg_1-1", AttemptCharged, 200),
			status: ChargeCharged, step: ChargeStep{Changed: true, Settled: true, Outcome: ChargeCharged, Token: TokenCharged, Event: "charge.charged"}, key: "chg_1-1", history: 1},
		{name: "charged with fraud review pending watches it", charge: func() *Charge { return newCharge(ChargePending, false) },
			answer: func() TokenOrderAnswer {
				a := answer("chg_1-1", AttemptCharged, 200)
				a.FraudStatus = FraudPending
				return a
			}(),
			status: ChargeCharged, step: ChargeStep{Changed: true, Settled: true, Outcome: ChargeCharged, Token: TokenCharged, Event: "charge.charged"},
			jobs: []wantJob{{"check_fraud/chg_1", "", 15 * time.Minute}}, key: "chg_1-1", history: 1},
		{name: "retrying charged on a scheduled retry", charge: func() *Charge { c := newCharge(ChargeRetrying, false); c.Retries = 1; return c }, answer: answer("chg_1-1", AttemptCharged, 200),
			status: ChargeCharged, step: ChargeStep{Changed: true, Settled: true, Outcome: ChargeCharged, Token: TokenCharged, Event: "charge.charged"}, key: "chg_1-1", history: 1},
		{name: "no answer is recorded and resent", charge: func() *Charge { return newCharge(ChargePending, true) }, answer: answer("chg_1-1", AttemptTransient, 503),
			status: ChargePending, step: ChargeStep{Changed: true}, key: "chg_1-1"},
		{name: "no answer after the charge ended is still recorded", charge: func() *Charge { return newCharge(ChargeCharged, true) }, answer: answer("chg_1-1", AttemptTransient, 0),
			status: ChargeCharged, step: ChargeStep{Changed: true}, key: "chg_1-1"},
		{name: "unusable 2xx is an unknown outcome", charge: func() *Charge { return newCharge(ChargePending, true) }, answer: answer("chg_1-1", AttemptTransient, 200),
			status: ChargePending, step: ChargeStep{Changed: true}, key: "chg_1-1"},
		{name: "third unusable 2xx is taken at its word", charge: func() *Charge {
			c := newCharge(ChargePending, true)
			c.Attempts = []Attempt{{IdempotencyKey: "chg_1-1", Result: AttemptTransient, HTTPStatus: 200}, {IdempotencyKey: "chg_1-1", Result: AttemptTransient, HTTPStatus: 201}}
			return c
		}, answer: answer("chg_1-1", AttemptTransient, 200),
			status: ChargeCharged, step: ChargeStep{Changed: true, Settled: true, Outcome: ChargeCharged, Token: TokenCharged, Event: "charge.charged"}, key: "chg_1-1", history: 1},
		{name: "unusable answers of another attempt do not count", charge: func() *Charge {
			c := newCharge(ChargePending, true)
			c.Attempts = []Attempt{{IdempotencyKey: "chg_1-0", Result: AttemptTransient, HTTPStatus: 200}, {IdempotencyKey: "chg_1-1", Result: AttemptTransient, HTTPStatus: 503}, {IdempotencyKey: "chg_1-1", Result: AttemptTransient, HTTPStatus: 200}}
			return c
		}, answer: answer("chg_1-1", AttemptTransient, 200),
			status: ChargePending, step: ChargeStep{Changed: true}, key: "chg_1-1"},
		{name: "unavailable present falls back", charge: func() *Charge { return newCharge(ChargePending, true) },
			answer: func() TokenOrderAnswer { a := answer("chg_1-1", AttemptUnavailable, 403); a.InRequest = true; return a }(),
			status: ChargeFallback, step: ChargeStep{Changed: true, Settled: true, Outcome: ChargeFallback, Token: TokenCharged},
			jobs: []wantJob{{"retry_charge/chg_1/0", "chg_1-1", 10 * time.Second}}, key: "chg_1-1", history: 1},
		{name: "unavailable present recorded by the safety job falls back", charge: func() *Charge { return newCharge(ChargePending, true) },
			answer: answer("chg_1-1", AttemptUnavailable, 403),
			status: ChargeFallback, step: ChargeStep{Changed: true, Settled: true, Outcome: ChargeFallback, Token: TokenCharged},
			jobs: []wantJob{{"retry_charge/chg_1/0", "chg_1-1", 10 * time.Second}}, key: "chg_1-1", history: 1},
		{name: "unavailable absent needs the customer", charge: func() *Charge { return newCharge(ChargePending, false) }, answer: answer("chg_1-1", AttemptUnavailable, 403),
			status: ChargeNeedsCustomer, step: ChargeStep{Changed: true, Settled: true, Outcome: ChargeNeedsCustomer, Token: TokenCharged, Event: "charge.needs_customer"}, key: "chg_1-1", history: 1},
		{name: "unavailable on a scheduled retry needs the customer", charge: func() *Charge { c := newCharge(ChargeRetrying, false); c.Retries = 1; return c }, answer: answer("chg_1-1", AttemptUnavailable, 403),
			status: ChargeNeedsCustomer, step: ChargeStep{Changed: true, Settled: true, Outcome: ChargeNeedsCustomer, Token: TokenCharged, Event: "charge.needs_customer"}, key: "chg_1-1", history: 1},
		{name: "declined in the request tries again at once", charge: func() *Charge { return newCharge(ChargePending, true) },
			answer: func() TokenOrderAnswer { a := answer("chg_1-1", AttemptDeclined, 403); a.InRequest = true; return a }(),
			status: ChargePending, step: ChargeStep{Changed: true, Settled: true, Again: true},
			jobs: []wantJob{{"retry_charge/chg_1/0", "chg_1-2", time.Minute}}, key: "chg_1-2"},
		{name: "declined in the request with the present retries used up fails", charge: func() *Charge { c := newCharge(ChargePending, true); c.NextTry(); c.NextTry(); return c },
			answer: func() TokenOrderAnswer { a := answer("chg_1-3", AttemptDeclined, 403); a.InRequest = true; return a }(),
			status: ChargeFailed, step: ChargeStep{Changed: true, Settled: true, Outcome: ChargeFailed, Token: TokenCharged, Event: "charge.failed"}, key: "chg_1-3", history: 1},
		{name: "declined present after the request is scheduled", charge: func() *Charge { return newCharge(ChargePending, true) }, answer: answer("chg_1-1", AttemptDeclined, 403),
			status: ChargeRetrying, step: ChargeStep{Changed: true, Settled: true},
			jobs: []wantJob{{"retry_charge/chg_1/1", "chg_1-2", time.Hour}}, key: "chg_1-2", history: 1},
		{name: "declined absent in the request is scheduled", charge: func() *Charge { return newCharge(ChargePending, false) },
			answer: func() TokenOrderAnswer { a := answer("chg_1-1", AttemptDeclined, 403); a.InRequest = true; return a }(),
			status: ChargeRetrying, step: ChargeStep{Changed: true, Settled: true},
			jobs: []wantJob{{"retry_charge/chg_1/1", "chg_1-2", time.Hour}}, key: "chg_1-2", history: 1},
		{name: "declined absent is scheduled", charge: func() *Charge { return newCharge(ChargePending, false) }, answer: answer("chg_1-1", AttemptDeclined, 403),
			status: ChargeRetrying, step: ChargeStep{Changed: true, Settled: true},
			jobs: []wantJob{{"retry_charge/chg_1/1", "chg_1-2", time.Hour}}, key: "chg_1-2", history: 1},
		{name: "declined again takes the next delay without history", charge: func() *Charge { c := newCharge(ChargeRetrying, false); c.Retries = 1; return c }, answer: answer("chg_1-1", AttemptDeclined, 403),
			status: ChargeRetrying, step: ChargeStep{Changed: true, Settled: true},
			jobs: []wantJob{{"retry_charge/chg_1/2", "chg_1-2", 6 * time.Hour}}, key: "chg_1-2"},
		{name: "declined with the schedule used up fails", charge: func() *Charge { c := newCharge(ChargeRetrying, false); c.Retries = 2; return c }, answer: answer("chg_1-1", AttemptDeclined, 403),
			status: ChargeFailed, step: ChargeStep{Changed: true, Settled: true, Outcome: ChargeFailed, Token: TokenCharged, Event: "charge.failed"}, key: "chg_1-1", history: 1},
		{name: "other refusal fails", charge: func() *Charge { return newCharge(ChargePending, true) }, answer: answer("chg_1-1", AttemptFinal, 400),
			status: ChargeFailed, step: ChargeStep{Changed: true, Settled: true, Outcome: ChargeFailed, Token: TokenCharged, Event: "charge.failed"}, key: "chg_1-1", history: 1},

		// Refused: the answer was recorded before, or belongs to another attempt.
		{name: "charged absorbs a late refusal", charge: func() *Charge { return newCharge(ChargeCharged, true) }, answer: answer("chg_1-1", AttemptFinal, 400),
			status: ChargeCharged, step: ChargeStep{Settled: true}, key: "chg_1-1"},
		{name: "charged absorbs a third unusable 2xx", charge: func() *Charge {
			c := newCharge(ChargeCharged, true)
			c.Attempts = []Attempt{{IdempotencyKey: "chg_1-1", Result: AttemptTransient, HTTPStatus: 200}, {IdempotencyKey: "chg_1-1", Result: AttemptTransient, HTTPStatus: 200}}
			return c
		}, answer: answer("chg_1-1", AttemptTransient, 200),
			status: ChargeCharged, step: ChargeStep{Settled: true}, key: "chg_1-1"},
		{name: "recovered absorbs a decline", charge: func() *Charge { return newCharge(ChargeRecovered, true) }, answer: answer("chg_1-1", AttemptDeclined, 403),
			status: ChargeRecovered, step: ChargeStep{Settled: true}, key: "chg_1-1"},
		{name: "failed absorbs a charge answer", charge: func() *Charge { return newCharge(ChargeFailed, false) }, answer: answer("chg_1-1", AttemptCharged, 200),
			status: ChargeFailed, step: ChargeStep{Settled: true}, key: "chg_1-1"},
		{name: "fallback absorbs a second unavailable", charge: func() *Charge { return newCharge(ChargeFallback, true) }, answer: answer("chg_1-1", AttemptUnavailable, 403),
			status: ChargeFallback, step: ChargeStep{Settled: true}, key: "chg_1-1"},
		{name: "needs_customer absorbs an answer", charge: func() *Charge { return newCharge(ChargeNeedsCustomer, false) }, answer: answer("chg_1-1", AttemptCharged, 200),
			status: ChargeNeedsCustomer, step: ChargeStep{Settled: true}, key: "chg_1-1"},
		{name: "an earlier attempt's answer is settled elsewhere", charge: func() *Charge { c := newCharge(ChargeRetrying, false); c.NextTry(); return c }, answer: answer("chg_1-1", AttemptCharged, 200),
			status: ChargeRetrying, step: ChargeStep{Settled: true}, key: "chg_1-2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.charge()
			before := *c
			hist, attempts := len(c.History), len(c.Attempts)
			got := c.Answered(tc.answer, now, testChargePolicy)
			if c.Status != tc.status {
				t.Errorf("status %s, want %s", c.Status, tc.status)
			}
			jobs := got.Jobs
			got.Jobs = nil
			if !reflect.DeepEqual(got, tc.step) {
				t.Errorf("step %+v, want %+v", got, tc.step)
			}
			if g := jobsOf(jobs, now); !reflect.DeepEqual(g, tc.jobs) {
				t.Errorf("jobs %+v, want %+v", g, tc.jobs)
			}
			for _, j := range jobs {
				if j.ChargeID != c.ID || !j.CreatedAt.Equal(now) {
					t.Errorf("job %+v", j)
				}
			}
			if c.AttemptKey != tc.key {
				t.Errorf("attempt key %s, want %s", c.AttemptKey, tc.key)
			}
			if n := len(c.History) - hist; n != tc.history {
				t.Errorf("history grew by %d, want %d: %+v", n, tc.history, c.History)
			}
			switch {
			case !got.Changed:
				if !reflect.DeepEqual(*c, before) {
					t.Errorf("a refused answer changed the charge: %+v", c)
				}
			case len(c.Attempts) != attempts+1 || c.Attempts[attempts] != tc.answer.Attempt:
				t.Errorf("attempts %+v: the answer is not recorded last", c.Attempts)
			}
		})
	}
}

func TestChargeAnsweredRecordsWhatKlarnaSaid(t *testing.T) {
	now := t0.Add(time.Minute)
	c := newCharge(ChargePending, false)
	a := answer("chg_1-1", AttemptCharged, 200)
	a.FraudStatus = FraudPending
	c.Answered(a, now, testChargePolicy)
	if c.OrderID != "ord_1" || c.FraudStatus != FraudPending || c.Error != nil || c.OrderIDUnknown || !c.UpdatedAt.Equal(now) {
		t.Fatalf("charged: %+v", c)
	}

	c = newCharge(ChargePending, false)
	c.Attempts = []Attempt{{IdempotencyKey: "chg_1-1", Result: AttemptTransient, HTTPStatus: 200}, {IdempotencyKey: "chg_1-1", Result: AttemptTransient, HTTPStatus: 200}}
	c.Answered(answer("chg_1-1", AttemptTransient, 200), now, testChargePolicy)
	if c.OrderID != "" || !c.OrderIDUnknown || c.Status != ChargeCharged {
		t.Fatalf("unusable answers: %+v", c)
	}

	c = newCharge(ChargePending, false)
	d := answer("chg_1-1", AttemptDeclined, 403)
	c.Answered(d, now, testChargePolicy)
	if c.Error != d.Error || c.Retries != 1 || c.Try != 2 || !c.UpdatedAt.Equal(now) {
		t.Fatalf("declined: %+v", c)
	}
	// The scheduled retry is declined again: no new history, but the
	// charge moved on to its next try.
	c.Answered(answer("chg_1-2", AttemptDeclined, 403), now.Add(time.Hour), testChargePolicy)
	if c.Retries != 2 || c.Try != 3 || !c.UpdatedAt.Equal(now.Add(time.Hour)) || len(c.History) != 1 {
		t.Fatalf("declined again: %+v", c)
	}
}

func TestChargeSafetyJob(t *testing.T) {
	c := newCharge(ChargePending, true)
	j := c.SafetyJob(t0, testChargePolicy)
	want := Job{ID: "retry_charge/chg_1/0", Kind: JobRetryCharge, ChargeID: "chg_1", IdempotencyKey: "chg_1-1", DueAt: t0.Add(time.Minute), CreatedAt: t0}
	if !reflect.DeepEqual(j, want) {
		t.Fatalf("safety job %+v, want %+v", j, want)
	}
}

func TestChargeFallbackStarted(t *testing.T) {
	now := t0.Add(time.Minute)
	for _, st := range ChargeStatuses {
		t.Run(string(st), func(t *testing.T) {
			c := newCharge(st, true)
			before := *c
			refusal := c.FallbackRefusal()
			got := c.FallbackStarted("ses_2", now)
			switch st {
			case ChargeFallback, ChargeNeedsCustomer, ChargeFailed:
				if refusal != nil {
					t.Fatalf("refused: %v", refusal)
				}
				want := ChargeStep{Changed: true, Drop: []string{"retry_charge/chg_1/0"}, Event: "charge.fallback"}
				if !reflect.DeepEqual(got, want) || c.Status != ChargeFallback || c.SessionID != "ses_2" || !c.UpdatedAt.Equal(now) {
					t.Fatalf("step %+v, charge %+v", got, c)
				}
				if grew := len(c.History) - len(before.History); (st == ChargeFallback) != (grew == 0) {
					t.Fatalf("history %+v", c.History)
				}
			default:
				if ErrorCodeOf(refusal) != CodeConflict {
					t.Fatalf("refusal %v, want a conflict", refusal)
				}
				if !reflect.DeepEqual(got, ChargeStep{}) || !reflect.DeepEqual(*c, before) {
					t.Fatalf("a %s charge started a fallback: %+v", st, c)
				}
			}
		})
	}
}

func TestChargeFallbackRefused(t *testing.T) {
	now := t0.Add(time.Minute)
	ke := &KlarnaError{HTTPStatus: 400, Code: "BAD_VALUE"}
	c := newCharge(ChargeFallback, true)
	got := c.FallbackRefused(ke, now)
	want := ChargeStep{Changed: true, Drop: []string{"retry_charge/chg_1/0"}, Outcome: ChargeFailed, Event: "charge.failed"}
	if !reflect.DeepEqual(got, want) || c.Status != ChargeFailed || c.Error != ke {
		t.Fatalf("step %+v, charge %+v", got, c)
	}
	refused := map[string]*Charge{
		"with a session": func() *Charge { c := newCharge(ChargeFallback, true); c.SessionID = "ses_2"; return c }(),
		"needs_customer": newCharge(ChargeNeedsCustomer, false),
		"charged":        newCharge(ChargeCharged, true),
		"failed":         newCharge(ChargeFailed, true),
	}
	for name, c := range refused {
		before := *c
		if got := c.FallbackRefused(ke, now); !reflect.DeepEqual(got, ChargeStep{}) || !reflect.DeepEqual(*c, before) {
			t.Errorf("%s: step %+v, charge %+v", name, got, c)
		}
	}
}

func TestChargeSessionEnded(t *testing.T) {
	now := t0.Add(time.Hour)
	ke := &KlarnaError{Code: "DECLINED"}
	cases := []struct {
		name    string
		status  ChargeStatus
		session SessionStatus
		other   bool // the session is not the charge's
		want    ChargeStatus
		step    ChargeStep
	}{
		{"order placed recovers", ChargeFallback, SessionOrderPlaced, false, ChargeRecovered,
			ChargeStep{Changed: true, Outcome: ChargeRecovered, Token: TokenRecovered, Event: "charge.recovered"}},
		{"cancelled fails", ChargeFallback, SessionCancelled, false, ChargeFailed, ChargeStep{Changed: true, Outcome: ChargeFailed, Event: "charge.failed"}},
		{"expired fails", ChargeFallback, SessionExpired, false, ChargeFailed, ChargeStep{Changed: true, Outcome: ChargeFailed, Event: "charge.failed"}},
		{"failed fails", ChargeFallback, SessionFailed, false, ChargeFailed, ChargeStep{Changed: true, Outcome: ChargeFailed, Event: "charge.failed"}},
		{"authorized waits", ChargeFallback, SessionAuthorized, false, ChargeFallback, ChargeStep{}},
		{"pending waits", ChargeFallback, SessionPending, false, ChargeFallback, ChargeStep{}},
		{"another session is ignored", ChargeFallback, SessionOrderPlaced, true, ChargeFallback, ChargeStep{}},
		{"a failed charge is not recovered by a late order", ChargeFailed, SessionOrderPlaced, false, ChargeFailed, ChargeStep{}},
		{"a recovered charge absorbs its session failing", ChargeRecovered, SessionFailed, false, ChargeRecovered, ChargeStep{}},
		{"a charged charge absorbs a session", ChargeCharged, SessionOrderPlaced, false, ChargeCharged, ChargeStep{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCharge(tc.status, true)
			c.SessionID = "ses_2"
			s := &Session{ID: "ses_2", Status: tc.session, OrderID: "ord_9", FraudStatus: FraudAccepted, Error: ke}
			if tc.other {
				s.ID = "ses_3"
			}
			before := *c
			got := c.SessionEnded(s, now)
			if !reflect.DeepEqual(got, tc.step) || c.Status != tc.want {
				t.Fatalf("step %+v status %s, want %+v %s", got, c.Status, tc.step, tc.want)
			}
			switch tc.want {
			case tc.status:
				if !reflect.DeepEqual(*c, before) {
					t.Fatalf("charge changed: %+v", c)
				}
			case ChargeRecovered:
				if c.OrderID != "ord_9" || c.FraudStatus != FraudAccepted || c.OrderIDUnknown {
					t.Fatalf("recovered charge %+v", c)
				}
			case ChargeFailed:
				if c.Error != ke || c.OrderID != "" {
					t.Fatalf("failed charge %+v", c)
				}
			}
		})
	}
	// An order whose id hppd never learnt recovers the charge the same way.
	c := newCharge(ChargeFallback, true)
	c.SessionID = "ses_2"
	c.SessionEnded(&Session{ID: "ses_2", Status: SessionOrderPlaced, OrderIDUnknown: true}, now)
	if c.Status != ChargeRecovered || !c.OrderIDUnknown || c.OrderID != "" {
		t.Fatalf("charge %+v", c)
	}
}

func TestTokenRecord(t *testing.T) {
	c := newCharge(ChargeCharged, true)
	tok := &TokenInfo{Storefront: "shop", CustomerToken: "tok"}
	tok.Record(c, false, t0)
	if tok.KlarnaAccount != "eu" || tok.LastChargeID != "chg_1" || tok.LastOutcome != ChargeCharged || !tok.LastChargeAt.Equal(t0) || tok.Recovered {
		t.Fatalf("token %+v", tok)
	}
	c2 := newCharge(ChargeRecovered, true)
	c2.ID, c2.KlarnaAccount = "chg_2", "na"
	tok.Record(c2, true, t0.Add(time.Hour))
	if tok.KlarnaAccount != "eu" || tok.LastChargeID != "chg_2" || !tok.Recovered || tok.RecoveredBy != "chg_2" || !tok.RecoveredAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("token %+v", tok)
	}
}

func TestChargeEventTypes(t *testing.T) {
	want := map[ChargeStatus]string{ChargePending: "", ChargeRetrying: "", ChargeCharged: "charge.charged", ChargeFallback: "charge.fallback",
		ChargeNeedsCustomer: "charge.needs_customer", ChargeFailed: "charge.failed", ChargeRecovered: "charge.recovered"}
	for _, st := range ChargeStatuses {
		if got := st.EventType(); got != want[st] {
			t.Errorf("%s: %q, want %q", st, got, want[st])
		}
	}
}

// The answer "unavailable" and the link of the fallback session, as one
// step: the charge in fallback with its session, no resume job added (the
// link ends it), the token's view, the outcome counted once and the one
// event charge.fallback.
func TestChargeStepThen(t *testing.T) {
	c := newCharge(ChargePending, true)
	st := c.Answered(TokenOrderAnswer{Attempt: Attempt{At: t0, IdempotencyKey: c.AttemptKey, Result: AttemptUnavailable}, InRequest: true}, t0, testChargePolicy)
	if len(st.Jobs) != 1 || st.Event != "" {
		t.Fatalf("answer step %+v", st)
	}
	merged, ok := st.Then(c.FallbackStarted("ses_2", t0))
	want := ChargeStep{Changed: true, Settled: true, Drop: []string{"retry_charge/chg_1/0"}, Outcome: ChargeFallback, Token: TokenCharged, Event: "charge.fallback"}
	if !ok || !reflect.DeepEqual(merged, want) {
		t.Fatalf("merged %+v, %v; want %+v", merged, ok, want)
	}
	if c.Status != ChargeFallback || c.SessionID != "ses_2" {
		t.Fatalf("charge %+v", c)
	}

	// Jobs the next step does not end stay; both steps' jobs are added.
	a := ChargeStep{Changed: true, Jobs: []Job{{ID: "a"}, {ID: "b"}}, Drop: []string{"x"}, Outcome: ChargeCharged}
	b := ChargeStep{Changed: true, Jobs: []Job{{ID: "c"}}, Drop: []string{"b"}}
	got, ok := a.Then(b)
	if !ok || fmt.Sprint(got.Jobs) != fmt.Sprint([]Job{{ID: "a"}, {ID: "c"}}) || fmt.Sprint(got.Drop) != "[x b]" || got.Outcome != ChargeCharged {
		t.Fatalf("merged %+v", got)
	}
	// Two events cannot be one step.
	if _, ok := (ChargeStep{Event: "charge.charged"}).Then(ChargeStep{Event: "charge.fallback"}); ok {
		t.Fatal("two events merged")
	}
}
