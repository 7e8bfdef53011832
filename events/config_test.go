package events_test

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hppd/hppd/events"
)

// secretOf returns a "whsec_" secret of n bytes, each byte = fill.
func secretOf(n int, fill byte) string {
	return events.SecretPrefix + base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string([]byte{fill}), n)))
}

// testSecret is the secret of storefront "shop" in the tests.
var testSecret = secretOf(32, 0x5a)

func configJSON(name, url, secret string) string {
	return fmt.Sprintf(`{"storefronts": {%q: {"url": %q, "secret": %q}}}`, name, url, secret)
}

func TestParseConfig(t *testing.T) {
	good := secretOf(32, 7)
	cases := []struct {
		name    string
		doc     string
		wantErr string // substring; "" means valid
	}{
		{"valid", configJSON("shop", "https://shop.example/hooks?x=1", good), ""},
		{"valid http with port", configJSON("a.b_c-D9", "http://127.0.0.1:8081/e", good), ""},
		{"valid 24-byte secret", configJSON("shop", "https://s.example/", secretOf(24, 1)), ""},
		{"valid 64-byte secret", configJSON("shop", "https://s.example/", secretOf(64, 1)), ""},
		{"no storefronts", `{"storefronts": {}}`, ""},
		{"empty object", `{}`, ""},
		{"empty document", ``, "empty document"},
		{"syntax error", `{"storefronts": {"shop": {"url": "https://s.example", "secret": "` + good + `"`, "truncated JSON"},
		{"bad character", `{"storefronts": x}`, "invalid JSON at byte"},
		{"trailing data", `{} {}`, "unexpected data after"},
		{"unknown top-level field", `{"storefront": {}}`, `unknown field "storefront"`},
		{"unknown endpoint field", `{"storefronts": {"shop": {"url": "https://s.example", "secret": "` + good + `", "secrets": "x"}}}`, `storefronts["shop"]: unknown field "secrets"`},
		{"wrong type", `{"storefronts": {"shop": {"url": 1, "secret": "` + good + `"}}}`, `storefronts["shop"]: url: must be a JSON string`},
		{"storefronts not an object", `{"storefronts": []}`, "storefronts: must be a JSON object"},
		{"document not an object", `[]`, "must be a JSON object"},
		{"entry not an object", `{"storefronts": {"shop": "https://s.example"}}`, `storefronts["shop"]: must be a JSON object`},
		{"bad name charset", configJSON("shop eu", "https://s.example", good), `storefronts["shop eu"]: name must match`},
		{"empty name", configJSON("", "https://s.example", good), `storefronts[""]: name must match`},
		{"long name", configJSON(strings.Repeat("a", 65), "https://s.example", good), "name must match"},
		{"missing url", `{"storefronts": {"shop": {"secret": "` + good + `"}}}`, `storefronts["shop"].url: is required`},
		{"relative url", configJSON("shop", "/hooks", good), `storefronts["shop"].url: must be an absolute http or https URL`},
		{"ftp url", configJSON("shop", "ftp://s.example/x", good), `.url: must be an absolute http or https URL`},
		{"no host", configJSON("shop", "https:///x", good), `.url: has no host`},
		{"user info", configJSON("shop", "https://u:p@s.example/x", good), `.url: must not carry user info`},
		{"fragment", configJSON("shop", "https://s.example/x#f", good), `.url: must not have a fragment`},
		{"not a url", configJSON("shop", "https://s.example/%zz", good), `.url: is not a URL`},
		{"missing secret", `{"storefronts": {"shop": {"url": "https://s.example"}}}`, `storefronts["shop"].secret: is required`},
		{"secret without prefix", configJSON("shop", "https://s.example", strings.TrimPrefix(good, "whsec_")), `.secret: must start with "whsec_"`},
		{"secret not base64", configJSON("shop", "https://s.example", "whsec_not*base64!!"), `.secret: must be "whsec_" followed by standard base64`},
		{"secret too short", configJSON("shop", "https://s.example", secretOf(16, 3)), `.secret: must encode 24 to 64 bytes, not 16`},
		{"secret too long", configJSON("shop", "https://s.example", secretOf(65, 3)), `.secret: must encode 24 to 64 bytes, not 65`},
		{"secret empty", configJSON("shop", "https://s.example", "whsec_"), `.secret: must encode 24 to 64 bytes, not 0`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := events.ParseConfig([]byte(tc.doc))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseConfig: %v", err)
				}
				if cfg == nil {
					t.Fatal("nil config")
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseConfig accepted %s", tc.doc)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
			// No part of any secret in the document may appear in the error.
			for _, s := range []string{good, strings.TrimPrefix(good, "whsec_"), "not*base64", secretOf(16, 3)[6:], secretOf(65, 3)[6:]} {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error %q discloses a secret", err)
				}
			}
		})
	}
}

func TestConfigLookupAndRedaction(t *testing.T) {
	doc := `{"storefronts": {
		"shop": {"url": "https://shop.example/hooks?token=abc", "secret": "` + testSecret + `"},
		"alpha": {"url": "http://127.0.0.1:8080/e", "secret": "` + secretOf(24, 9) + `"}}}`
	cfg, err := events.ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Storefronts(), ","); got != "alpha,shop" {
		t.Fatalf("Storefronts = %s", got)
	}
	if !cfg.Enabled("shop") || !cfg.Enabled("alpha") || cfg.Enabled("other") {
		t.Fatal("Enabled is wrong")
	}
	var nilCfg *events.Config
	if nilCfg.Enabled("shop") || len(nilCfg.Storefronts()) != 0 {
		t.Fatal("a nil config must have no storefronts")
	}
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("Z", 32)))
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{cfg, *cfg} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, key) || strings.Contains(out, "ZZZZ") || strings.Contains(out, "token=abc") {
				t.Fatalf("%s of the config discloses a secret: %s", verb, out)
			}
		}
	}
	if s := cfg.String(); !strings.Contains(s, "shop=shop.example(secret <redacted>)") {
		t.Fatalf("String = %s", s)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.json")
	if err := os.WriteFile(path, []byte(configJSON("shop", "https://shop.example/e", testSecret)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := events.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Enabled("shop") {
		t.Fatal("shop not loaded")
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(configJSON("shop", "https://shop.example/e", "whsec_AAAA")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = events.LoadFile(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `storefronts["shop"].secret`) {
		t.Fatalf("LoadFile(bad) = %v; want an error naming the file and the field", err)
	}
	if _, err := events.LoadFile(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("LoadFile of a missing file succeeded")
	}
	if _, err := events.LoadFile(""); err == nil {
		t.Fatal("LoadFile of an empty path succeeded")
	}
	// Secrets other users can read: refused, with a message that says why.
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := events.LoadFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("LoadFile of a %04o file: %v; want a refusal saying chmod 600", mode, err)
		}
	}
}

// TestEndpointsMustBeHTTPS: plain http is refused except to loopback.
func TestEndpointsMustBeHTTPS(t *testing.T) {
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"https://shop.example/e", true},
		{"http://127.0.0.1:9000/e", true},
		{"http://[::1]:9000/e", true},
		{"http://localhost/e", true},
		{"http://shop.example/e", false},
		{"http://10.0.0.5/e", false},
	} {
		_, err := events.ParseConfig([]byte(configJSON("shop", c.url, testSecret)))
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.url, err, c.ok)
		}
	}
}
