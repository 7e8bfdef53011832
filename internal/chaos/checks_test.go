package chaos

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/klarna/klarnasim"
)

func ch(from, to string) core.Change { return core.Change{From: from, To: to, Source: core.SourceJob} }

func TestHistoryProblems(t *testing.T) {
	tests := []struct {
		name   string
		hist   []core.Change
		status string
		moves  map[string][]string
		want   string // substring of the first problem, "" for none
	}{
		{"session placed", []core.Change{ch("", "pending"), ch("pending", "pending"), ch("pending", "authorized"), ch("authorized", "order_placed")}, "order_placed", sessionMoves, ""},
		{"session back from authorized", []core.Change{ch("", "pending"), ch("pending", "authorized"), ch("authorized", "pending")}, "pending", sessionMoves, "authorized→pending"},
		{"session out of a final status", []core.Change{ch("", "pending"), ch("pending", "order_placed"), ch("order_placed", "failed")}, "failed", sessionMoves, "order_placed→failed"},
		{"gap in the history", []core.Change{ch("", "pending"), ch("authorized", "order_placed")}, "order_placed", sessionMoves, "moves from authorized while the status was pending"},
		{"history behind the status", []core.Change{ch("", "pending")}, "order_placed", sessionMoves, "ends at \"pending\""},
		{"note with a stale status", []core.Change{ch("", "pending"), ch("pending", "authorized"), ch("pending", "pending")}, "authorized", sessionMoves, "notes status pending while it was authorized"},
		{"charge recovered", []core.Change{ch("", "pending"), ch("pending", "needs_customer"), ch("needs_customer", "fallback"), ch("fallback", "recovered")}, "recovered", chargeMoves, ""},
		{"charge unpaid after paid", []core.Change{ch("", "pending"), ch("pending", "charged"), ch("charged", "failed")}, "failed", chargeMoves, "charged→failed"},
		{"starts elsewhere", []core.Change{ch("", "charged")}, "charged", chargeMoves, "not at pending"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := historyProblems(tc.hist, tc.status, tc.moves)
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("problems %q, want none", got)
				}
				return
			}
			if len(got) == 0 || !strings.Contains(got[0], tc.want) {
				t.Fatalf("problems %q, want one containing %q", got, tc.want)
			}
		})
	}
}

func TestReachable(t *testing.T) {
	tests := []struct {
		moves    map[string][]string
		from, to string
		want     bool
	}{
		{sessionMoves, "pending", "order_placed", true},
		{sessionMoves, "authorized", "pending", false},
		{sessionMoves, "order_placed", "order_placed", true},
		{chargeMoves, "pending", "recovered", true},
		{chargeMoves, "needs_customer", "charged", false},
		{chargeMoves, "charged", "fallback", false},
	}
	for _, tc := range tests {
		if got := reachable(tc.moves, tc.from, tc.to); got != tc.want {
			t.Errorf("reachable(%s → %s) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
}

func TestAdvanceAndReflects(t *testing.T) {
	seq := []string{core.KlarnaWaiting}
	seq = advance(seq, core.KlarnaFailed)    // decline
	seq = advance(seq, core.KlarnaCompleted) // pay
	want := []string{"WAITING", "IN_PROGRESS", "FAILED", "IN_PROGRESS", "COMPLETED"}
	if !slices.Equal(seq, want) {
		t.Fatalf("seq %v, want %v", seq, want)
	}
	if got := advance([]string{"WAITING"}, core.KlarnaInProgress); !slices.Equal(got, []string{"WAITING", "IN_PROGRESS"}) {
		t.Fatalf("open: %v", got)
	}
	seen := map[string]bool{"WAITING": true, "FAILED": true}
	if !reflects(seen, "IN_PROGRESS", seq) {
		t.Error("a later FAILED does not reflect an earlier IN_PROGRESS")
	}
	if reflects(map[string]bool{"WAITING": true}, "FAILED", seq) {
		t.Error("WAITING reflects a later FAILED")
	}
	if reflects(map[string]bool{}, "BACK", nil) {
		t.Error("nothing seen reflects BACK")
	}
}

func TestChargeOfKey(t *testing.T) {
	for key, want := range map[string]string{"chg_abc-1": "chg_abc", "chg_abc-12": "chg_abc", "": "", "-1": "", "nokey": ""} {
		if got := chargeOfKey(key); got != want {
			t.Errorf("chargeOfKey(%q) = %q, want %q", key, got, want)
		}
	}
}

// fixture is a small world: a placed NONE session, an open one, and a charge.
func fixture() (*world, *known) {
	now := time.Now()
	sessions := []api.Session{
		{ID: "ses_paid", Status: "order_placed", OrderID: "o-1", PlaceOrderMode: "NONE", KlarnaStatus: "COMPLETED",
			Klarna: api.KlarnaIDs{KPSessionID: "kp-1", HPPSessionID: "hpp-1"}, ExpiresAt: now.Add(time.Hour),
			History: []core.Change{ch("", "pending"), ch("pending", "authorized"), ch("authorized", "order_placed")}},
		{ID: "ses_open", Status: "pending", KlarnaStatus: "BACK", PlaceOrderMode: "NONE",
			Klarna: api.KlarnaIDs{KPSessionID: "kp-2", HPPSessionID: "hpp-2"}, ExpiresAt: now.Add(time.Hour),
			History: []core.Change{ch("", "pending"), {From: "pending", To: "pending", KlarnaStatus: "BACK"}}},
	}
	charges := []api.Charge{
		{ID: "chg_a", Status: "charged", OrderID: "t-1", History: []core.Change{ch("", "pending"), ch("pending", "charged")}},
	}
	w := newWorld(now, sessions, charges, map[string]string{"hpp-1": "COMPLETED", "hpp-2": "BACK"})
	w.orders = []klarnasim.OrderRecord{
		{OrderID: "o-1", Source: klarnasim.SourceKP, KPSessionID: "kp-1"},
		{OrderID: "t-1", Source: klarnasim.SourceCustomerToken, CustomerToken: "tok-aaaa1111", IdempotencyKey: "chg_a-1"},
	}
	k := index(
		[]*sessionRec{
			{Key: "s-1", ID: "ses_paid", HPPID: "hpp-1", Paid: true, Seq: []string{"WAITING", "IN_PROGRESS", "COMPLETED"}, Observed: []string{"pending", "authorized"}},
			{Key: "s-2", ID: "ses_open", HPPID: "hpp-2", Seq: []string{"WAITING", "IN_PROGRESS", "BACK"}, Observed: []string{"pending"}},
		},
		[]*chargeRec{{Key: "c-1", ID: "chg_a", Behavior: "ok", Token: "tok-aaaa1111", Observed: []string{"charged"}}},
	)
	return w, k
}

func TestChecksPassOnAConsistentWorld(t *testing.T) {
	w, k := fixture()
	ix := indexOrders(w.orders)
	settled, waiting := checkSettled(w, k)
	for _, c := range []Check{checkCompleted(w, ix), checkNoExtraOrders(w, k, ix), checkPaidNeverFailed(w, ix), checkCallbacks(w, k), checkNothingLost(w, k), checkPresentNeverNeedsCustomer(w, k), settled} {
		if !c.OK() {
			t.Errorf("%s: %v", c.Name, c.Details)
		}
	}
	if waiting != 0 {
		t.Errorf("waiting %d", waiting)
	}
}

func TestChecksFindDefects(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(w *world, k *known)
		check func(w *world, k *known) Check
		want  string
	}{
		{"a second token order for the same storefront charge", func(w *world, k *known) {
			w.orders = append(w.orders, klarnasim.OrderRecord{OrderID: "t-2", Source: klarnasim.SourceCustomerToken, CustomerToken: "tok-aaaa1111", IdempotencyKey: "chg_orphan-1"})
			w.charges["chg_orphan"] = &api.Charge{ID: "chg_orphan", Status: "charged", OrderID: "t-2"}
		}, func(w *world, k *known) Check { return checkNoExtraOrders(w, k, indexOrders(w.orders)) }, "was charged 2 times, by charges chg_a, chg_orphan"},
		{"a token order for a charge hppd calls failed", func(w *world, k *known) {
			w.charges["chg_a"].Status = "failed"
		}, func(w *world, k *known) Check { return checkNoExtraOrders(w, k, indexOrders(w.orders)) }, "which hppd reports failed"},
		{"an order for an open session", func(w *world, k *known) {
			w.orders = append(w.orders, klarnasim.OrderRecord{OrderID: "o-2", Source: klarnasim.SourceKP, KPSessionID: "kp-2"})
		}, func(w *world, k *known) Check { return checkNoExtraOrders(w, k, indexOrders(w.orders)) }, "whose HPP session is \"BACK\""},
		{"a completed session still authorized", func(w *world, k *known) {
			w.sessions["ses_paid"].Status = "authorized"
		}, func(w *world, k *known) Check { return checkCompleted(w, indexOrders(w.orders)) }, "hppd reports authorized"},
		{"a completed session with another order id", func(w *world, k *known) {
			w.sessions["ses_paid"].OrderID = "o-x"
		}, func(w *world, k *known) Check { return checkCompleted(w, indexOrders(w.orders)) }, "hppd reports order \"o-x\""},
		{"a session with an order at Klarna reported failed", func(w *world, k *known) {
			w.sessions["ses_paid"].Status = "failed"
		}, func(w *world, k *known) Check { return checkPaidNeverFailed(w, indexOrders(w.orders)) }, "Klarna holds order o-1 for it, hppd reports failed"},
		{"a fallback charge whose session has an order reported failed", func(w *world, k *known) {
			w.sessions["ses_paid"].ChargeID = "chg_a"
			w.charges["chg_a"].Status = "failed"
			w.charges["chg_a"].Session = &api.SessionLink{ID: "ses_paid"}
		}, func(w *world, k *known) Check { return checkPaidNeverFailed(w, indexOrders(w.orders)) }, "its fallback session ses_paid has order o-1"},
		{"an answered callback without effect", func(w *world, k *known) {
			w.sessions["ses_open"].History = w.sessions["ses_open"].History[:1]
			w.sessions["ses_open"].KlarnaStatus = "WAITING"
			w.callbacks = []klarnasim.CallbackRecord{{EventID: "e1", SessionID: "hpp-2", Status: "BACK", HTTPStatus: 200}}
		}, checkCallbacks, "neither it nor a later Klarna status"},
		{"an answered COMPLETED callback on a pending session", func(w *world, k *known) {
			w.callbacks = []klarnasim.CallbackRecord{{EventID: "e2", SessionID: "hpp-2", Status: "COMPLETED", HTTPStatus: 200}}
		}, checkCallbacks, "session is pending"},
		{"a lost session", func(w *world, k *known) {
			delete(w.sessions, "ses_open")
		}, checkNothingLost, "no longer has it"},
		{"a status behind what the storefront saw", func(w *world, k *known) {
			k.sessions["ses_open"].Observed = append(k.sessions["ses_open"].Observed, "authorized")
		}, checkNothingLost, "the storefront saw authorized, hppd now reports pending"},
		{"a pending session with a stale Klarna status", func(w *world, k *known) {
			w.hpp["hpp-2"] = "FAILED"
		}, func(w *world, k *known) Check { c, _ := checkSettled(w, k); return c }, "Klarna says FAILED"},
		{"a pending session without an HPP session", func(w *world, k *known) {
			w.sessions["ses_open"].Klarna.HPPSessionID = ""
		}, func(w *world, k *known) Check { c, _ := checkSettled(w, k); return c }, "without an HPP session"},
		{"a present customer answered needs_customer", func(w *world, k *known) {
			k.charges["chg_a"].Present = true
			k.charges["chg_a"].Observed = []string{"needs_customer", "charged"}
		}, checkPresentNeverNeedsCustomer, "the storefront was answered needs_customer"},
		{"a present customer's charge resting in needs_customer", func(w *world, k *known) {
			k.charges["chg_a"].Present = true
			w.charges["chg_a"].Status = "needs_customer"
		}, checkPresentNeverNeedsCustomer, "hppd reports needs_customer"},
		{"a charge still pending", func(w *world, k *known) {
			w.charges["chg_a"].Status = "pending"
		}, func(w *world, k *known) Check { c, _ := checkSettled(w, k); return c }, "still pending"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, k := fixture()
			tc.spoil(w, k)
			c := tc.check(w, k)
			if c.OK() {
				t.Fatalf("%s found nothing", c.Name)
			}
			if !strings.Contains(strings.Join(c.Details, "\n"), tc.want) {
				t.Fatalf("%s: %q, want a line containing %q", c.Name, c.Details, tc.want)
			}
		})
	}
}

func TestSettleWaitsOnlyForWhatATimerCanMove(t *testing.T) {
	w, k := fixture()
	w.charges["chg_a"].Status = "pending" // the safety resend will move it
	if _, waiting := checkSettled(w, k); waiting != 1 {
		t.Fatalf("waiting %d, want 1", waiting)
	}
	w, k = fixture()
	// An interrupted creation: the re-read job gives it up once its
	// creation's lease is free.
	w.sessions["ses_open"].Klarna.HPPSessionID = ""
	if c, waiting := checkSettled(w, k); c.OK() || waiting != 1 {
		t.Fatalf("violations %d, waiting %d; want one violation a timer can move", c.Violations, waiting)
	}
	w, k = fixture()
	w.sessions["ses_open"].Status = "cancelled" // final, while Klarna's page is open
	c, waiting := checkSettled(w, k)
	if c.OK() || waiting != 0 {
		t.Fatalf("violations %d, waiting %d; want a violation nothing waits for", c.Violations, waiting)
	}
}

func TestKillPoints(t *testing.T) {
	pts := killPoints(20, itemRand(1, 5, 0))
	if len(pts) != 20 || !slices.IsSorted(pts) || pts[0] < killSpanStart || pts[19] >= killSpanEnd {
		t.Fatalf("points %v", pts)
	}
	if again := killPoints(20, itemRand(1, 5, 0)); !slices.Equal(pts, again) {
		t.Fatal("the same seed gave other kill points")
	}
}

func TestPlansAreSeeded(t *testing.T) {
	a := newDriver(nil, nil, 42, 50, 30)
	b := newDriver(nil, nil, 42, 50, 30)
	for i := range a.sessions {
		x, y := a.sessions[i], b.sessions[i]
		if x.Plan != y.Plan || x.Mode != y.Mode || x.Amount != y.Amount || x.Key != y.Key {
			t.Fatalf("session %d differs between runs of one seed", i)
		}
	}
	for i := range a.charges {
		if a.charges[i].Behavior != b.charges[i].Behavior || a.charges[i].Present != b.charges[i].Present {
			t.Fatalf("charge %d differs between runs of one seed", i)
		}
	}
	if !slices.Equal(a.order, b.order) {
		t.Fatal("work order differs between runs of one seed")
	}
}
