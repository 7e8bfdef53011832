package core

import (
	"testing"
	"time"
)

// lifeReads follows a session with no news through its whole life the way the
// poller does (a re-read when CheckAt comes, until ExpiryDue) and returns how
// many routine re-reads it got and the longest gap between two looks.
func lifeReads(t *testing.T, p Policy, life time.Duration) (reads int, maxGap time.Duration) {
	t.Helper()
	s := pendingSession(ModeNone)
	s.ExpiresAt = t0.Add(life)
	s.CheckAt = t0.Add(p.StaleAfter) // as a new session gets it
	last := t0
	for i := 0; i < 100000; i++ {
		now := s.CheckAt
		maxGap = max(maxGap, now.Sub(last))
		last = now
		if s.ExpiryDue(now, p) {
			return reads, maxGap
		}
		s.RereadScheduled(now, p)
		reads++
		// The re-read itself brings nothing new: Klarna still says WAITING.
		s.Observe(Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaWaiting}, now, p)
	}
	t.Fatal("the session never came to its expiry")
	return 0, 0
}

func TestDefaultScheduleFitsKlarnasBudget(t *testing.T) {
	p := Policy{StaleAfter: DefaultSchedule[0], Schedule: DefaultSchedule, ExpiryMargin: DefaultPolicy.ExpiryMargin}
	// An HPP session lives 47 h (its KP session 48 h, FACTS 1.8).
	reads, gap := lifeReads(t, p, 47*time.Hour)
	// 1m, 2m, 5m, 10m, 20m: looks at 1, 3, 8, 18 and 38 minutes, then every 20
	// minutes until 10 minutes before expiry: 5 + floor((2820-10-38)/20) = 143.
	if reads != 143 {
		t.Errorf("reads over 47h = %d, want 143", reads)
	}
	if reads > 150 {
		t.Errorf("reads over 47h = %d, over Klarna's budget of 150", reads)
	}
	if gap > 20*time.Minute {
		t.Errorf("longest gap = %v, want at most 20m (authorizations live 60m)", gap)
	}
	// hppd records the KP session's 48 h as ExpiresAt: still within budget.
	if reads48, _ := lifeReads(t, p, 48*time.Hour); reads48 > 150 {
		t.Errorf("reads over 48h = %d, over 150", reads48)
	}
	// The schedule today's single value gave: one read every 2 minutes.
	old, _ := lifeReads(t, Policy{StaleAfter: 2 * time.Minute, ExpiryMargin: 10 * time.Minute}, 47*time.Hour)
	if old != 1404 {
		t.Errorf("a single 2m gap gives %d reads, want 1404 (issue 11's \"about 1,405\")", old)
	}
}

func TestScheduleBacksOffAndNewsRestartsIt(t *testing.T) {
	p := Policy{StaleAfter: time.Minute, Schedule: []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute}, ExpiryMargin: 10 * time.Minute}
	s := pendingSession(ModeNone)
	now := t0
	var gaps []time.Duration
	for i := 0; i < 5; i++ {
		before := now
		s.RereadScheduled(now, p)
		now = s.CheckAt
		gaps = append(gaps, now.Sub(before))
	}
	want := []time.Duration{5 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute}
	for i := range want {
		if gaps[i] != want[i] {
			t.Fatalf("gaps = %v, want %v", gaps, want)
		}
	}
	if s.Rereads != 5 {
		t.Fatalf("Rereads = %d, want 5", s.Rereads)
	}
	// A routine read that learns nothing keeps the position.
	s.Observe(Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaWaiting}, now, p)
	if s.Rereads != 5 || s.CheckAt != now.Add(30*time.Minute) {
		t.Fatalf("after a read without news: Rereads %d, next in %v", s.Rereads, s.CheckAt.Sub(now))
	}
	for _, src := range []Source{SourceCallback, SourceRedirect} {
		s.Rereads = 4
		s.Observe(Observation{Source: src, Authoritative: src == SourceRedirect, KlarnaStatus: KlarnaWaiting}, now, p)
		if s.Rereads != 0 || s.CheckAt != now.Add(time.Minute) {
			t.Errorf("after a %s: Rereads %d, next in %v; want the schedule restarted", src, s.Rereads, s.CheckAt.Sub(now))
		}
	}
	// A read that finds Klarna's status changed is news too.
	s.Rereads = 3
	s.Observe(Observation{Source: SourcePoller, Authoritative: true, KlarnaStatus: KlarnaInProgress}, now, p)
	if s.Rereads != 0 {
		t.Errorf("after a status change: Rereads %d, want 0", s.Rereads)
	}
	// A callback claiming a final status is still re-read at once.
	s.Rereads = 3
	_, jobs := s.Observe(Observation{Source: SourceCallback, KlarnaStatus: KlarnaCompleted}, now, p)
	if len(jobs) != 1 || jobs[0].Kind != JobSyncSession || !jobs[0].DueAt.Equal(now) {
		t.Fatalf("jobs after a COMPLETED callback = %+v, want one sync_session due now", jobs)
	}
}

func TestPolicyGapWithoutSchedule(t *testing.T) {
	p := Policy{StaleAfter: 2 * time.Minute}
	for _, n := range []int{0, 1, 100} {
		if g := p.Gap(n); g != 2*time.Minute {
			t.Errorf("Gap(%d) = %v, want 2m", n, g)
		}
	}
	if g := (Policy{StaleAfter: time.Minute, Schedule: DefaultSchedule}).MaxGap(); g != 20*time.Minute {
		t.Errorf("MaxGap = %v, want 20m", g)
	}
}
