package boltstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	bolt "go.etcd.io/bbolt"
)

var updateFixture = flag.Bool("update-fixture", false, "rewrite testdata/schema1.db from v1Records")

const fixturePath = "testdata/schema1.db"

// v1Data is what a schema 1 file holds.
type v1Data struct {
	sessions []*core.Session
	charges  []*core.Charge
	jobs     []*core.Job
	events   [][2]string // HPP session id, event id
	idem     []*core.IdempotencyRecord
}

// v1Records are the records of the committed fixture: deterministic, so the
// test can tell what the migrated file must hold.
func v1Records(n int) v1Data {
	var d v1Data
	statuses := []core.SessionStatus{core.SessionPending, core.SessionPending, core.SessionAuthorized, core.SessionOrderPlaced, core.SessionCancelled}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("sess-%03d", i)
		s := simpleSession(id, []string{"shop-a", "shop-b"}[i%2], t0.Add(time.Duration(i)*time.Minute))
		s.Status = statuses[i%len(statuses)]
		s.History = []core.Change{{At: s.CreatedAt, To: "pending", Source: core.SourceAPI, Reason: "created"}}
		switch s.Status {
		case core.SessionPending:
			s.CheckAt = t0.Add(time.Duration(i) * time.Minute)
		case core.SessionAuthorized:
			s.CheckAt, s.AuthorizedAt, s.AuthorizationToken = time.Time{}, t0.Add(time.Duration(i)*time.Minute), "auth-"+id
		default:
			s.CheckAt = time.Time{}
		}
		d.sessions = append(d.sessions, s)
		d.events = append(d.events, [2]string{s.HPPSessionID, "ev-" + id})
		if s.Status == core.SessionAuthorized {
			d.jobs = append(d.jobs, &core.Job{ID: core.PlaceOrderJobID(id), Kind: core.JobPlaceOrder, SessionID: id, Request: []byte(`{"order_amount":100}`), IdempotencyKey: "ik-" + id, DueAt: s.AuthorizedAt, CreatedAt: s.AuthorizedAt})
		}
	}
	for i := 0; i < n/3; i++ {
		c := simpleCharge(fmt.Sprintf("charge-%03d", i), "shop-a", t0.Add(time.Duration(i)*time.Second))
		if i%2 == 1 {
			c.Status = core.ChargeCharged
		}
		d.charges = append(d.charges, c)
		d.idem = append(d.idem, &core.IdempotencyRecord{Storefront: "shop-a", Key: fmt.Sprint("idem-", i), RequestHash: []byte{byte(i)}, Status: 201, Body: []byte(`{}`), Done: true, CreatedAt: t0})
	}
	return d
}

// writeV1 builds a schema 1 file (the layout described in migrate.go) with
// plain bbolt and encoding/json.
func writeV1(path string, d v1Data) error {
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer bdb.Close()
	return bdb.Update(func(btx *bolt.Tx) error {
		bk := map[string]*bolt.Bucket{}
		for _, name := range []string{"meta", "sessions", "sessions_hpp", "due", "events", "jobs", "jobs_due", "charges", "idempotency"} {
			b, err := btx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			bk[name] = b
		}
		put := func(bucket string, k []byte, v any) error {
			var val []byte
			switch v := v.(type) {
			case nil:
			case string:
				val = []byte(v)
			default:
				var err error
				if val, err = json.Marshal(v); err != nil {
					return err
				}
			}
			return bk[bucket].Put(k, val)
		}
		tk := func(t time.Time) []byte {
			return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())) // schema 1 had no zero-time rule
		}
		if err := put("meta", []byte("schema"), "1"); err != nil {
			return err
		}
		for _, s := range d.sessions {
			if err := put("sessions", []byte(s.ID), s); err != nil {
				return err
			}
			if err := put("sessions_hpp", []byte(s.HPPSessionID), s.ID); err != nil {
				return err
			}
			if !s.CheckAt.IsZero() {
				if err := put("due", append(tk(s.CheckAt), s.ID...), nil); err != nil {
					return err
				}
			}
		}
		for _, e := range d.events {
			if err := put("events", []byte(e[0]+"\x00"+e[1]), nil); err != nil {
				return err
			}
		}
		for _, j := range d.jobs {
			if err := put("jobs", []byte(j.ID), j); err != nil {
				return err
			}
			if err := put("jobs_due", append(tk(j.DueAt), j.ID...), nil); err != nil {
				return err
			}
		}
		for _, c := range d.charges {
			if err := put("charges", []byte(c.ID), c); err != nil {
				return err
			}
		}
		for _, r := range d.idem {
			if err := put("idempotency", []byte(r.Storefront+"\x00"+r.Key), r); err != nil {
				return err
			}
		}
		return nil
	})
}

const fixtureSessions = 12

// TestWriteSchema1Fixture rewrites the committed fixture when run with
// -update-fixture (go test ./store -run TestWriteSchema1Fixture -update-fixture).
func TestWriteSchema1Fixture(t *testing.T) {
	if !*updateFixture {
		t.Skip("run with -update-fixture to rewrite " + fixturePath)
	}
	tmp := filepath.Join(t.TempDir(), "schema1.db")
	if err := writeV1(tmp, v1Records(fixtureSessions)); err != nil {
		t.Fatal(err)
	}
	// Compact it so the committed file is small.
	src, err := bolt.Open(tmp, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_ = os.Remove(fixturePath)
	dst, err := bolt.Open(fixturePath, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bolt.Compact(dst, src, 0); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// copyFixture copies the committed schema 1 file so the test never migrates
// it in place.
func copyFixture(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(fixturePath)
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	path := filepath.Join(t.TempDir(), "hppd.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMigrateSchema1Fixture(t *testing.T) {
	before, err := os.ReadFile(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	d := v1Records(fixtureSessions)
	path := copyFixture(t)
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatalf("open schema 1 file: %v", err)
	}
	verifyMigrated(t, db, d)
	if after, _ := os.ReadFile(fixturePath); string(after) != string(before) {
		t.Fatal("the committed fixture changed")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening a migrated file finds the same.
	db = openTestAt(t, path)
	verifyMigrated(t, db, d)
	pruneMigratedEvents(t, db, d)
}

// An interrupted migration carries on where it stopped.
func TestMigrationResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hppd.db")
	d := v1Records(40)
	if err := writeV1(path, d); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &migrator{db: bdb, chunk: 7, maxSteps: 4}
	if err := m.run(1); !errors.Is(err, errMigrationPaused) {
		t.Fatalf("paused migration: %v", err)
	}
	err = bdb.View(func(btx *bolt.Tx) error {
		meta := btx.Bucket(bucketMeta)
		if v, _ := readSchema(meta); v != 1 || meta.Get(keyMigration) == nil {
			t.Errorf("half-migrated file: schema %d, progress %s", v, meta.Get(keyMigration))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	db := openTestAt(t, path)
	verifyMigrated(t, db, d)
	pruneMigratedEvents(t, db, d)
}

func verifyMigrated(t *testing.T, db *DB, d v1Data) {
	t.Helper()
	if v, err := db.SchemaVersion(); err != nil || v != SchemaVersion {
		t.Fatalf("schema %d, %v", v, err)
	}
	if err := db.Check(); err != nil {
		t.Fatalf("check: %v", err)
	}
	err := db.bolt.View(func(btx *bolt.Tx) error {
		for _, name := range [][]byte{bucketV1Due, bucketV1Events} {
			if btx.Bucket(name) != nil {
				t.Errorf("schema 1 bucket %s still there", name)
			}
		}
		// Records are rewritten in schema 2's encoding.
		k, v := btx.Bucket(bucketSessions).Cursor().First()
		if k == nil || v[0] == codecPlainJSON {
			t.Errorf("session value not rewritten: %q", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustView(t, db, func(tx *Tx) error {
		wantCounts := map[core.SessionStatus]int{}
		var wantDue []string
		for _, s := range d.sessions {
			wantCounts[s.Status]++
			got, err := tx.Session(s.ID)
			if err != nil {
				t.Fatalf("session %s: %v", s.ID, err)
			}
			if jsonOf(t, got) != jsonOf(t, s) {
				t.Errorf("session %s changed:\n got %s\nwant %s", s.ID, jsonOf(t, got), jsonOf(t, s))
			}
			if id, err := tx.SessionIDByHPP(s.HPPSessionID); err != nil || id != s.ID {
				t.Errorf("by hpp %s: %q %v", s.HPPSessionID, id, err)
			}
			if id, err := tx.SessionIDByKP(s.KPSessionID); err != nil || id != s.ID {
				t.Errorf("by kp %s: %q %v", s.KPSessionID, id, err)
			}
			if !s.CheckAt.IsZero() {
				wantDue = append(wantDue, s.ID)
			}
		}
		due, err := tx.SessionsDue(t0.Add(24*time.Hour), 0)
		if err != nil || !slices.Equal(due, wantDue) {
			t.Errorf("due %v, want %v (%v)", due, wantDue, err)
		}
		for _, sf := range []string{"shop-a", "shop-b"} {
			list, _, err := tx.ListSessions(core.ListQuery{Storefront: sf, Limit: MaxListLimit})
			want := 0
			for _, s := range d.sessions {
				if s.Storefront == sf {
					want++
				}
			}
			if err != nil || len(list) != want {
				t.Errorf("%s lists %d sessions, want %d (%v)", sf, len(list), want, err)
			}
		}
		sessions, charges, jobs, err := tx.Counts()
		if err != nil {
			return err
		}
		for st, n := range wantCounts {
			if sessions[st] != n {
				t.Errorf("count %s %d, want %d", st, sessions[st], n)
			}
		}
		if jobs[core.JobPlaceOrder] != len(d.jobs) {
			t.Errorf("place_order jobs %d, want %d", jobs[core.JobPlaceOrder], len(d.jobs))
		}
		if charges[core.ChargePending]+charges[core.ChargeCharged] != len(d.charges) {
			t.Errorf("charge counts %v", charges)
		}
		if at, ok, err := tx.OldestAuthorized(); err != nil || !ok || !at.Equal(d.jobs[0].DueAt) {
			t.Errorf("oldest authorized %v %v %v", at, ok, err)
		}
		jd, err := tx.JobsDue(t0.Add(24*time.Hour), 0)
		if err != nil || len(jd) != len(d.jobs) || string(jd[0].Request) != `{"order_amount":100}` {
			t.Errorf("due jobs %d %v", len(jd), err)
		}
		for _, e := range d.events {
			if seen, err := tx.SeenEvent(e[0], e[1]); err != nil || !seen {
				t.Errorf("event %s/%s not seen (%v)", e[0], e[1], err)
			}
		}
		for _, c := range d.charges {
			got, err := tx.Charge(c.ID)
			if err != nil || jsonOf(t, got) != jsonOf(t, c) {
				t.Errorf("charge %s: %v", c.ID, err)
			}
		}
		for _, r := range d.idem {
			got, err := tx.Idempotency(r.Storefront, r.Key)
			if err != nil || jsonOf(t, got) != jsonOf(t, r) {
				t.Errorf("idempotency %s: %v", r.Key, err)
			}
		}
		return nil
	})
}

// Migrated events are pruned like any other once old enough.
func pruneMigratedEvents(t *testing.T, db *DB, d v1Data) {
	t.Helper()
	mustUpdate(t, db, func(tx *Tx) error {
		_, err := tx.PruneEvents(time.Now().Add(time.Hour), 0)
		return err
	})
	mustView(t, db, func(tx *Tx) error {
		for _, e := range d.events {
			if seen, err := tx.SeenEvent(e[0], e[1]); err != nil || seen {
				t.Errorf("migrated event %s/%s still seen after pruning (%v)", e[0], e[1], err)
			}
		}
		if k := first(tx.tx.Bucket(bucketEventIDs)); k != nil {
			t.Errorf("event_ids still holds %x after pruning", k)
		}
		return nil
	})
}
