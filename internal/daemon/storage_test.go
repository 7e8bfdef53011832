package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
	"github.com/hppd/hppd/webhook"
)

// startOn starts another hppd with e's configuration changed by over; the
// caller closes it.
func (e *env) startOn(over map[string]string) (*daemon.Main, error) {
	vars := map[string]string{}
	for k, v := range e.vars {
		vars[k] = v
	}
	vars["HPPD_LISTEN"] = "127.0.0.1:0"
	for k, v := range over {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		return nil, err
	}
	m := &daemon.Main{Config: cfg, Now: e.clock.Now}
	return m, m.Run(context.Background())
}

// A second hppd on the same data file stops at once with a message naming
// the file, and the first one carries on.
func TestSecondDaemonOnTheSameFileFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	m, err := e.startOn(nil)
	if err == nil {
		_ = m.Close(context.Background())
		t.Fatal("a second hppd started on the same data file")
	}
	var le *boltstore.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("error %v (%T), want *boltstore.LockedError", err, err)
	}
	if msg := err.Error(); !strings.Contains(msg, e.dbPath) || !strings.Contains(msg, "locked by another process") {
		t.Fatalf("message %q does not name the file and the lock", msg)
	}
	if m.DB != nil {
		t.Fatal("the refused hppd kept a store open")
	}
	if st, _ := e.do("GET", "/readyz", nil, nil); st != http.StatusOK {
		t.Fatalf("the first hppd is not ready any more: %d", st)
	}
	e.createSession("")
}

// statusPath is the callback path of a session as Klarna calls it.
func statusPath(t *testing.T, e *env, id, hpp string) string {
	t.Helper()
	u := statusURLs(t, e)[id]
	if u == nil {
		t.Fatalf("no status_update URL for %s", id)
	}
	return strings.ReplaceAll(u.RequestURI(), "{{session_id}}", hpp)
}

// post sends a raw callback and returns the status (0 when no answer came).
func post(client *http.Client, u string, body []byte) int {
	resp, err := client.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// load keeps creating sessions and posting callbacks to them until stop is
// closed; it records what hppd acknowledged.
type load struct {
	mu       sync.Mutex
	sessions []string          // created (201)
	accepted map[string]string // event id → HPP session id, answered 2xx
	hpp      map[string]string // session id → HPP session id
}

func newLoad() *load { return &load{accepted: map[string]string{}, hpp: map[string]string{}} }

func (l *load) created() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.sessions...)
}

// A backup taken while sessions are created and callbacks arrive is a
// consistent store that holds every session created before it started; a
// daemon started on the restored copy serves every one of them.
func TestBackupWhileServingRestoresEverySession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"HPPD_KLARNA_CREATE_RATE": "10000"})
	for i := 0; i < 5; i++ {
		e.createSession("")
	}
	l := newLoad()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				st, s := e.doNoFatal("POST", "/v1/sessions", sessionBody(10000, ""))
				if st != http.StatusCreated {
					failures.Add(1)
					continue
				}
				id, hpp := s["id"].(string), hppID(s)
				l.mu.Lock()
				l.sessions = append(l.sessions, id)
				l.mu.Unlock()
				ev := fmt.Sprintf("w%d-%d", w, n)
				body := []byte(`{"event_id":"` + ev + `","session":{"session_id":"` + hpp + `","status":"IN_PROGRESS"}}`)
				if post(client, e.base+statusPathNoFatal(e, id, hpp), body)/100 == 2 {
					l.mu.Lock()
					l.accepted[ev] = hpp
					l.mu.Unlock()
				}
			}
		}(w)
	}
	// Let the load run, then back up in the middle of it.
	e.eventually("some sessions under load", func() bool { return len(l.created()) >= 20 })
	before := l.created()
	backup := filepath.Join(t.TempDir(), "backup", "hppd.db")
	if err := e.m.DB.BackupFile(backup); err != nil {
		t.Fatal(err)
	}
	e.eventually("more sessions after the backup", func() bool { return len(l.created()) >= len(before)+10 })
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d session creations failed under load", n)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}

	db, err := boltstore.Open(backup, boltstore.Options{})
	if err != nil {
		t.Fatalf("open the backup: %v", err)
	}
	if err := db.Check(); err != nil {
		t.Fatalf("the backup is not consistent: %v", err)
	}
	err = db.View(func(tx store.Tx) error {
		for _, id := range before {
			if _, err := tx.Session(id); err != nil {
				return fmt.Errorf("session %s created before the backup: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Restore: a daemon on the copy serves every session created before the backup.
	restored, err := e.startOn(map[string]string{"HPPD_DB": backup})
	if err != nil {
		t.Fatalf("start on the restored file: %v", err)
	}
	defer restored.Close(context.Background())
	orig := e.base
	e.base = "http://" + restored.Addr()
	for _, id := range before {
		if st, _ := e.do("GET", "/v1/sessions/"+id, nil, nil); st != http.StatusOK {
			t.Errorf("restored daemon: session %s: %d", id, st)
		}
	}
	e.base = orig
	// The live file holds everything, and every callback it acknowledged.
	all := l.created()
	err = e.m.DB.View(func(tx store.Tx) error {
		for _, id := range all {
			if _, err := tx.Session(id); err != nil {
				return fmt.Errorf("session %s: %w", id, err)
			}
		}
		for ev, hpp := range l.accepted {
			if seen, err := tx.SeenEvent(hpp, ev); err != nil || !seen {
				return fmt.Errorf("acknowledged callback %s not stored (%v)", ev, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.DB.Check(); err != nil {
		t.Fatal(err)
	}
}

// doNoFatal is do for goroutines other than the test's own.
func (e *env) doNoFatal(method, path string, body map[string]any) (int, map[string]any) {
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(mustMarshal(body)))
	if err != nil {
		return 0, nil
	}
	req.Header.Set("Content-Type", "application/json")
	tok, err := issue(e)
	if err != nil {
		return 0, nil
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = jsonDecode(resp.Body, &out)
	return resp.StatusCode, out
}

// statusPathNoFatal is statusPath for goroutines other than the test's own.
func statusPathNoFatal(e *env, id, hpp string) string {
	for _, r := range e.sim.Requests() {
		if r.Operation != "create_hpp_session" || r.Status != http.StatusCreated {
			continue
		}
		var body struct {
			MerchantURLs struct {
				StatusUpdate string `json:"status_update"`
			} `json:"merchant_urls"`
		}
		if json.Unmarshal([]byte(r.Body), &body) != nil {
			continue
		}
		u, err := url.Parse(body.MerchantURLs.StatusUpdate)
		if err == nil && strings.Split(u.Path, "/")[3] == id {
			return strings.ReplaceAll(u.RequestURI(), "{{session_id}}", hpp)
		}
	}
	return "/klarna/hpp/" + id + "/status"
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func issue(e *env) (string, error) {
	return webhook.IssueToken([]byte(testKey), "shop-a", "hppd", time.Hour, e.clock.Now())
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// Closing hppd while callbacks pour in loses none that was acknowledged, and
// every request it had started gets its full answer.
func TestCloseUnderLoadLosesNoAcceptedCallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	type target struct{ id, hpp, path string }
	var targets []target
	for i := 0; i < 8; i++ {
		s := e.createSession("")
		id, hpp := s["id"].(string), hppID(s)
		targets = append(targets, target{id, hpp, statusPath(t, e, id, hpp)})
	}
	var mu sync.Mutex
	accepted := map[string]string{} // event id → HPP session id
	var answered, refused, noAnswer atomic.Int64
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for n := 0; n < 400; n++ {
				tg := targets[(w+n)%len(targets)]
				ev := fmt.Sprintf("close-%d-%d", w, n)
				status := []string{"IN_PROGRESS", "BACK", "FAILED", "ERROR"}[n%4]
				body := []byte(`{"event_id":"` + ev + `","session":{"session_id":"` + tg.hpp + `","status":"` + status + `"}}`)
				switch st := post(client, e.base+tg.path, body); {
				case st == 0:
					noAnswer.Add(1)
					return // hppd stopped listening
				case st/100 == 2:
					answered.Add(1)
					mu.Lock()
					accepted[ev] = tg.hpp
					mu.Unlock()
					if n == 20 {
						once.Do(func() { close(started) })
					}
				default:
					refused.Add(1) // e.g. 503 while shutting down: not acknowledged, Klarna resends
				}
			}
		}(w)
	}
	<-started
	// A storefront request that is in the middle of its Klarna calls when
	// the shutdown starts.
	e.setFaults(`{"create_hpp_session": [{"latency": "300ms"}]}`)
	type result struct {
		status int
		body   map[string]any
	}
	slow := make(chan result, 1)
	go func() {
		st, out := e.doNoFatal("POST", "/v1/sessions", sessionBody(10000, ""))
		slow <- result{st, out}
	}()
	e.eventually("the slow request to reach Klarna", func() bool {
		for _, r := range e.sim.Requests() {
			if r.Operation == "create_hpp_session" && r.Status == 0 {
				return true
			}
		}
		return false
	})
	if err := e.m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	inflight := <-slow
	if inflight.status != http.StatusCreated {
		t.Fatalf("the request in flight at shutdown got %d %v", inflight.status, inflight.body)
	}
	if answered.Load() == 0 {
		t.Fatal("no callback was answered")
	}
	if n := refused.Load(); n > 0 {
		t.Errorf("%d callbacks got an error answer instead of being served or cut off", n)
	}
	db, err := boltstore.Open(e.dbPath, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx store.Tx) error {
		for ev, hpp := range accepted {
			if seen, err := tx.SeenEvent(hpp, ev); err != nil || !seen {
				return fmt.Errorf("acknowledged callback %s lost (%v)", ev, err)
			}
		}
		if s, err := tx.Session(inflight.body["id"].(string)); err != nil || s.HPPSessionID == "" {
			return fmt.Errorf("the session created during the shutdown: %v %v", s, err)
		}
		for _, tg := range targets {
			s, err := tx.Session(tg.id)
			if err != nil {
				return err
			}
			if s.Status != core.SessionPending {
				return fmt.Errorf("session %s is %s", tg.id, s.Status)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d callbacks acknowledged before the close, %d cut off", answered.Load(), noAnswer.Load())
}

// A data file of an older schema (the store's committed schema 1 fixture) is
// migrated when the daemon starts on it, and the daemon serves its records.
func TestDaemonMigratesAnOlderDataFile(t *testing.T) {
	t.Parallel()
	fixture, err := os.ReadFile(filepath.Join("..", "..", "store", "boltstore", "testdata", "schema1.db"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, nil)
	path := filepath.Join(t.TempDir(), "old", "hppd.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fixture, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := e.startOn(map[string]string{"HPPD_DB": path})
	if err != nil {
		t.Fatalf("start on a schema 1 file: %v", err)
	}
	defer m.Close(context.Background())
	if v, err := m.DB.SchemaVersion(); err != nil || v != boltstore.SchemaVersion {
		t.Fatalf("schema %d (%v), want %d", v, err, boltstore.SchemaVersion)
	}
	e.base = "http://" + m.Addr()
	if st, out := e.do("GET", "/readyz", nil, nil); st != http.StatusOK {
		t.Fatalf("readyz on the migrated file: %d %v", st, out["_raw"])
	}
	// The fixture holds sess-000 … sess-011, even ones of shop-a, odd ones
	// of shop-b, and charge-000 … charge-003 of shop-a.
	for i := 0; i < 12; i++ {
		id := fmt.Sprintf("sess-%03d", i)
		want := http.StatusOK
		if i%2 == 1 {
			want = http.StatusNotFound // shop-b's: not shown to shop-a
		}
		if st, out := e.do("GET", "/v1/sessions/"+id, nil, nil); st != want {
			t.Errorf("session %s: %d %v, want %d", id, st, out["_raw"], want)
		}
	}
	st, out := e.do("GET", "/v1/sessions?limit=100", nil, nil)
	if st != http.StatusOK || len(out["data"].([]any)) != 6 {
		t.Fatalf("list: %d %v", st, out["_raw"])
	}
	for i := 0; i < 4; i++ {
		if st, out := e.do("GET", fmt.Sprintf("/v1/charges/charge-%03d", i), nil, nil); st != http.StatusOK {
			t.Errorf("charge %d: %d %v", i, st, out["_raw"])
		}
	}
	// New work lands in the migrated file.
	e.createSession("")
}
