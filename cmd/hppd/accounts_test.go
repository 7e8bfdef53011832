package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/webhook"
)

// Event endpoints come from the storefronts section, or from
// HPPD_EVENTS_FILE with a start-up warning, never from both.
func TestEventsFromTheStorefrontsSection(t *testing.T) {
	const whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := &config.Config{Storefronts: []config.Storefront{
		{Name: "shop-a", Events: &config.StorefrontEvents{URL: "https://shop-a.example/hooks", Secret: whsec}},
		{Name: "shop-b"},
	}}
	ec, err := eventsConfig(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if !ec.Enabled("shop-a") || ec.Enabled("shop-b") {
		t.Fatalf("events config %v", ec)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "events.json")
	if err := os.WriteFile(file, []byte(`{"storefronts": {"shop-c": {"url": "https://shop-c.example/h", "secret": "`+whsec+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.EventsFile = file
	if _, err := eventsConfig(cfg, log); err == nil || !strings.Contains(err.Error(), "one place") {
		t.Fatalf("both the section and HPPD_EVENTS_FILE: %v", err)
	}
	cfg.Storefronts = nil
	ec, err = eventsConfig(cfg, log)
	if err != nil || !ec.Enabled("shop-c") {
		t.Fatalf("HPPD_EVENTS_FILE alone: %v, %v", ec, err)
	}
	if !strings.Contains(logs.String(), "storefronts section of HPPD_CONFIG_FILE") || strings.Contains(logs.String(), whsec) {
		t.Fatalf("start-up log: %s", logs.String())
	}
	cfg.EventsFile = ""
	cfg.Storefronts = []config.Storefront{{Name: "shop-a", Events: &config.StorefrontEvents{URL: "ftp://x", Secret: whsec}}}
	if _, err := eventsConfig(cfg, log); err == nil || !strings.Contains(err.Error(), `storefronts["shop-a"].events.url`) || strings.Contains(err.Error(), whsec) {
		t.Fatalf("bad endpoint: %v", err)
	}
}

// hppd token --key-file signs with a storefront's own key.
func TestTokenWithAStorefrontKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := strings.Repeat("s", 40)
	p := filepath.Join(dir, "shop-b-jwt")
	if err := os.WriteFile(p, []byte(key+"\n"+strings.Repeat("t", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"token", "--issuer", "shop-b", "--key-file", p}, func(string) string { return "" }, &out, &errb); err != nil {
		t.Fatal(err)
	}
	auth, err := webhook.NewStorefrontAuthenticator("hppd", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.SetStorefrontKeys("shop-b", [][]byte{[]byte(key)}, nil); err != nil {
		t.Fatal(err)
	}
	if iss, err := auth.Verify(strings.TrimSpace(out.String())); err != nil || iss != "shop-b" {
		t.Fatalf("verify: %q, %v", iss, err)
	}
}
