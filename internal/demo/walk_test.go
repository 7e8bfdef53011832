package demo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/internal/demo"
	"github.com/hppd/hppd/klarna/klarnasim"
)

func TestWalkPlacesOneOrder(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	res, err := demo.Walk(ctx, e.opts, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	text := out.String()
	for i := 1; i <= 7; i++ {
		if !strings.Contains(text, "Step "+string(rune('0'+i))+".") {
			t.Fatalf("step %d missing:\n%s", i, text)
		}
	}
	if !strings.Contains(text, res.RedirectURL) || !strings.HasPrefix(res.RedirectURL, e.simURL+"/hpp/pay/") {
		t.Fatalf("redirect URL %q not printed:\n%s", res.RedirectURL, text)
	}
	if !strings.Contains(text, "status order_placed") || !strings.Contains(text, res.OrderID) {
		t.Fatalf("no order_placed:\n%s", text)
	}
	// hppd placed the order itself (mode NONE), exactly once.
	var kp string
	for _, o := range e.sim.Orders() {
		if o.OrderID == res.OrderID {
			kp = o.KPSessionID
			if o.Source != klarnasim.SourceKP {
				t.Fatalf("order source %s", o.Source)
			}
		}
	}
	if kp == "" || e.ordersOf(kp) != 1 {
		t.Fatalf("order %s at the simulator: kp session %q, %d orders", res.OrderID, kp, e.ordersOf(kp))
	}
	for _, secret := range []string{"secret=", "demo-pass", "Bearer"} {
		if strings.Contains(text, secret) {
			t.Fatalf("the walk prints %q:\n%s", secret, text)
		}
	}
	// The shopper lands on the storefront's result page of this session.
	if !strings.HasPrefix(res.ReturnURL, e.shop.URL+"/result?") || !strings.Contains(res.ReturnURL, "hppd_session="+res.SessionID) {
		t.Fatalf("return URL %s", res.ReturnURL)
	}
	p := e.settle(e.get(res.ReturnURL))
	if p.field("session-status") != "order_placed" || p.field("session-order") != res.OrderID {
		t.Fatalf("result page: %s", p.body)
	}
}

func TestWalkReportsAFailingStep(t *testing.T) {
	e := newEnv(t)
	e.opts.SimPass = "wrong"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	_, err := demo.Walk(ctx, e.opts, &out)
	if err == nil || !strings.Contains(err.Error(), "step 3") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("walk with wrong simulator credentials: %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error shows the password: %v", err)
	}
}

func TestCheckoutForAPerson(t *testing.T) {
	e := newEnv(t)
	sess, err := demo.Checkout(context.Background(), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sess.RedirectURL, e.simURL+"/hpp/pay/") || sess.Status != "pending" {
		t.Fatalf("session %+v", sess)
	}
	p := e.settle(e.press(e.get(sess.RedirectURL), "pay"))
	if p.field("session-status") != "order_placed" || p.url.Query().Get("hppd_session") != sess.ID {
		t.Fatalf("after paying: %s %s", p.url, p.body)
	}
}
