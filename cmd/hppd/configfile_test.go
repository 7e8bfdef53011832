package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hppd config shows every account and storefront of HPPD_CONFIG_FILE and
// where each variable came from, secrets <redacted>.
func TestConfigCommandShowsTheFile(t *testing.T) {
	dir := t.TempDir()
	const naPass, euPass, whsec = "na-inline-SECRET", "eu-file-SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	for name, body := range map[string]string{"eu-pass": euPass, "whsec": whsec} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := `env:
  HPPD_LOG_LEVEL: debug
  HPPD_LISTEN: 127.0.0.1:9999
klarna_accounts:
  - name: eu
    region: eu
    username: eu-user
    password_file: ` + filepath.Join(dir, "eu-pass") + `
    countries: [SE, NO]
  - name: na
    region: na
    environment: playground
    username: na-user
    password: ` + naPass + `
    countries: [US]
storefronts:
  - name: shop-a
    klarna_accounts: [eu]
    events:
      url: https://shop-a.example/hooks?token=abc
      secret_file: ` + filepath.Join(dir, "whsec") + `
`
	cfgPath := filepath.Join(dir, "hppd.yaml")
	if err := os.WriteFile(cfgPath, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"HPPD_CONFIG_FILE": cfgPath, "HPPD_JWT_HS256_KEY": strings.Repeat("j", 32), "HPPD_LISTEN": "127.0.0.1:7777"}
	getenv := func(k string) string { return vars[k] }
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"config"}, getenv, &out, &errb); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if err := run(context.Background(), []string{"config", "--json"}, getenv, &out, &errb); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{naPass, euPass, whsec, "token=abc"} {
		if strings.Contains(out.String(), secret) {
			t.Fatalf("output shows %q:\n%s", secret, out.String())
		}
	}
	if !hasRow(text, "HPPD_LOG_LEVEL", "debug", "file") || !hasRow(text, "HPPD_LISTEN", "127.0.0.1:7777", "env") ||
		!hasRow(text, "HPPD_POLL_SCHEDULE", "@every 30s", "default") || !hasRow(text, "HPPD_CONFIG_FILE", cfgPath, "env") {
		t.Fatalf("variables:\n%s", text)
	}
	if !hasRow(text, "eu", "file", "playground", "https://api.playground.klarna.com", "SE,NO", "5/50/5", filepath.Join(dir, "eu-pass")) ||
		!hasRow(text, "na", "file", "playground", "https://api-na.playground.klarna.com", "US", "5/50/5", "<redacted>") {
		t.Fatalf("accounts:\n%s", text)
	}
	if !hasRow(text, "shop-a", "eu", "-", "-", "https://shop-a.example/hooks", filepath.Join(dir, "whsec")) {
		t.Fatalf("storefronts:\n%s", text)
	}
	if !strings.Contains(out.String(), `"klarna_accounts"`) {
		t.Fatalf("json:\n%s", out.String())
	}
}
