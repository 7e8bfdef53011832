package core

import (
	"testing"
	"time"
)

// The fraud review transitions of a charge's order, and the ones refused.
func TestChargeSetFraudStatus(t *testing.T) {
	cases := []struct {
		from, to string
		noOrder  bool
		moves    bool
	}{
		{"", FraudPending, false, true},
		{"", FraudAccepted, false, true},
		{FraudPending, FraudAccepted, false, true},
		{FraudPending, FraudRejected, false, true},
		{FraudPending, FraudStopped, false, true},
		{FraudAccepted, FraudStopped, false, true},
		{FraudAccepted, FraudRejected, false, true},
		{FraudPending, FraudPending, false, false},
		{FraudAccepted, FraudPending, false, false},
		{FraudAccepted, FraudAccepted, false, false},
		{FraudRejected, FraudAccepted, false, false},
		{FraudStopped, FraudAccepted, false, false},
		{FraudRejected, FraudStopped, false, false},
		{FraudPending, "", false, false},
		{"", FraudAccepted, true, false},
	}
	for _, tc := range cases {
		name := tc.from + "→" + tc.to
		if tc.noOrder {
			name += " without an order"
		}
		t.Run(name, func(t *testing.T) {
			now := t0.Add(time.Hour)
			for _, st := range []ChargeStatus{ChargeCharged, ChargeRecovered} {
				c := &Charge{ID: "chg_1", Status: st, OrderID: "ord_1", FraudStatus: tc.from, UpdatedAt: t0}
				if tc.noOrder {
					c.OrderID = ""
				}
				moved := c.SetFraudStatus(tc.to, SourceJob, "read", now)
				if moved != tc.moves {
					t.Fatalf("%s: moved %v, want %v", st, moved, tc.moves)
				}
				switch {
				case moved && (c.FraudStatus != tc.to || c.Status != st || len(c.History) != 1 || c.History[0].FraudStatus != tc.to || !c.UpdatedAt.Equal(now)):
					t.Fatalf("%s: charge %+v", st, c)
				case !moved && (c.FraudStatus != tc.from || len(c.History) != 0 || !c.UpdatedAt.Equal(t0)):
					t.Fatalf("%s: a refused fraud status changed the charge: %+v", st, c)
				}
			}
		})
	}
}

func TestSessionSetFraudStatus(t *testing.T) {
	s := &Session{ID: "ses_1", Status: SessionOrderPlaced, PlaceOrderMode: ModePlace, OrderID: "ord_1", CheckAt: t0}
	if !s.FraudReviewPending() {
		t.Fatal("an order Klarna placed is not read for its fraud status")
	}
	if !s.SetFraudStatus(FraudAccepted, SourcePoller, "read", t0) || s.FraudReviewPending() || !s.CheckAt.IsZero() {
		t.Fatalf("session %+v", s)
	}
	if s.SetFraudStatus(FraudPending, SourcePoller, "read", t0) {
		t.Fatal("an accepted order went back to pending")
	}
	p := pendingSession(ModeNone)
	if p.SetFraudStatus(FraudAccepted, SourcePoller, "read", t0) || p.FraudReviewPending() {
		t.Fatal("a session without an order took a fraud status")
	}
}

// What a check_fraud job's read does to the charge.
func TestChargeFraudRead(t *testing.T) {
	now := t0.Add(time.Hour)
	cases := []struct {
		name      string
		from, got string
		step      ChargeStep
		after     string
	}{
		{"still pending waits", FraudPending, FraudPending, ChargeStep{}, FraudPending},
		{"unknown to the read waits", FraudPending, "", ChargeStep{}, FraudPending},
		{"accepted is recorded", FraudPending, FraudAccepted, ChargeStep{Changed: true, Settled: true, Event: EventChargeFraudStatus}, FraudAccepted},
		{"rejected is recorded", FraudPending, FraudRejected, ChargeStep{Changed: true, Settled: true, Event: EventChargeFraudStatus}, FraudRejected},
		{"decided before: pending ends the job", FraudAccepted, FraudPending, ChargeStep{Settled: true}, FraudAccepted},
		{"decided before: the same outcome ends the job", FraudRejected, FraudRejected, ChargeStep{Settled: true}, FraudRejected},
		{"decided before: stopped later is recorded", FraudAccepted, FraudStopped, ChargeStep{Changed: true, Settled: true, Event: EventChargeFraudStatus}, FraudStopped},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Charge{ID: "chg_1", Status: ChargeCharged, OrderID: "ord_1", FraudStatus: tc.from}
			if got := c.FraudRead(tc.got, now); got.Changed != tc.step.Changed || got.Settled != tc.step.Settled || got.Event != tc.step.Event || len(got.Jobs) != 0 {
				t.Fatalf("step %+v, want %+v", got, tc.step)
			}
			if c.FraudStatus != tc.after || c.Status != ChargeCharged {
				t.Fatalf("charge %+v", c)
			}
		})
	}
}
