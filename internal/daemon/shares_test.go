package daemon_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// One storefront's burst cannot starve another: shop-b, with a share of
// 2% of the account's rates, floods token reads and session creations and
// gets 429 + Retry-After once over it, without Klarna being called for the
// refused ones; shop-a's session creation and order placement go through
// meanwhile.
func TestStorefrontShareOfKlarna(t *testing.T) {
	t.Parallel()
	cfgPath := filepath.Join(t.TempDir(), "hppd.yaml")
	if err := os.WriteFile(cfgPath, []byte("storefronts:\n  - name: shop-b\n    klarna_share: 0.02\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, map[string]string{"HPPD_CONFIG_FILE": cfgPath})
	shopB := map[string]string{"Authorization": "Bearer " + e.tokenFor("shop-b")}
	tok := e.sim.CreateToken("ok", 0)

	// shop-b floods token reads from several connections at once.
	const reads = 40
	statuses := make([]int, reads)
	retryAfter := make([]string, reads)
	bodies := make([]string, reads)
	var wg sync.WaitGroup
	for i := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.base+"/v1/tokens/"+tok, nil)
			req.Header.Set("Authorization", shopB["Authorization"])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var b json.RawMessage
			_ = json.NewDecoder(resp.Body).Decode(&b)
			statuses[i], retryAfter[i], bodies[i] = resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
		}()
	}
	wg.Wait()
	ok, limited := 0, 0
	for i, st := range statuses {
		switch st {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			var body struct {
				Error struct{ Code string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(bodies[i]), &body); err != nil || body.Error.Code != "rate_limited" {
				t.Fatalf("429 body %q", bodies[i])
			}
			if n, err := strconv.Atoi(retryAfter[i]); err != nil || n < 1 {
				t.Fatalf("429 with Retry-After %q", retryAfter[i])
			}
		default:
			t.Fatalf("token read %d: %d %s", i, st, bodies[i])
		}
	}
	if ok == 0 || limited == 0 {
		t.Fatalf("%d reads answered, %d refused: want both", ok, limited)
	}
	if n := e.countRequests("read_customer_token"); n != ok {
		t.Fatalf("Klarna saw %d token reads for %d answered", n, ok)
	}

	// Session bursts too: shop-b's share of 5 creations/s is 0.1/s.
	var created, refused int
	for range 3 {
		switch st, out := e.do("POST", "/v1/sessions", sessionBody(10000, ""), shopB); st {
		case http.StatusCreated:
			created++
		case http.StatusTooManyRequests:
			refused++
		default:
			t.Fatalf("shop-b session: %d %v", st, out["_raw"])
		}
	}
	if created != 1 || refused != 2 {
		t.Fatalf("shop-b's burst of 3 sessions: %d created, %d refused", created, refused)
	}

	// shop-a, with no cap, is unaffected: its session is created and paid
	// and its order placed.
	s := e.createSession("")
	e.act(hppID(s), "pay")
	e.waitStatus(s["id"].(string), "order_placed")
	if st, out := e.do("GET", "/v1/tokens/"+tok, nil, nil); st != http.StatusOK {
		t.Fatalf("shop-a reads a token while shop-b is over its share: %d %v", st, out["_raw"])
	}
}
