package bench

import (
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

func TestPlanKinds(t *testing.T) {
	p := Plan{Sessions: 1000, Due: 10, Watched: 30, Now: time.Now()}
	if err := p.defaults(); err != nil {
		t.Fatal(err)
	}
	counts := map[Kind]int{}
	last := time.Time{}
	for i := 0; i < p.Sessions; i++ {
		k := p.kindOf(i)
		counts[k]++
		if k != Paid && i < p.Sessions-p.Recent {
			t.Fatalf("session %d is pending but not among the %d newest", i, p.Recent)
		}
		c := p.created(i)
		if !c.After(last) || c.After(p.Now) || c.Before(p.Now.Add(-31*24*time.Hour)) {
			t.Fatalf("session %d created %v (previous %v, now %v)", i, c, last, p.Now)
		}
		last = c
	}
	if counts[Due] != 10 || counts[Watched] != 30 || counts[Paid] != 960 {
		t.Fatalf("kinds %v", counts)
	}
	if err := (&Plan{Sessions: 10, Due: 8, Watched: 8}).defaults(); err == nil {
		t.Fatal("a plan with more pending than sessions was accepted")
	}
}

// A built file is a valid store file whose pending sessions take callbacks
// through hppd's real callback path with the secrets BuildFile returns.
func TestBuildFile(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	path := filepath.Join(t.TempDir(), "hppd.db")
	plan := Plan{Sessions: 2000, Due: 20, Watched: 60, EventsPerSession: 2, Now: now, Seed: 5, TxSize: 300}
	targets, err := BuildFile(path, plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 80 {
		t.Fatalf("%d targets, want 80", len(targets))
	}
	// The marks sit in the sessions' records, as hppd's callback path puts
	// them (it marks only stored sessions): two in each session created
	// within the retention, none in event_ids.
	st, err := ReadFileStats(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Buckets {
		if b.Name == "event_ids" || b.Name == "events_by_time" {
			t.Errorf("%s holds %d marks: the file marks events of sessions it has not stored", b.Name, b.Keys)
		}
	}
	if err := plan.defaults(); err != nil {
		t.Fatal(err)
	}
	recent := 0
	for i := range plan.Sessions {
		if plan.created(i).After(now.Add(-plan.EventRetention)) {
			recent++
		}
	}
	if n := recordMarks(t, path); recent == 0 || n != 2*recent {
		t.Errorf("the records hold %d marks, want 2 for each of the %d sessions created within the retention", n, recent)
	}
	db, err := boltstore.Open(path, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx store.Tx) error {
		due, err := tx.SessionsDue(now, 0)
		if err != nil {
			return err
		}
		if len(due) != 20 {
			t.Errorf("%d sessions due, want 20", len(due))
		}
		sessions, _, _, err := tx.Counts()
		if sessions[core.SessionPending] != 80 || sessions[core.SessionOrderPlaced] != 1920 {
			t.Errorf("counts %v", sessions)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	svc := hpp.New(db, nil, hpp.Config{PublicURL: "http://127.0.0.1:1"})
	for _, tg := range targets[:5] {
		cb := klarna.StatusCallback{EventID: "ev-" + tg.ID, Session: klarna.HPPSessionStatus{SessionID: tg.HPPID, Status: core.KlarnaInProgress}}
		body, _ := json.Marshal(cb)
		res, err := svc.HandleCallback(tg.ID, tg.Secret, tg.HPPID, body)
		if err != nil || res.Duplicate {
			t.Fatalf("callback for %s: %+v %v", tg.ID, res, err)
		}
		// A wrong secret gets an unknown session's answer (not_found).
		if _, err := svc.HandleCallback(tg.ID, tg.Secret+"x", tg.HPPID, body); core.ErrorCodeOf(err) != core.CodeNotFound {
			t.Fatalf("a wrong secret was accepted: %v", err)
		}
	}
	// The secrets are URL-safe as they are, as the load generator sends them.
	if url.QueryEscape(targets[0].Secret) != targets[0].Secret || SecretFor(5, 1) == SecretFor(5, 2) || SecretFor(5, 1) == SecretFor(6, 1) {
		t.Fatal("secrets are not distinct URL-safe strings")
	}
}

// The durability check is not vacuous: an acknowledged callback that is not
// in the file is reported.
func TestVerifyReportsALostCallback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	targets, err := BuildFile(path, Plan{Sessions: 200, Watched: 10, Now: time.Now(), Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	g := newCallbackGen(targets, 2, 0)
	g.next(0)
	g.answered(0, nil, 200) // "acknowledged", but never sent to any hppd
	n, err := g.verify(path, false)
	if n != 1 || err == nil || !strings.Contains(err.Error(), "not in the file") {
		t.Fatalf("verify: %d, %v", n, err)
	}
	g = newCallbackGen(targets, 2, 0)
	if _, err := g.verify(path, false); err == nil {
		t.Fatal("a run without a single acknowledged callback passed")
	}
}

func TestCallbackGen(t *testing.T) {
	targets := []Target{{ID: "ses_a", HPPID: "hpp-a", Secret: "s1"}, {ID: "ses_b", HPPID: "hpp-b", Secret: "s2"}, {ID: "ses_c", HPPID: "hpp-c", Secret: "s3"}}
	g := newCallbackGen(targets, 2, 0)
	// Connection 0 owns targets 0 and 2, connection 1 target 1.
	var seen []string
	events := map[string]bool{}
	for i := 0; i < 4; i++ {
		r := g.next(0)
		cb, err := hpp.DecodeCallback(r.Body)
		if err != nil {
			t.Fatalf("%s: %v", r.Body, err)
		}
		if events[cb.EventID] {
			t.Fatalf("event id %s repeated", cb.EventID)
		}
		events[cb.EventID] = true
		seen = append(seen, cb.Session.SessionID+"/"+cb.Session.Status)
		if !strings.Contains(r.Target, "/klarna/hpp/"+g.targets[g.current[0].target].ID+"/status?secret=") {
			t.Fatalf("target %s", r.Target)
		}
	}
	want := "hpp-a/IN_PROGRESS hpp-c/IN_PROGRESS hpp-a/BACK hpp-c/BACK"
	if strings.Join(seen, " ") != want {
		t.Fatalf("got %s, want %s", strings.Join(seen, " "), want)
	}
	if r := g.next(1); !strings.Contains(r.Target, "ses_b") {
		t.Fatalf("connection 1 sent %s", r.Target)
	}
}

// recordMarks counts the event marks the session records of the file at
// path carry.
func recordMarks(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("sessions")).ForEach(func(_, v []byte) error {
			marks, _, err := boltstore.SplitEventMarks(v)
			n += len(marks) / 24
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
