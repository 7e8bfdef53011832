package boltstore

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

func TestSessionRoundTrip(t *testing.T) {
	db := openTest(t)
	r := rand.New(rand.NewPCG(1, 1))
	s := realisticSession(r, "shop", t0)
	s.Error = &core.KlarnaError{HTTPStatus: 403, Code: "REJECTED", Messages: []string{"no"}}
	want := jsonOf(t, s)
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	mustView(t, db, func(tx *Tx) error {
		got, err := tx.Session(s.ID)
		if err != nil {
			return err
		}
		if jsonOf(t, got) != want {
			t.Errorf("got  %s\nwant %s", jsonOf(t, got), want)
		}
		if _, err := tx.Session("nope"); err != core.ErrNotFound {
			t.Errorf("unknown session: %v, want core.ErrNotFound", err)
		}
		for name, lookup := range map[string]func(string) (string, error){"hpp": tx.SessionIDByHPP, "kp": tx.SessionIDByKP} {
			if _, err := lookup("nope"); err != core.ErrNotFound {
				t.Errorf("unknown %s id: %v", name, err)
			}
			if _, err := lookup(""); err != core.ErrNotFound {
				t.Errorf("empty %s id: %v", name, err)
			}
		}
		return nil
	})
}

func TestGettersReturnCopies(t *testing.T) {
	db := openTest(t)
	r := rand.New(rand.NewPCG(1, 2))
	s := realisticSession(r, "shop", t0)
	want := jsonOf(t, s)
	mutate := func(s *core.Session) {
		s.Status = core.SessionFailed
		s.Purchase.OrderLines[0].Name = "changed"
		s.SecretHash[0] ^= 0xff
		s.History[0].Reason = "changed"
		s.History = append(s.History, core.Change{To: "x"})
	}
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutSession(s); err != nil {
			return err
		}
		mutate(s) // the caller's value after Put
		got, err := tx.Session(s.ID)
		if err != nil {
			return err
		}
		mutate(got) // a value read inside the writing transaction
		return nil
	})
	var id string
	mustView(t, db, func(tx *Tx) error {
		ids, err := tx.SessionsDue(t0.Add(time.Hour), 0)
		if err != nil || len(ids) != 1 {
			t.Fatalf("due: %v %v", ids, err)
		}
		id = ids[0]
		got, err := tx.Session(id)
		if err != nil {
			return err
		}
		mutate(got)
		return nil
	})
	mustView(t, db, func(tx *Tx) error {
		got, err := tx.Session(id)
		if err != nil {
			return err
		}
		if jsonOf(t, got) != want {
			t.Errorf("store changed by mutating returned values:\n got %s\nwant %s", jsonOf(t, got), want)
		}
		return nil
	})
}

// index is what the indexes say about session id.
type index struct {
	byHPP, byKP string
	due         bool
	authorized  bool
	listed      string // status in the storefront listing, "" if not listed
}

func indexOf(t *testing.T, tx *Tx, s *core.Session, now time.Time) index {
	t.Helper()
	var ix index
	ix.byHPP, _ = tx.SessionIDByHPP(s.HPPSessionID)
	ix.byKP, _ = tx.SessionIDByKP(s.KPSessionID)
	due, err := tx.SessionsDue(now, 0)
	if err != nil {
		t.Fatal(err)
	}
	ix.due = slices.Contains(due, s.ID)
	_, ix.authorized, _ = tx.OldestAuthorized()
	list, _, err := tx.ListSessions(core.ListQuery{Storefront: s.Storefront})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range list {
		if l.ID == s.ID {
			ix.listed = string(l.Status)
		}
	}
	return ix
}

func TestPutSessionMaintainsIndexes(t *testing.T) {
	db := openTest(t)
	s := simpleSession("s1", "shop", t0)
	now := t0.Add(time.Hour) // after CheckAt
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })

	steps := []struct {
		name   string
		change func(s *core.Session)
		want   index
	}{
		{"new", func(*core.Session) {}, index{byHPP: "s1", byKP: "s1", due: true, listed: "pending"}},
		{"hpp id changes", func(s *core.Session) { s.HPPSessionID = "hpp-2" }, index{byHPP: "s1", byKP: "s1", due: true, listed: "pending"}},
		{"kp id changes", func(s *core.Session) { s.KPSessionID = "kp-2" }, index{byHPP: "s1", byKP: "s1", due: true, listed: "pending"}},
		{"check later", func(s *core.Session) { s.CheckAt = now.Add(time.Minute) }, index{byHPP: "s1", byKP: "s1", listed: "pending"}},
		{"check earlier", func(s *core.Session) { s.CheckAt = now.Add(-time.Minute) }, index{byHPP: "s1", byKP: "s1", due: true, listed: "pending"}},
		{"authorized", func(s *core.Session) {
			s.Status, s.AuthorizedAt, s.CheckAt = core.SessionAuthorized, now, time.Time{}
		}, index{byHPP: "s1", byKP: "s1", authorized: true, listed: "authorized"}},
		{"order placed", func(s *core.Session) { s.Status = core.SessionOrderPlaced }, index{byHPP: "s1", byKP: "s1", listed: "order_placed"}},
		{"ids cleared", func(s *core.Session) { s.HPPSessionID, s.KPSessionID = "", "" }, index{listed: "order_placed"}},
	}
	var oldHPP, oldKP []string
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			oldHPP = append(oldHPP, s.HPPSessionID)
			oldKP = append(oldKP, s.KPSessionID)
			st.change(s)
			mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
			mustView(t, db, func(tx *Tx) error {
				got := indexOf(t, tx, s, now)
				if got != st.want {
					t.Errorf("indexes %+v, want %+v", got, st.want)
				}
				for _, h := range oldHPP {
					if h != s.HPPSessionID && h != "" {
						if id, err := tx.SessionIDByHPP(h); err == nil {
							t.Errorf("old hpp id %s still maps to %s", h, id)
						}
					}
				}
				for _, k := range oldKP {
					if k != s.KPSessionID && k != "" {
						if id, err := tx.SessionIDByKP(k); err == nil {
							t.Errorf("old kp id %s still maps to %s", k, id)
						}
					}
				}
				return nil
			})
			if err := db.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStorefrontChangeMovesListing(t *testing.T) {
	db := openTest(t)
	s := simpleSession("s1", "a", t0)
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	s.Storefront = "b"
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	mustView(t, db, func(tx *Tx) error {
		a, _, _ := tx.ListSessions(core.ListQuery{Storefront: "a"})
		b, _, _ := tx.ListSessions(core.ListQuery{Storefront: "b"})
		if len(a) != 0 || len(b) != 1 {
			t.Errorf("a has %d, b has %d", len(a), len(b))
		}
		return nil
	})
}

func TestPutSessionConflictsAndValidation(t *testing.T) {
	db := openTest(t)
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(simpleSession("s1", "shop", t0)) })
	other := simpleSession("s2", "shop", t0)
	other.HPPSessionID = "hpp-s1"
	err := db.update(func(tx *Tx) error { return tx.PutSession(other) })
	if core.ErrorCodeOf(err) != core.CodeConflict {
		t.Errorf("HPP id of another session: %v, want conflict", err)
	}
	other = simpleSession("s2", "shop", t0)
	other.KPSessionID = "kp-s1"
	if err := db.update(func(tx *Tx) error { return tx.PutSession(other) }); core.ErrorCodeOf(err) != core.CodeConflict {
		t.Errorf("KP id of another session: %v, want conflict", err)
	}
	bad := []struct {
		name string
		s    *core.Session
	}{
		{"no id", simpleSession("", "shop", t0)},
		{"no storefront", simpleSession("x", "", t0)},
		{"NUL in storefront", simpleSession("x", "a\x00b", t0)},
		{"bad status", func() *core.Session { s := simpleSession("x", "shop", t0); s.Status = "weird"; return s }()},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			err := db.update(func(tx *Tx) error { return tx.PutSession(c.s) })
			if core.ErrorCodeOf(err) != core.CodeInvalid {
				t.Errorf("got %v, want invalid", err)
			}
		})
	}
	mustView(t, db, func(tx *Tx) error {
		sessions, _, _, err := tx.Counts()
		if err != nil || sessions[core.SessionPending] != 1 {
			t.Errorf("counts %v %v", sessions, err)
		}
		return nil
	})
}

func TestSessionsDueOrderAndLimit(t *testing.T) {
	db := openTest(t)
	// CheckAt offsets in minutes; ties are ordered by id.
	checks := map[string]int{"a": 5, "b": 1, "c": 3, "d": 3, "e": 20, "f": 0, "g": -2}
	mustUpdate(t, db, func(tx *Tx) error {
		for id, m := range checks {
			s := simpleSession(id, "shop", t0)
			if m == 0 {
				s.CheckAt = time.Time{} // not watched
			} else {
				s.CheckAt = t0.Add(time.Duration(m) * time.Minute)
			}
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		return nil
	})
	cases := []struct {
		now   time.Duration
		limit int
		want  []string
	}{
		{10 * time.Minute, 0, []string{"g", "b", "c", "d", "a"}},
		{10 * time.Minute, 3, []string{"g", "b", "c"}},
		{3 * time.Minute, 0, []string{"g", "b", "c", "d"}},
		{-3 * time.Minute, 0, nil},
		{time.Hour, -1, []string{"g", "b", "c", "d", "a", "e"}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("now+%v limit %d", c.now, c.limit), func(t *testing.T) {
			mustView(t, db, func(tx *Tx) error {
				got, err := tx.SessionsDue(t0.Add(c.now), c.limit)
				if err != nil {
					return err
				}
				if !slices.Equal(got, c.want) {
					t.Errorf("got %v, want %v", got, c.want)
				}
				return nil
			})
		})
	}
}

func TestOldestAuthorized(t *testing.T) {
	db := openTest(t)
	mustView(t, db, func(tx *Tx) error {
		if _, ok, err := tx.OldestAuthorized(); ok || err != nil {
			t.Errorf("empty store: %v %v", ok, err)
		}
		return nil
	})
	for i, m := range []int{30, 10, 20} {
		s := simpleSession(fmt.Sprint("s", i), "shop", t0)
		s.Status, s.AuthorizedAt = core.SessionAuthorized, t0.Add(time.Duration(m)*time.Minute)
		mustUpdate(t, db, func(tx *Tx) error { return tx.PutSession(s) })
	}
	oldest := func() time.Time {
		var at time.Time
		mustView(t, db, func(tx *Tx) error {
			var ok bool
			var err error
			at, ok, err = tx.OldestAuthorized()
			if err != nil || !ok {
				t.Fatalf("OldestAuthorized: %v %v", ok, err)
			}
			return nil
		})
		return at
	}
	if got := oldest(); !got.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("oldest %v", got)
	}
	// The order of s1 is placed: the next oldest is s2.
	mustUpdate(t, db, func(tx *Tx) error {
		s, err := tx.Session("s1")
		if err != nil {
			return err
		}
		s.OrderPlaced("order-1", "ACCEPTED", t0.Add(time.Hour))
		return tx.PutSession(s)
	})
	if got := oldest(); !got.Equal(t0.Add(20 * time.Minute)) {
		t.Errorf("oldest after placing s1's order %v", got)
	}
}

func TestListSessionsPaging(t *testing.T) {
	db := openTest(t)
	statuses := []core.SessionStatus{core.SessionPending, core.SessionAuthorized, core.SessionOrderPlaced}
	var wantA []string // newest first
	mustUpdate(t, db, func(tx *Tx) error {
		for i := 0; i < 23; i++ {
			s := simpleSession(fmt.Sprintf("a%02d", i), "shop-a", t0.Add(time.Duration(i)*time.Minute))
			s.Status = statuses[i%3]
			if err := tx.PutSession(s); err != nil {
				return err
			}
			wantA = append([]string{s.ID}, wantA...)
		}
		for i := 0; i < 5; i++ {
			// Same times as shop-a's: the storefronts must not mix.
			if err := tx.PutSession(simpleSession(fmt.Sprintf("b%02d", i), "shop-b", t0.Add(time.Duration(i)*time.Minute))); err != nil {
				return err
			}
		}
		// A storefront whose name extends shop-a's.
		return tx.PutSession(simpleSession("c00", "shop-a2", t0))
	})
	pages := func(q core.ListQuery) [][]string {
		t.Helper()
		var out [][]string
		for i := 0; i < 100; i++ {
			var page []string
			var next string
			mustView(t, db, func(tx *Tx) error {
				list, n, err := tx.ListSessions(q)
				if err != nil {
					return err
				}
				for _, s := range list {
					if q.Status != "" && string(s.Status) != q.Status {
						t.Errorf("%s has status %s, filter %s", s.ID, s.Status, q.Status)
					}
					page = append(page, s.ID)
				}
				next = n
				return nil
			})
			out = append(out, page)
			if next == "" {
				return out
			}
			q.Cursor = next
		}
		t.Fatal("listing does not end")
		return nil
	}
	got := pages(core.ListQuery{Storefront: "shop-a", Limit: 10})
	if len(got) != 3 || len(got[0]) != 10 || len(got[1]) != 10 || len(got[2]) != 3 {
		t.Fatalf("pages %v", got)
	}
	if all := slices.Concat(got...); !slices.Equal(all, wantA) {
		t.Errorf("order %v, want %v", all, wantA)
	}
	// An exact multiple of the limit ends without an empty page.
	if got := pages(core.ListQuery{Storefront: "shop-b", Limit: 5}); len(got) != 1 || len(got[0]) != 5 {
		t.Errorf("shop-b pages %v", got)
	}
	var wantAuth []string
	for _, id := range wantA {
		var n int
		fmt.Sscanf(id, "a%d", &n)
		if statuses[n%3] == core.SessionAuthorized {
			wantAuth = append(wantAuth, id)
		}
	}
	gotAuth := pages(core.ListQuery{Storefront: "shop-a", Status: "authorized", Limit: 3})
	if all := slices.Concat(gotAuth...); !slices.Equal(all, wantAuth) {
		t.Errorf("authorized %v, want %v", all, wantAuth)
	}
	if got := pages(core.ListQuery{Storefront: "shop-a2"}); len(got) != 1 || !slices.Equal(got[0], []string{"c00"}) {
		t.Errorf("shop-a2 %v", got)
	}
	if got := pages(core.ListQuery{Storefront: "nobody"}); len(got) != 1 || len(got[0]) != 0 {
		t.Errorf("unknown storefront %v", got)
	}
	// Default limit is 50.
	if got := pages(core.ListQuery{Storefront: "shop-a"}); len(got) != 1 || len(got[0]) != 23 {
		t.Errorf("default limit %v", got)
	}

	mustView(t, db, func(tx *Tx) error {
		for _, q := range []core.ListQuery{
			{Storefront: "shop-a", Cursor: "!!!"},
			{Storefront: "shop-a", Cursor: "AAAA"},
			{Storefront: "shop-a", Status: "nonsense"},
			{Storefront: ""},
		} {
			if _, _, err := tx.ListSessions(q); core.ErrorCodeOf(err) != core.CodeInvalid {
				t.Errorf("%+v: %v, want invalid", q, err)
			}
		}
		var e *core.Error
		_, _, err := tx.ListSessions(core.ListQuery{Storefront: "shop-a", Cursor: "!!!"})
		if e, _ = err.(*core.Error); e == nil || e.Field != "cursor" {
			t.Errorf("bad cursor error %v does not name the field", err)
		}
		return nil
	})
}

func TestListLimitIsCapped(t *testing.T) {
	db := openTest(t)
	mustUpdate(t, db, func(tx *Tx) error {
		for i := 0; i < MaxListLimit+10; i++ {
			if err := tx.PutSession(simpleSession(fmt.Sprintf("s%04d", i), "shop", t0.Add(time.Duration(i)*time.Second))); err != nil {
				return err
			}
		}
		return nil
	})
	mustView(t, db, func(tx *Tx) error {
		list, next, err := tx.ListSessions(core.ListQuery{Storefront: "shop", Limit: 100000})
		if err != nil || len(list) != MaxListLimit || next == "" {
			t.Errorf("got %d sessions, next %q, %v", len(list), next, err)
		}
		list, next, err = tx.ListSessions(core.ListQuery{Storefront: "shop", Limit: 100000, Cursor: next})
		if err != nil || len(list) != 10 || next != "" {
			t.Errorf("second page %d sessions, next %q, %v", len(list), next, err)
		}
		return nil
	})
}

func TestCountersAfterManyUpdates(t *testing.T) {
	db := openTest(t)
	r := rand.New(rand.NewPCG(5, 6))
	want := map[core.SessionStatus]int{}
	current := map[string]core.SessionStatus{}
	for round := 0; round < 20; round++ {
		mustUpdate(t, db, func(tx *Tx) error {
			for i := 0; i < 50; i++ {
				id := fmt.Sprint("s", r.IntN(150))
				s, err := tx.Session(id)
				if core.IsNotFound(err) {
					s, err = simpleSession(id, "shop", t0), nil
				}
				if err != nil {
					return err
				}
				s.Status = core.SessionStatuses[r.IntN(len(core.SessionStatuses))]
				s.CheckAt = t0.Add(time.Duration(r.IntN(100)) * time.Minute)
				if err := tx.PutSession(s); err != nil {
					return err
				}
				current[id] = s.Status
			}
			return nil
		})
	}
	for _, st := range current {
		want[st]++
	}
	mustView(t, db, func(tx *Tx) error {
		sessions, charges, jobs, err := tx.Counts()
		if err != nil {
			return err
		}
		for _, st := range core.SessionStatuses {
			if sessions[st] != want[st] {
				t.Errorf("%s: %d, want %d", st, sessions[st], want[st])
			}
		}
		if len(charges) != len(core.ChargeStatuses) || len(jobs) != len(store.CountedJobKinds) {
			t.Errorf("counts do not list every status and kind: %v %v", charges, jobs)
		}
		return nil
	})
}

func TestAllSessions(t *testing.T) {
	db := openTest(t)
	mustUpdate(t, db, func(tx *Tx) error {
		for _, id := range []string{"c", "a", "b"} {
			if err := tx.PutSession(simpleSession(id, "shop", t0)); err != nil {
				return err
			}
		}
		return nil
	})
	var ids []string
	mustView(t, db, func(tx *Tx) error {
		return tx.AllSessions(func(s *core.Session) error { ids = append(ids, s.ID); return nil })
	})
	if !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Errorf("AllSessions visited %v", ids)
	}
}
