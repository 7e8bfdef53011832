package webhook

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// An outsider's flood of refused requests writes refusalBurst lines, then
// refusalRate a second, and the next line written counts what was left out.
func TestRefusalLinesAreRateLimited(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, nil))
	r := newRefusalLog()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	written := 0
	for range 1000 {
		if r.log(l, t0, "request", "status", 401) {
			written++
		}
	}
	if written != refusalBurst {
		t.Fatalf("%d lines for 1000 refusals at one instant, want %d", written, refusalBurst)
	}
	if !r.log(l, t0.Add(time.Second), "request", "status", 401) {
		t.Fatal("no line a second later")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if last["level"] != "INFO" || last["refusals_not_logged"] != float64(1000-refusalBurst) {
		t.Fatalf("last line %v, want INFO with refusals_not_logged %d", last, 1000-refusalBurst)
	}
	if got := len(lines); got != refusalBurst+1 {
		t.Fatalf("%d lines", got)
	}
}

func TestPrefersHTML(t *testing.T) {
	for _, c := range []struct {
		accept string
		html   bool
	}{
		{"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8", true}, // Chromium, Firefox
		{"text/html", true},
		{"application/xhtml+xml", true},
		{"", false},
		{"*/*", false},
		{"application/json", false},
		{"application/json, text/html;q=0.5", false},
		{"text/html;q=0.5, application/json;q=0.9", false},
		{"text/html;q=0", false},
		{"text/html;q=0.9, application/json;q=0.9", true},
		{"text/html;q=banana", false},
	} {
		if got := prefersHTML(c.accept); got != c.html {
			t.Errorf("prefersHTML(%q) = %v, want %v", c.accept, got, c.html)
		}
	}
}
