package bench

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	cases := []struct {
		name, raw  string
		status     int
		keep       bool
		wantErr    bool
		restBefore string // what must remain unread (the next answer)
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT", 200, true, false, "NEXT"},
		{"chunked", "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: 1\r\n\r\nNEXT", 201, true, false, "NEXT"},
		{"connection close", "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 503, false, false, ""},
		{"no length reads to EOF", "HTTP/1.1 200 OK\r\n\r\nbody until close", 200, false, false, ""},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, false, false, ""},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\nNEXT", 204, true, false, "NEXT"},
		{"garbage", "hello\r\n\r\n", 0, false, true, ""},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 0, false, true, ""},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, false, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(c.raw))
			status, keep, err := readResponse(br, false)
			if (err != nil) != c.wantErr {
				t.Fatalf("err %v, want error %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			if status != c.status || keep != c.keep {
				t.Fatalf("status %d keep %v, want %d %v", status, keep, c.status, c.keep)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != c.restBefore {
				t.Fatalf("left %q unread, want %q", rest, c.restBefore)
			}
		})
	}
}

// Load against net/http's server: every request arrives whole with its
// body, every answer is counted, and the window's accounting adds up.
func TestLoadAgainstNetHTTP(t *testing.T) {
	var got, bad atomic.Int64
	var mu sync.Mutex
	bodies := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Test") != "yes" {
			bad.Add(1)
		}
		mu.Lock()
		bodies[string(b)] = true
		mu.Unlock()
		got.Add(1)
		if strings.HasSuffix(r.URL.Path, "/teapot") {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		if r.URL.Query().Get("chunked") == "1" {
			w.(http.Flusher).Flush() // forces chunked encoding
		}
		_, _ = w.Write([]byte(`{"status":"accepted"}`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	seq := make([]int, 4)
	var answered atomic.Int64
	var started, ended atomic.Bool
	res, err := Load(context.Background(), LoadConfig{
		Addr: addr, Conns: 4, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond,
		Next: func(c int) Request {
			seq[c]++
			target := "/x?chunked=" + string(rune('0'+seq[c]%2))
			if seq[c]%10 == 0 {
				target = "/teapot"
			}
			return Request{Method: "POST", Target: target, Header: "X-Test: yes\r\n", Body: []byte(`{"n":"` + strings.Repeat("a", seq[c]%7) + `"}`)}
		},
		Answered: func(int, *Request, int) { answered.Add(1) },
		AtStart:  func() { started.Store(true) },
		AtEnd:    func() { ended.Store(true) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if bad.Load() != 0 {
		t.Fatalf("%d requests arrived malformed", bad.Load())
	}
	if !started.Load() || !ended.Load() {
		t.Fatal("AtStart or AtEnd not called")
	}
	if res.Requests == 0 || res.OK == 0 || res.Errors != 0 {
		t.Fatalf("requests %d ok %d errors %d (%s)", res.Requests, res.OK, res.Errors, res.FirstError)
	}
	if res.Requests-res.OK == 0 || res.FirstError != "HTTP 418" {
		t.Fatalf("the teapots were not counted as non-2xx: %d of %d ok, first error %q", res.OK, res.Requests, res.FirstError)
	}
	if len(res.Latencies) != res.Requests {
		t.Fatalf("%d latencies for %d requests", len(res.Latencies), res.Requests)
	}
	if int64(res.Requests) > answered.Load() || answered.Load() > got.Load() {
		t.Fatalf("window %d, answered %d, served %d", res.Requests, answered.Load(), got.Load())
	}
	if res.RPS() <= 0 || res.Elapsed < 300*time.Millisecond {
		t.Fatalf("rps %v elapsed %v", res.RPS(), res.Elapsed)
	}
}

// A server that goes away mid-run: the run ends, errors are counted, no hang.
func TestLoadServerGone(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	addr := strings.TrimPrefix(srv.URL, "http://")
	go func() { time.Sleep(100 * time.Millisecond); srv.CloseClientConnections(); srv.Close() }()
	res, err := Load(context.Background(), LoadConfig{
		Addr: addr, Conns: 2, Duration: 400 * time.Millisecond,
		Next: func(int) Request { return Request{Method: "GET", Target: "/"} },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.FirstError == "" {
		t.Fatalf("no transport error counted: %+v", res)
	}
}

func TestCeilingHandler(t *testing.T) {
	rec := httptest.NewRecorder()
	CeilingHandler().ServeHTTP(rec, httptest.NewRequest("POST", "/klarna/hpp/x/status", strings.NewReader(`{"event_id":"e"}`)))
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"status":"accepted","duplicate":false}` || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("%d %q %q", rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"))
	}
}

// With Addrs, connection c goes to server c mod len(Addrs), and only there.
func TestLoadSpreadsConnectionsOverAddrs(t *testing.T) {
	var addrs []string
	served := make([]map[string]bool, 3)
	var mu sync.Mutex
	for i := range served {
		served[i] = map[string]bool{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			served[i][r.URL.Query().Get("conn")] = true
			mu.Unlock()
		}))
		defer srv.Close()
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
	}
	res, err := Load(context.Background(), LoadConfig{
		Addrs: addrs, Conns: 6, Duration: 100 * time.Millisecond,
		Next: func(c int) Request { return Request{Method: "GET", Target: "/?conn=" + string(rune('0'+c))} },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK == 0 || res.Errors != 0 {
		t.Fatalf("ok %d errors %d (%s)", res.OK, res.Errors, res.FirstError)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, conns := range served {
		want := map[string]bool{string(rune('0' + i)): true, string(rune('0' + i + 3)): true}
		if len(conns) != 2 || !conns[string(rune('0'+i))] || !conns[string(rune('0'+i+3))] {
			t.Errorf("server %d served connections %v, want %v", i, conns, want)
		}
	}
}

// A child gets exactly the environment it is given, nothing of the
// benchmark's own, also when it is given none.
func TestStartProcPassesExactlyItsEnv(t *testing.T) {
	t.Setenv("HPPD_BENCH_OWN", "leaked")
	for _, env := range [][]string{nil, {"A=1"}} {
		log := filepath.Join(t.TempDir(), "env.log")
		p, err := StartProc("/usr/bin/env", nil, env, log)
		if err != nil {
			t.Fatal(err)
		}
		<-p.done
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Fields(string(b)), env; !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("env %q: the child saw %q", env, got)
		}
	}
}
