package core

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func pendingSession(mode string) *Session {
	return &Session{ID: "ses_1", Status: SessionPending, PlaceOrderMode: mode, KlarnaStatus: KlarnaWaiting,
		CreatedAt: t0, UpdatedAt: t0, ExpiresAt: t0.Add(47 * time.Hour)}
}

func TestObserveTransitions(t *testing.T) {
	cases := []struct {
		name       string
		mode       string
		start      SessionStatus
		obs        Observation
		wantStatus SessionStatus
		wantKlarna string
		wantJobs   []JobKind
	}{
		{"callback in progress is recorded", ModeNone, SessionPending, Observation{Source: SourceCallback, KlarnaStatus: KlarnaInProgress}, SessionPending, KlarnaInProgress, nil},
		{"callback completed only schedules a re-read", ModeNone, SessionPending, Observation{Source: SourceCallback, KlarnaStatus: KlarnaCompleted, AuthorizationToken: "forged"}, SessionPending, KlarnaWaiting, []JobKind{JobSyncSession}},
		{"callback cancelled only schedules a re-read", ModeNone, SessionPending, Observation{Source: SourceCallback, KlarnaStatus: KlarnaCancelled}, SessionPending, KlarnaWaiting, []JobKind{JobSyncSession}},
		{"read completed NONE authorizes and places", ModeNone, SessionPending, Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaCompleted, AuthorizationToken: "tok"}, SessionAuthorized, KlarnaCompleted, []JobKind{JobPlaceOrder}},
		{"read completed without token re-reads", ModeNone, SessionPending, Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaCompleted}, SessionPending, KlarnaCompleted, []JobKind{JobSyncSession}},
		{"read completed PLACE_ORDER records the order", ModePlace, SessionPending, Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaCompleted, OrderID: "o1"}, SessionOrderPlaced, KlarnaCompleted, nil},
		{"read completed CAPTURE without order id re-reads", ModeCapture, SessionPending, Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaCompleted}, SessionPending, KlarnaCompleted, []JobKind{JobSyncSession}},
		{"read cancelled cancels", ModeNone, SessionPending, Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaCancelled}, SessionCancelled, KlarnaCancelled, nil},
		{"read disabled without request expires", ModeNone, SessionPending, Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaDisabled}, SessionExpired, KlarnaDisabled, nil},
		{"404 expires a pending session", ModeNone, SessionPending, Observation{Source: SourcePoller, Authoritative: true, Gone: true}, SessionExpired, KlarnaWaiting, nil},
		{"404 leaves an authorized session alone", ModeNone, SessionAuthorized, Observation{Source: SourcePoller, Authoritative: true, Gone: true}, SessionAuthorized, KlarnaWaiting, nil},
		{"failed keeps it pending", ModeNone, SessionPending, Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaFailed}, SessionPending, KlarnaFailed, nil},
		{"final absorbs completed", ModeNone, SessionCancelled, Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaCompleted, AuthorizationToken: "t"}, SessionCancelled, KlarnaWaiting, nil},
		{"final absorbs callbacks", ModeNone, SessionOrderPlaced, Observation{Source: SourceCallback, KlarnaStatus: KlarnaInProgress}, SessionOrderPlaced, KlarnaWaiting, nil},
		{"authorized is not re-authorized", ModeNone, SessionAuthorized, Observation{Source: SourceRedirect, Authoritative: true, KlarnaStatus: KlarnaCompleted, AuthorizationToken: "t2"}, SessionAuthorized, KlarnaCompleted, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := pendingSession(c.mode)
			s.Status = c.start
			_, jobs := s.Observe(c.obs, t0.Add(time.Minute), DefaultPolicy)
			if s.Status != c.wantStatus || s.KlarnaStatus != c.wantKlarna {
				t.Fatalf("status %s/%s, want %s/%s", s.Status, s.KlarnaStatus, c.wantStatus, c.wantKlarna)
			}
			if len(jobs) != len(c.wantJobs) {
				t.Fatalf("jobs %v, want %v", jobs, c.wantJobs)
			}
			for i, j := range jobs {
				if j.Kind != c.wantJobs[i] || j.SessionID != s.ID {
					t.Fatalf("job %d: %+v, want %s", i, j, c.wantJobs[i])
				}
			}
			if c.start.Final() && len(s.History) != 0 {
				t.Fatal("a final session got history")
			}
		})
	}
}

func TestOlderCallbackIsIgnored(t *testing.T) {
	s := pendingSession(ModeNone)
	s.Observe(Observation{Source: SourceCallback, KlarnaStatus: KlarnaFailed, KlarnaUpdatedAt: t0.Add(2 * time.Minute)}, t0.Add(3*time.Minute), DefaultPolicy)
	s.Observe(Observation{Source: SourceCallback, KlarnaStatus: KlarnaInProgress, KlarnaUpdatedAt: t0.Add(time.Minute)}, t0.Add(4*time.Minute), DefaultPolicy)
	if s.KlarnaStatus != KlarnaFailed {
		t.Fatalf("late IN_PROGRESS moved the session back to %s", s.KlarnaStatus)
	}
}

func TestPlaceOrderJobIDIsStable(t *testing.T) {
	a, b := pendingSession(ModeNone), pendingSession(ModeNone)
	obs := Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaCompleted, AuthorizationToken: "t"}
	_, ja := a.Observe(obs, t0, DefaultPolicy)
	_, jb := b.Observe(obs, t0.Add(time.Second), DefaultPolicy)
	if ja[0].ID != jb[0].ID || ja[0].ID != PlaceOrderJobID("ses_1") {
		t.Fatalf("job ids %q %q", ja[0].ID, jb[0].ID)
	}
}

func TestDisableAndExpiry(t *testing.T) {
	s := pendingSession(ModeNone)
	if s.ExpiryDue(t0.Add(46*time.Hour), DefaultPolicy) {
		t.Fatal("expiry due too early")
	}
	if !s.ExpiryDue(s.ExpiresAt.Add(-DefaultPolicy.ExpiryMargin), DefaultPolicy) {
		t.Fatal("expiry not due at the margin")
	}
	jobs := s.RequestDisable(DisableCancel, SourceAPI, t0)
	if len(jobs) != 1 || jobs[0].ID != DisableJobID(s.ID) {
		t.Fatalf("jobs %v", jobs)
	}
	if again := s.RequestDisable(DisableExpire, SourcePoller, t0); again != nil {
		t.Fatal("second disable request made a job")
	}
	if !s.Disabled(SourceJob, t0) || s.Status != SessionCancelled {
		t.Fatalf("status %s", s.Status)
	}
	if s.Disabled(SourceJob, t0) || s.OrderPlaced("o", "ACCEPTED", t0) || s.Fail(nil, SourceJob, "x", t0) {
		t.Fatal("a final session moved")
	}
}

func TestNextCheckIsCappedByExpiry(t *testing.T) {
	s := pendingSession(ModeNone)
	now := s.ExpiresAt.Add(-DefaultPolicy.ExpiryMargin - time.Second)
	s.Observe(Observation{Source: SourceCallback, KlarnaStatus: KlarnaInProgress}, now, DefaultPolicy)
	if want := s.ExpiresAt.Add(-DefaultPolicy.ExpiryMargin); !s.CheckAt.Equal(want) {
		t.Fatalf("check at %v, want %v", s.CheckAt, want)
	}
}

func TestChargeStatusNeverLeavesPaid(t *testing.T) {
	c := &Charge{ID: "chg_1", Status: ChargePending}
	c.NextTry()
	if c.AttemptKey != "chg_1-1" {
		t.Fatalf("key %q", c.AttemptKey)
	}
	c.NextTry()
	if c.AttemptKey != "chg_1-2" {
		t.Fatalf("key %q", c.AttemptKey)
	}
	if !c.SetStatus(ChargeCharged, SourceAPI, "ok", t0) || c.SetStatus(ChargeFailed, SourceJob, "late", t0) || c.Status != ChargeCharged {
		t.Fatalf("status %s", c.Status)
	}
	if len(c.History) != 1 {
		t.Fatalf("history %v", c.History)
	}
}

func TestBackoffIsBounded(t *testing.T) {
	for n := 1; n < 40; n++ {
		d := Backoff(n, time.Second, time.Minute)
		if d <= 0 || d > time.Minute {
			t.Fatalf("backoff(%d) = %v", n, d)
		}
	}
	if d := Backoff(1, time.Second, time.Minute); d > time.Second {
		t.Fatalf("first backoff %v", d)
	}
}
