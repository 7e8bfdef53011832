package demo_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium package, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// browser is one headless Chromium tab clicking through the shop.
type browser struct {
	t    *testing.T
	ctx  context.Context
	e    *env
	dir  string // screenshots
	shot int
}

// TestBrowserClickThrough drives the storefront in headless Chromium the
// way a person would: every scenario, Buy, the simulator's payment page,
// Pay (and Decline), back on the shop's result page. It saves a PNG per step
// to $DEMO_SCREENSHOTS (or a temporary directory).
func TestBrowserClickThrough(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (apt-get install chromium): %v", chromiumPath, err)
		}
		t.Skipf("%s is missing (apt-get install chromium)", chromiumPath)
	}
	dir := os.Getenv("DEMO_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)

	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	bctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	b := &browser{t: t, ctx: bctx, e: e, dir: dir}

	t.Run("token charges fine", func(t *testing.T) {
		b.t = t
		b.buy("token-ok")
		b.waitResult("final", "Paid with the saved payment method", "charged", "****")
		b.screenshot("token-ok-result")
	})
	t.Run("token failing once", func(t *testing.T) {
		b.t = t
		b.buy("token-failing-once")
		b.waitResult("final", "charged", "declined", "PAYMENT_METHOD_FAILED")
		b.screenshot("token-failing-once-result")
	})
	t.Run("token unavailable, pay on the fallback page", func(t *testing.T) {
		b.t = t
		b.buy("token-unavailable")
		b.onPaymentPage("token-unavailable")
		b.press("pay")
		b.waitResult("final", "recovered", "order_placed", "COMPLETED")
		b.screenshot("token-unavailable-result")
	})
	t.Run("checkout, decline, pay again", func(t *testing.T) {
		b.t = t
		b.buy("checkout")
		b.onPaymentPage("checkout")
		b.press("decline")
		b.waitResult("shopper", "not completed", "pending", "FAILED", "Pay again", "Cancel purchase")
		b.screenshot("checkout-declined")
		b.click("#pay-again")
		b.onPaymentPage("checkout-again")
		b.press("pay")
		b.waitResult("final", "Order placed", "order_placed")
		b.screenshot("checkout-result")
	})
	t.Run("token unavailable, decline, cancel", func(t *testing.T) {
		b.t = t
		b.buy("token-unavailable")
		b.onPaymentPage("token-unavailable-2")
		b.press("decline")
		b.waitResult("shopper", "fallback", "pending", "FAILED")
		b.screenshot("token-unavailable-declined")
		b.click("#cancel")
		b.waitResult("final", "The purchase failed", "failed", "cancelled", "DISABLED")
		b.screenshot("token-unavailable-cancelled")
	})
	t.Logf("screenshots in %s", dir)
}

// do runs browser actions, failing the test on an error.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v (at %s)", what, err, b.location())
	}
}

func (b *browser) location() string {
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		return "?"
	}
	return loc
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

// wait waits (bounded) until an element is visible; navigations and the
// result page's refreshes may happen meanwhile.
func (b *browser) wait(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		b.t.Fatalf("wait for %s: %v (at %s)", sel, err, b.location())
	}
}

func (b *browser) click(sel string) {
	b.t.Helper()
	b.wait(sel)
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.shot++
	if err := os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.shot, name)), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// buy opens the shop and presses Buy on a scenario.
func (b *browser) buy(scenario string) {
	b.t.Helper()
	b.do("open the shop", chromedp.Navigate(b.e.shop.URL+"/"))
	b.wait("#buy-" + scenario)
	if b.shot == 0 {
		b.screenshot("shop")
	}
	b.click("#buy-" + scenario)
}

// onPaymentPage checks the browser is on the simulator's payment page.
func (b *browser) onPaymentPage(name string) {
	b.t.Helper()
	b.wait(`button[value="pay"]`)
	if loc := b.location(); !strings.HasPrefix(loc, b.e.simURL+"/hpp/pay/") {
		b.t.Fatalf("on %s, not on the simulator's payment page", loc)
	}
	if got := b.text("#order-amount"); got != "439.00 SEK" {
		b.t.Fatalf("payment page shows %q", got)
	}
	b.screenshot(name + "-klarna-page")
}

// press presses a button of the simulator's payment page.
func (b *browser) press(action string) {
	b.t.Helper()
	b.click(`button[value="` + action + `"]`)
}

// waitResult waits for the shop's result page to reach a progress and
// checks that it shows every one of want.
func (b *browser) waitResult(progress string, want ...string) {
	b.t.Helper()
	b.wait(`#result[data-progress="` + progress + `"]`)
	if loc := b.location(); !strings.HasPrefix(loc, b.e.shop.URL+"/result?") {
		b.t.Fatalf("on %s, not on the shop's result page", loc)
	}
	text := b.text("#result")
	for _, w := range want {
		if !strings.Contains(text, w) {
			b.t.Fatalf("the result page does not show %q:\n%s", w, text)
		}
	}
}
