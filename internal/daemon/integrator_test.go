package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hppd/hppd/internal/testutil"
)

const chromeAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"

// A shopper whose browser lands on a shopper URL hppd cannot serve sees a
// small HTML page; API clients asking the same URL still get JSON, and the
// storefront API answers JSON whatever the Accept header says.
func TestBrowserOnABrokenShopperURLGetsAPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.createSession("")
	id := s["id"].(string)
	get := func(path, accept string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.base+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	broken := map[string]string{
		"unknown session":       "/shopper/" + strings.Repeat("a", len(id)) + "/success?hppId=" + hppID(s),
		"wrong hppId":           "/shopper/" + id + "/success?hppId=nope",
		"no hppId":              "/shopper/" + id + "/success",
		"unknown kind":          "/shopper/" + id + "/refund?hppId=" + hppID(s),
		"truncated":             "/shopper/" + id,
		"mangled id":            "/shopper/..%2F..%2Fetc/success",
		"a path that is no URL": "/shopper/",
	}
	for name, path := range broken {
		t.Run(name, func(t *testing.T) {
			resp, body := get(path, chromeAccept)
			if resp.StatusCode < 400 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("%d %s: %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if !strings.Contains(body, "<h1>This payment link does not work</h1>") || strings.Contains(body, `"error"`) {
				t.Fatalf("page: %.400s", body)
			}
			if rid := resp.Header.Get("X-Request-Id"); rid == "" || !strings.Contains(body, rid) {
				t.Fatalf("the page does not show the request id %q", rid)
			}
			for _, accept := range []string{"", "application/json", "*/*"} {
				resp, body := get(path, accept)
				var eb struct {
					Error struct{ Code string } `json:"error"`
				}
				if resp.StatusCode < 400 || json.Unmarshal([]byte(body), &eb) != nil || eb.Error.Code == "" {
					t.Fatalf("Accept %q: %d %.200s", accept, resp.StatusCode, body)
				}
			}
		})
	}
	// The storefront API is for programs: JSON even to a browser.
	resp, body := get("/v1/sessions/"+id, chromeAccept)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("API to a browser: %d %s %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	// A working shopper URL still redirects.
	req, _ := http.NewRequest("GET", e.base+"/shopper/"+id+"/back?hppId="+hppID(s), nil)
	req.Header.Set("Accept", chromeAccept)
	ok, err := e.http.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	ok.Body.Close()
	if ok.StatusCode != http.StatusSeeOther {
		t.Fatalf("a working shopper URL: %d", ok.StatusCode)
	}
}

// The page as Chromium shows it: it renders its heading, and a screenshot is
// saved to $DEMO_SCREENSHOTS (or a temporary directory). It skips without
// Chromium outside CI.
func TestBrowserErrorPageInChromium(t *testing.T) {
	t.Parallel()
	const chromium = "/usr/bin/chromium"
	if testing.Short() {
		t.Skip("starts a browser")
	}
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (apt-get install chromium): %v", chromium, err)
		}
		t.Skipf("%s is missing (apt-get install chromium)", chromium)
	}
	dir := os.Getenv("DEMO_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(800, 600),
	)
	defer cancelAlloc()
	bctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	if err := chromedp.Do(bctx, chromedp.Navigate(e.base+"/shopper/nosuchsession0000000000/success?hppId=x")); err != nil {
		t.Fatal(err)
	}
	h1, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("h1")))
	if err != nil {
		t.Fatal(err)
	}
	if h1 != "This payment link does not work" {
		t.Fatalf("heading %q", h1)
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "shopper-error-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// Request lines and token refusals reach the log at info; the refusal says
// why.
func TestRequestsAndRefusalsAreLoggedAtInfo(t *testing.T) {
	t.Parallel()
	var buf testutil.Buffer
	e := newEnvLogging(t, nil, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	s := e.createSession("")
	bad := e.tokenFor("shop-a")
	bad = bad[:len(bad)-4] + "AAAA"
	req, _ := http.NewRequest("GET", e.base+"/v1/sessions/"+s["id"].(string), nil)
	req.Header.Set("Authorization", "Bearer "+bad)
	req.Header.Set("X-Request-Id", "refused-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged token: %d", resp.StatusCode)
	}
	var created, refused bool
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil || l["msg"] != "request" {
			continue
		}
		if l["level"] != "INFO" {
			t.Errorf("request line at %v: %s", l["level"], line)
		}
		if l["path"] == "/v1/sessions" && l["status"] == float64(201) && l["storefront"] == "shop-a" && l["request_id"] != "" {
			created = true
		}
		if l["request_id"] == "refused-1" {
			refused = l["status"] == float64(401) && strings.Contains(l["reason"].(string), "signature is invalid")
			if strings.Contains(line, bad[len(bad)-20:]) {
				t.Fatalf("the refusal shows the token: %s", line)
			}
		}
	}
	if !created || !refused {
		t.Fatalf("created logged %v, refusal logged with its reason %v:\n%s", created, refused, buf.String())
	}
}

// A callback refused for a session that exists (a wrong secret) is one access
// log line with its reason, and such lines are rate-limited like every
// refusal: whoever knows a session id cannot write a line per request.
func TestRefusedCallbacksAreRateLimitedInTheLog(t *testing.T) {
	t.Parallel()
	var buf testutil.Buffer
	e := newEnvLogging(t, nil, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	s := e.createSession("")
	id := s["id"].(string)
	const n = 200
	for i := range n {
		req, _ := http.NewRequest("POST", e.base+"/klarna/hpp/"+id+"/status?secret=wrong&hppId=x", strings.NewReader(`{}`))
		req.Header.Set("X-Request-Id", "forged-"+strconv.Itoa(i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("forged callback %d: %d, want 404", i, resp.StatusCode)
		}
	}
	lines, withReason := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if !strings.Contains(line, id) || !strings.Contains(line, `"forged-`) {
			continue
		}
		lines++
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == "request" && strings.HasPrefix(fmt.Sprint(l["reason"]), "callback rejected") {
			withReason++
		}
	}
	if lines == 0 || lines != withReason {
		t.Fatalf("%d lines about the forged callbacks, %d of them the access line with its reason; want only access lines:\n%s", lines, withReason, buf.String())
	}
	if lines >= n/2 {
		t.Fatalf("%d of %d forged callbacks logged: not rate-limited", lines, n)
	}
}
