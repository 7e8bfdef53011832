package metrics_test

import (
	"net/http"
	"sync"
	"testing"

	"github.com/hppd/hppd/metrics"
)

// TestMetricsAreNotOnThePublicListener: /metrics is served on
// HPPD_METRICS_LISTEN only; the public listener answers it 404.
func TestMetricsAreNotOnThePublicListener(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.base + metrics.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics on the public listener: %d, want 404", resp.StatusCode)
	}
	if e.metricsBase == e.base {
		t.Fatal("the metrics listener is the public one")
	}
	e.scrape().want(t, 0, "hppd_sessions", "status", "pending")
}

// TestConcurrentScrapesAreAnswered: 32 scrapes at once all get 200 (a cap
// of 4 in flight answered most of 3,000 scrapes 503, which alerting reads as
// hppd being down).
func TestConcurrentScrapesAreAnswered(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	codes := make(chan int, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(e.metricsBase + metrics.Path)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("a concurrent scrape got %d", c)
		}
	}
}
