package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/store"
	"github.com/hppd/hppd/store/boltstore"
)

// t0 is the tests' fixed clock.
var t0 = time.Date(2025, 11, 25, 12, 0, 0, 0, time.UTC)

// Secrets that must never appear in any output.
const (
	authToken   = "auth-token-SECRET-0001"
	custTokenA  = "cust-token-SECRET-aaaa"
	custTokenB  = "cust-token-SECRET-bbbb"
	placeOrderB = `{"purchase_country":"SE","order_amount":2500}`
)

// shortDir is a fresh directory with a short path: Unix socket paths are
// limited to about 100 bytes, and t.TempDir() embeds the test name.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func session(id, storefront string, status core.SessionStatus, created time.Time) *core.Session {
	return &core.Session{
		ID: id, Storefront: storefront, Integration: core.IntegrationHPP, PlaceOrderMode: core.ModeNone, Status: status,
		HPPSessionID: "hpp-" + id, KPSessionID: "kp-" + id,
		Purchase: core.Purchase{PurchaseCountry: "SE", PurchaseCurrency: "SEK", Locale: "sv-SE", OrderAmount: 2500,
			MerchantReference1: "order-" + id},
		CreatedAt: created, UpdatedAt: created, ExpiresAt: created.Add(47 * time.Hour),
		History: []core.Change{{At: created, To: "pending", KlarnaStatus: "WAITING", Source: core.SourceAPI, Reason: "created"}},
	}
}

// seed fills a store: five sessions over two storefronts (one authorized
// with an authorization token, one a recovery purchase of a customer token),
// two charges (one with its fallback session) and three jobs, two failing.
func seed(t *testing.T, db *boltstore.DB) {
	t.Helper()
	err := db.Update(func(tx store.Tx) error {
		a1 := session("ses_a1", "shop-a", core.SessionPending, t0.Add(1*time.Minute))
		a2 := session("ses_a2", "shop-a", core.SessionAuthorized, t0.Add(3*time.Minute))
		a2.AuthorizationToken, a2.AuthorizedAt, a2.KlarnaStatus = authToken, t0.Add(4*time.Minute), "COMPLETED"
		a2.History = append(a2.History, core.Change{At: t0.Add(4 * time.Minute), From: "pending", To: "authorized", KlarnaStatus: "COMPLETED", Source: core.SourceCallback})
		a3 := session("ses_a3", "shop-a", core.SessionPending, t0.Add(5*time.Minute))
		a3.CustomerToken, a3.ChargeID = custTokenB, "chg_b1"
		b1 := session("ses_b1", "shop-b", core.SessionPending, t0.Add(2*time.Minute))
		b2 := session("ses_b2", "shop-b", core.SessionOrderPlaced, t0.Add(4*time.Minute))
		b2.OrderID = "order-b2"
		for _, s := range []*core.Session{a1, a2, a3, b1, b2} {
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		for _, c := range []*core.Charge{
			{ID: "chg_a1", Storefront: "shop-a", CustomerToken: custTokenA, Status: core.ChargeCharged, OrderID: "order-c1",
				Purchase:  core.Purchase{PurchaseCurrency: "SEK", OrderAmount: 5000},
				Attempts:  []core.Attempt{{At: t0, IdempotencyKey: "chg_a1-1", Result: core.AttemptCharged, HTTPStatus: 200}},
				CreatedAt: t0.Add(time.Minute), UpdatedAt: t0.Add(time.Minute)},
			{ID: "chg_b1", Storefront: "shop-b", CustomerToken: custTokenB, Status: core.ChargeFallback, SessionID: "ses_a3",
				Purchase:  core.Purchase{PurchaseCurrency: "SEK", OrderAmount: 2500},
				Attempts:  []core.Attempt{{At: t0, IdempotencyKey: "chg_b1-1", Result: core.AttemptUnavailable, HTTPStatus: 403, ErrorCode: "UNAVAILABLE_PAYMENT_METHOD"}},
				CreatedAt: t0.Add(2 * time.Minute), UpdatedAt: t0.Add(2 * time.Minute)},
		} {
			if err := tx.PutCharge(c); err != nil {
				return err
			}
		}
		for _, j := range []*core.Job{
			{ID: core.PlaceOrderJobID("ses_a2"), Kind: core.JobPlaceOrder, SessionID: "ses_a2", Request: []byte(placeOrderB),
				IdempotencyKey: "ses_a2", DueAt: t0.Add(time.Hour), CreatedAt: t0, Attempts: 3,
				LastError: "klarna place_order: 401 Unauthorized", LastAttemptAt: t0.Add(30 * time.Minute)},
			{ID: core.SyncJobID("ses_a1"), Kind: core.JobSyncSession, SessionID: "ses_a1", DueAt: t0.Add(2 * time.Hour), CreatedAt: t0},
			{ID: "deliver_event/msg_1", Kind: core.JobDeliverEvent, Storefront: "shop-a", Request: []byte("not json\x01"),
				DueAt: t0.Add(3 * time.Hour), CreatedAt: t0, Attempts: 1, LastError: "POST endpoint: 503"},
		} {
			if _, err := tx.AddJob(j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func openSeeded(t *testing.T) (*boltstore.DB, string) {
	t.Helper()
	path := filepath.Join(shortDir(t), "hppd.db")
	db, err := boltstore.Open(path, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	seed(t, db)
	return db, path
}

// serveSocket serves h on a Unix socket and returns its path.
func serveSocket(t *testing.T, h http.Handler) string {
	t.Helper()
	path := filepath.Join(shortDir(t), "a.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ErrorLog: nil}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return path
}

// backends are the two implementations over the same seeded store: Local
// directly, and Client over a socket served by the admin API handler. Both
// share one clock and count wake-ups.
type backends struct {
	db    *boltstore.DB
	path  string
	wakes atomic.Int32
	nowNs atomic.Int64 // the clock, read by the handler's goroutines
	all   map[string]Backend
}

func newBackends(t *testing.T) *backends {
	t.Helper()
	b := &backends{}
	b.setNow(t0.Add(10 * time.Minute))
	b.db, b.path = openSeeded(t)
	l := NewLocal(b.db, b.now, func() { b.wakes.Add(1) })
	c := NewClient(serveSocket(t, newHandler(l, slog.New(slog.DiscardHandler))))
	t.Cleanup(func() { c.Close() })
	b.all = map[string]Backend{"local": l, "socket": c}
	return b
}

func (b *backends) now() time.Time     { return time.Unix(0, b.nowNs.Load()).UTC() }
func (b *backends) setNow(t time.Time) { b.nowNs.Store(t.UnixNano()) }

// each runs fn once per backend, on a freshly seeded store.
func each(t *testing.T, fn func(t *testing.T, bs *backends, b Backend)) {
	for _, name := range []string{"local", "socket"} {
		t.Run(name, func(t *testing.T) {
			bs := newBackends(t)
			fn(t, bs, bs.all[name])
		})
	}
}

func ids[T any](list []T, id func(T) string) string {
	var out []string
	for _, v := range list {
		out = append(out, id(v))
	}
	return strings.Join(out, ",")
}

func sessionIDs(l []Session) string { return ids(l, func(s Session) string { return s.ID }) }

func TestSessionsListing(t *testing.T) {
	each(t, func(t *testing.T, _ *backends, b Backend) {
		ctx := context.Background()
		for _, tc := range []struct {
			name string
			q    Query
			want string
		}{
			{"all storefronts newest first", Query{}, "ses_a3,ses_b2,ses_a2,ses_b1,ses_a1"},
			{"limit", Query{Limit: 2}, "ses_a3,ses_b2"},
			{"status", Query{Status: "pending"}, "ses_a3,ses_b1,ses_a1"},
			{"storefront", Query{Storefront: "shop-b"}, "ses_b2,ses_b1"},
			{"storefront and status", Query{Storefront: "shop-a", Status: "authorized"}, "ses_a2"},
			{"storefront and limit", Query{Storefront: "shop-a", Limit: 1}, "ses_a3"},
			{"unknown storefront", Query{Storefront: "nobody"}, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := b.Sessions(ctx, tc.q)
				if err != nil {
					t.Fatal(err)
				}
				if sessionIDs(got) != tc.want {
					t.Fatalf("got %s, want %s", sessionIDs(got), tc.want)
				}
			})
		}
		for _, q := range []Query{{Status: "paid"}, {Limit: MaxLimit + 1}, {Limit: -1}, {Storefront: "x\x00y"}} {
			if _, err := b.Sessions(ctx, q); core.ErrorCodeOf(err) != core.CodeInvalid {
				t.Errorf("query %+v: err %v, want invalid", q, err)
			}
		}
	})
}

func TestLimitKeepsTheNewestOfMany(t *testing.T) {
	db, _ := openSeeded(t)
	err := db.Update(func(tx store.Tx) error {
		for i := range 300 {
			s := session("ses_m"+string(rune('a'+i%26))+string(rune('a'+i/26)), "shop-"+string(rune('c'+i%5)), core.SessionPending, t0.Add(time.Hour+time.Duration(i)*time.Second))
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewLocal(db, nil, nil).Sessions(context.Background(), Query{Limit: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 {
		t.Fatalf("got %d sessions", len(got))
	}
	for i, s := range got {
		want := t0.Add(time.Hour + time.Duration(299-i)*time.Second)
		if !s.CreatedAt.Equal(want) {
			t.Fatalf("session %d created %v, want %v", i, s.CreatedAt, want)
		}
	}
}

func TestSessionShowHidesSecrets(t *testing.T) {
	each(t, func(t *testing.T, _ *backends, b Backend) {
		ctx := context.Background()
		s, err := b.Session(ctx, "ses_a2")
		if err != nil {
			t.Fatal(err)
		}
		if s.Storefront != "shop-a" || s.Status != "authorized" || len(s.History) != 2 || s.History[1].To != "authorized" {
			t.Fatalf("session %+v", s)
		}
		r, err := b.Session(ctx, "ses_a3")
		if err != nil {
			t.Fatal(err)
		}
		if r.CustomerToken != "****bbbb" || r.ChargeID != "chg_b1" {
			t.Fatalf("recovery session: token %q charge %q", r.CustomerToken, r.ChargeID)
		}
		var out bytes.Buffer
		for _, v := range []*Session{s, r} {
			if err := WriteJSON(&out, v); err != nil {
				t.Fatal(err)
			}
			if err := WriteSession(&out, v); err != nil {
				t.Fatal(err)
			}
		}
		for _, secret := range []string{authToken, custTokenB} {
			if strings.Contains(out.String(), secret) {
				t.Fatalf("output shows a secret:\n%s", out.String())
			}
		}
		if !strings.Contains(out.String(), "HISTORY") || !strings.Contains(out.String(), "callback") {
			t.Fatalf("show lacks the history:\n%s", out.String())
		}
		if _, err := b.Session(ctx, "ses_nope"); !core.IsNotFound(err) {
			t.Fatalf("unknown session: %v", err)
		}
	})
}

func TestChargesListAndShow(t *testing.T) {
	each(t, func(t *testing.T, _ *backends, b Backend) {
		ctx := context.Background()
		list, err := b.Charges(ctx, Query{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(list, func(c Charge) string { return c.ID }); got != "chg_b1,chg_a1" {
			t.Fatalf("charges %s", got)
		}
		if got, _ := b.Charges(ctx, Query{Status: "charged"}); len(got) != 1 || got[0].ID != "chg_a1" {
			t.Fatalf("charged: %+v", got)
		}
		if got, _ := b.Charges(ctx, Query{Storefront: "shop-b"}); len(got) != 1 || got[0].ID != "chg_b1" {
			t.Fatalf("shop-b: %+v", got)
		}
		if _, err := b.Charges(ctx, Query{Status: "authorized"}); core.ErrorCodeOf(err) != core.CodeInvalid {
			t.Fatalf("session status on charges: %v", err)
		}
		c, err := b.Charge(ctx, "chg_b1")
		if err != nil {
			t.Fatal(err)
		}
		if c.Storefront != "shop-b" || c.CustomerToken != "****bbbb" || c.Session == nil || c.Session.ID != "ses_a3" || c.Session.Status != "pending" {
			t.Fatalf("charge %+v session %+v", c, c.Session)
		}
		var out bytes.Buffer
		if err := WriteCharge(&out, c); err != nil {
			t.Fatal(err)
		}
		if err := WriteCharges(&out, list); err != nil {
			t.Fatal(err)
		}
		if err := WriteJSON(&out, list); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), custTokenA) || strings.Contains(out.String(), custTokenB) {
			t.Fatalf("output shows a customer token:\n%s", out.String())
		}
		for _, want := range []string{"ATTEMPTS", "chg_b1-1", "UNAVAILABLE_PAYMENT_METHOD", "ses_a3 (pending)"} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("show lacks %q:\n%s", want, out.String())
			}
		}
		if _, err := b.Charge(ctx, "chg_nope"); !core.IsNotFound(err) {
			t.Fatalf("unknown charge: %v", err)
		}
	})
}

func TestJobsListAndRetry(t *testing.T) {
	each(t, func(t *testing.T, bs *backends, b Backend) {
		ctx := context.Background()
		jobs, err := b.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(jobs, func(j Job) string { return j.ID }); got != "place_order/ses_a2,sync_session/ses_a1,deliver_event/msg_1" {
			t.Fatalf("jobs %s", got)
		}
		if string(jobs[0].Request) != placeOrderB || !jobs[0].Failing() || jobs[1].Failing() {
			t.Fatalf("job 0 request %s failing %v", jobs[0].Request, jobs[0].Failing())
		}
		var s string
		if err := json.Unmarshal(jobs[2].Request, &s); err != nil || s != "not json\x01" {
			t.Fatalf("non-JSON request shown as %s", jobs[2].Request)
		}

		// One job, by an id with a slash in it.
		j, err := b.RetryJob(ctx, "place_order/ses_a2")
		if err != nil {
			t.Fatal(err)
		}
		if !j.DueAt.Equal(bs.now()) || j.Attempts != 3 || j.LastError == "" {
			t.Fatalf("retried job %+v", j)
		}
		if bs.wakes.Load() != 1 {
			t.Fatalf("wakes %d, want 1", bs.wakes.Load())
		}
		bs.db.View(func(tx store.Tx) error {
			due, _ := tx.JobsDue(bs.now(), 0)
			if len(due) != 1 || due[0].ID != "place_order/ses_a2" {
				t.Errorf("due now: %v", due)
			}
			return nil
		})
		if _, err := b.RetryJob(ctx, "place_order/ses_nope"); !core.IsNotFound(err) {
			t.Fatalf("unknown job: %v", err)
		}

		// Every failing job, and only those.
		bs.setNow(bs.now().Add(time.Minute))
		list, err := b.RetryFailingJobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(list, func(j Job) string { return j.ID }); got != "deliver_event/msg_1,place_order/ses_a2" {
			t.Fatalf("retried %s", got)
		}
		bs.db.View(func(tx store.Tx) error {
			due, _ := tx.JobsDue(bs.now(), 0)
			if len(due) != 2 {
				t.Errorf("due now: %d jobs, want 2", len(due))
			}
			j, _ := tx.Job(core.SyncJobID("ses_a1"))
			if !j.DueAt.Equal(t0.Add(2 * time.Hour)) {
				t.Errorf("a job that is not failing moved to %v", j.DueAt)
			}
			return nil
		})
		if err := bs.db.Check(); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := WriteJobs(&out, list); err != nil {
			t.Fatal(err)
		}
		if strings.ContainsRune(out.String(), '\x01') || !strings.Contains(out.String(), "401 Unauthorized") {
			t.Fatalf("jobs table:\n%q", out.String())
		}
	})
}

func TestBackupAndCheck(t *testing.T) {
	each(t, func(t *testing.T, bs *backends, b Backend) {
		ctx := context.Background()
		rep, err := b.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Error != "" || rep.Sessions != 5 || rep.Charges != 2 || rep.Jobs != 3 || rep.Path != bs.path {
			t.Fatalf("check %+v", rep)
		}
		dst := filepath.Join(shortDir(t), "copy", "hppd.db")
		n, err := BackupFile(ctx, b, dst, bs.path, false)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(dst); err != nil || fi.Size() != n || fi.Mode().Perm() != 0o600 {
			t.Fatalf("copy: %v %v (wrote %d)", fi, err, n)
		}
		if left, _ := filepath.Glob(dst + ".tmp*"); len(left) > 0 {
			t.Fatalf("tmp left behind: %v", left)
		}
		copyDB, err := boltstore.Open(dst, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer copyDB.Close()
		if err := copyDB.Check(); err != nil {
			t.Fatal(err)
		}
		got, err := NewLocal(copyDB, nil, nil).Sessions(ctx, Query{})
		if err != nil {
			t.Fatal(err)
		}
		if sessionIDs(got) != "ses_a3,ses_b2,ses_a2,ses_b1,ses_a1" {
			t.Fatalf("copy holds %s", sessionIDs(got))
		}

		// FILE exists: refused without --force, replaced with it.
		if _, err := BackupFile(ctx, b, dst, bs.path, false); err == nil || !strings.Contains(err.Error(), "exists") {
			t.Fatalf("overwrite without force: %v", err)
		}
		if _, err := BackupFile(ctx, b, dst, bs.path, true); err != nil {
			t.Fatalf("overwrite with force: %v", err)
		}
		// The live file is never a backup target.
		for _, target := range []string{bs.path, bs.path + ".tmp"} {
			if _, err := BackupFile(ctx, b, target, bs.path, true); err == nil || !strings.Contains(err.Error(), "live data file") {
				t.Fatalf("backup onto %s: %v", target, err)
			}
		}
	})
}

// fakeBackup serves GET /backup with a body and trailers of the test's choice.
func fakeBackup(t *testing.T, body []byte, bytesTrailer, sumTrailer string, abort bool) *Client {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", TrailerBackupBytes+", "+TrailerBackupSHA256)
		w.Write(body)
		if abort {
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		if bytesTrailer != "" {
			w.Header().Set(TrailerBackupBytes, bytesTrailer)
		}
		if sumTrailer != "" {
			w.Header().Set(TrailerBackupSHA256, sumTrailer)
		}
	})
	c := NewClient(serveSocket(t, h))
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientBackupRefusesDamagedCopies(t *testing.T) {
	body := bytes.Repeat([]byte("page"), 4096)
	for _, tc := range []struct {
		name       string
		n, sum     string
		abort      bool
		wantErrSub string
	}{
		{"no trailers", "", "", false, "did not confirm"},
		{"short", "99999", "00", false, "received 16384 bytes"},
		{"checksum", "16384", strings.Repeat("0", 64), false, "SHA-256"},
		{"aborted", "", "", true, "cut short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeBackup(t, body, tc.n, tc.sum, tc.abort)
			dst := filepath.Join(shortDir(t), "b.db")
			_, err := BackupFile(context.Background(), c, dst, "", false)
			if err == nil || !strings.Contains(err.Error(), tc.wantErrSub) {
				t.Fatalf("err %v, want %q", err, tc.wantErrSub)
			}
			for _, p := range []string{dst, dst + ".tmp"} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s exists after a failed backup", p)
				}
			}
		})
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	t.Run("no socket, no file: nothing is created", func(t *testing.T) {
		dir := shortDir(t)
		db := filepath.Join(dir, "data", "hppd.db")
		_, err := Open(ctx, db+".sock", db)
		if err == nil || !strings.Contains(err.Error(), "no data file") {
			t.Fatalf("err %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "data")); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("Open created the data directory")
		}
	})
	t.Run("stale socket: the file is opened", func(t *testing.T) {
		db, path := openSeeded(t)
		db.Close()
		sock := filepath.Join(filepath.Dir(path), "stale.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close() // the file stays, nobody listens: a crashed daemon's socket
		b, err := Open(ctx, sock, path)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if b.Live() || !strings.Contains(b.Source(), path) {
			t.Fatalf("backend %s live %v", b.Source(), b.Live())
		}
		if got, err := b.Sessions(ctx, Query{}); err != nil || len(got) != 5 {
			t.Fatalf("sessions %d %v", len(got), err)
		}
	})
	t.Run("socket answers: the daemon is asked", func(t *testing.T) {
		db, path := openSeeded(t)
		sock := serveSocket(t, newHandler(NewLocal(db, nil, func() {}), slog.New(slog.DiscardHandler)))
		b, err := Open(ctx, sock, path)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if !b.Live() || !strings.Contains(b.Source(), sock) {
			t.Fatalf("backend %s", b.Source())
		}
		if got, err := b.Sessions(ctx, Query{}); err != nil || len(got) != 5 {
			t.Fatalf("sessions %d %v", len(got), err)
		}
	})
	t.Run("file locked, no socket: says a daemon runs without one", func(t *testing.T) {
		_, path := openSeeded(t) // stays open: holds the lock
		_, err := Open(ctx, path+".sock", path)
		if err == nil || !strings.Contains(err.Error(), "no admin socket answers") {
			t.Fatalf("err %v", err)
		}
	})
}

func TestHandlerAnswersErrorsAsJSON(t *testing.T) {
	db, _ := openSeeded(t)
	sock := serveSocket(t, newHandler(NewLocal(db, nil, nil), slog.New(slog.DiscardHandler)))
	hc := NewClient(sock).hc
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/sessions/ses_nope", 404, "not_found"},
		{"GET", "/sessions?limit=abc", 400, "invalid"},
		{"GET", "/charges?status=bogus", 400, "invalid"},
		{"POST", "/jobs/nope/retry", 404, "not_found"},
	} {
		req, _ := http.NewRequest(tc.method, "http://x"+tc.path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body struct {
			Error struct{ Code, Message string }
		}
		if resp.StatusCode != tc.status || json.Unmarshal(raw, &body) != nil || body.Error.Code != tc.code {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, resp.StatusCode, raw)
		}
	}
	req, _ := http.NewRequest("DELETE", "http://x/sessions/ses_a1", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
}

func TestCellsAreSafeForATerminal(t *testing.T) {
	var out bytes.Buffer
	s := Session{Storefront: "shop"}
	s.ID = "ses_x"
	s.MerchantRef1 = "evil\x1b[2J\tref\nnext"
	s.History = []core.Change{{Reason: "line1\nline2\x07"}}
	if err := WriteSession(&out, &s); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\x07\t") || strings.Contains(out.String(), "ref\nnext") {
		t.Fatalf("control characters reach the terminal: %q", out.String())
	}
	if !strings.Contains(out.String(), "evil?[2J ref next") {
		t.Fatalf("value lost: %q", out.String())
	}
}

func TestCheckDataReportsAnUnsoundFile(t *testing.T) {
	db, path := openSeeded(t)
	db.Close()
	// Damage an index behind the store's back: drop one listing entry.
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte("sessions_by_storefront")).Cursor()
		k, _ := c.First()
		return c.Bucket().Delete(k)
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}
	l, err := OpenLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := CheckData(context.Background(), l)
	if c.Result != Fail || !strings.Contains(c.Detail, "sessions_by_storefront") {
		t.Fatalf("check %+v", c)
	}
	seeded, _ := openSeeded(t)
	if c := CheckData(context.Background(), NewLocal(seeded, nil, nil)); c.Result != OK || !strings.Contains(c.Detail, "5 sessions, 2 charges, 3 jobs") {
		t.Fatalf("sound file: %+v", c)
	}
}

func loadConfig(t *testing.T, vars map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestCheckKlarnaClassifiesAnswers(t *testing.T) {
	const user, pass = "merchant-user", "PASSWORD-never-shown"
	var status atomic.Int32
	var sawAuth atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		sawAuth.Store(u == user && p == pass && r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/hpp/v1/sessions/hppd-check-"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status.Load()))
		w.Write([]byte(`{"error_code":"X","error_messages":["m"],"correlation_id":"c"}`))
	}))
	defer srv.Close()
	vars := map[string]string{
		"HPPD_KLARNA_BASE_URL": srv.URL, "HPPD_KLARNA_USERNAME": user, "HPPD_KLARNA_PASSWORD": pass,
		"HPPD_JWT_HS256_KEY": strings.Repeat("k", 32), "HPPD_KLARNA_TIMEOUT": "5s",
	}
	cfg := loadConfig(t, vars)
	for _, tc := range []struct {
		status int
		result string
		detail string
	}{
		{404, OK, "accepted"},
		{401, Fail, "refused"},
		{403, Fail, "refused"},
		{503, Fail, "unexpected answer"},
		{400, Fail, "unexpected answer"},
	} {
		status.Store(int32(tc.status))
		c := CheckKlarna(context.Background(), cfg, "test", nil)
		if c.Result != tc.result || !strings.Contains(c.Detail, tc.detail) || strings.Contains(c.Detail, pass) {
			t.Errorf("%d: %+v", tc.status, c)
		}
		if !sawAuth.Load() {
			t.Errorf("%d: the read did not carry the configured credentials", tc.status)
		}
	}
	srv.Close()
	if c := CheckKlarna(context.Background(), cfg, "test", nil); c.Result != Fail || !strings.Contains(c.Detail, "unreachable") {
		t.Fatalf("closed server: %+v", c)
	}
}

func TestConfigVarsRedactSecrets(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	const user, pass, key = "USER-secret-value", "PASS-secret-value", "JWT-secret-value-0123456789abcdef"
	if err := os.WriteFile(pwFile, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"HPPD_KLARNA_USERNAME": user, "HPPD_KLARNA_PASSWORD_FILE": pwFile, "HPPD_JWT_HS256_KEY": key,
		"HPPD_DB": "/var/lib/hppd/hppd.db",
	}
	getenv := func(k string) string { return vars[k] }
	list := ConfigVars(loadConfig(t, vars), getenv)
	if len(list) != len(config.Vars) {
		t.Fatalf("%d variables, config.Vars has %d", len(list), len(config.Vars))
	}
	byName := map[string]ConfigVar{}
	for _, v := range list {
		byName[v.Name] = v
	}
	for name, want := range map[string]ConfigVar{
		"HPPD_KLARNA_USERNAME": {Value: Redacted, Source: "env"},
		"HPPD_KLARNA_PASSWORD": {Value: Redacted, Source: "file"},
		"HPPD_JWT_HS256_KEY":   {Value: Redacted, Source: "env"},
		"HPPD_DB":              {Value: "/var/lib/hppd/hppd.db", Source: "env"},
		"HPPD_ADMIN_SOCKET":    {Value: "/var/lib/hppd/hppd.db.sock", Source: "default"},
		"HPPD_LISTEN":          {Value: "127.0.0.1:8080", Source: "default"},
	} {
		if got := byName[name]; got.Value != want.Value || got.Source != want.Source {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	var out bytes.Buffer
	WriteConfig(&out, list)
	WriteJSON(&out, list)
	for _, secret := range []string{user, pass, key} {
		if strings.Contains(out.String(), secret) {
			t.Fatalf("output shows a secret:\n%s", out.String())
		}
	}
}
