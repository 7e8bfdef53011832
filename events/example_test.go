package events_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/events"
)

// Example shows a storefront receiving hppd's events: read the raw body,
// verify it with the endpoint's secret, skip a webhook-id already seen, then
// act on the event's type. Any answer but a 2xx makes hppd try again later.
func Example() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // from the storefront's own secret store
	seen := map[string]bool{}                          // use a durable store in production

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := events.Verify(secret, r.Header, body, 5*time.Minute, time.Now()); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		id := r.Header.Get(events.HeaderID)
		if seen[id] {
			w.WriteHeader(http.StatusNoContent) // a redelivery: already handled
			return
		}
		var ev events.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		switch {
		case strings.HasPrefix(ev.Type, "session."):
			var s api.Session
			if err := json.Unmarshal(ev.Data, &s); err != nil {
				http.Error(w, "bad session", http.StatusBadRequest)
				return
			}
			fmt.Println(ev.Type, s.ID, s.Status, s.OrderID)
		case strings.HasPrefix(ev.Type, "charge."):
			var c api.Charge
			if err := json.Unmarshal(ev.Data, &c); err != nil {
				http.Error(w, "bad charge", http.StatusBadRequest)
				return
			}
			fmt.Println(ev.Type, c.ID, c.Status)
		}
		seen[id] = true
		w.WriteHeader(http.StatusNoContent)
	})

	// What hppd sends (normally built by Emitter.Deliver).
	body := []byte(`{"type":"session.order_placed","timestamp":"2026-03-01T12:00:00Z","data":{"id":"ses_123","status":"order_placed","order_id":"ord_9"}}`)
	now := time.Now()
	sig, _ := events.Sign(secret, "msg_2kwpbgllafxdpx2ai54ppj85f4", now, body)
	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/hooks/hppd", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(events.HeaderID, "msg_2kwpbgllafxdpx2ai54ppj85f4")
		req.Header.Set(events.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		req.Header.Set(events.HeaderSignature, sig)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}

	// A forged or replayed request fails verification.
	req := httptest.NewRequest(http.MethodPost, "/hooks/hppd", strings.NewReader(`{"type":"session.order_placed"}`))
	req.Header.Set(events.HeaderID, "msg_forged")
	req.Header.Set(events.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(events.HeaderSignature, sig)
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Code)

	// Output:
	// session.order_placed ses_123 order_placed ord_9
	// 204
	// 204
	// 401
}
