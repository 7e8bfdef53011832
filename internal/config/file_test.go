package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFile writes name in dir and returns its path.
func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func twoAccounts(dir string) string {
	return `klarna_accounts:
  - name: eu
    region: eu
    environment: playground
    username: eu-user
    password_file: ` + filepath.Join(dir, "eu-pass") + `
    countries: [SE, no, FI]
  - name: na
    base_url: http://127.0.0.1:9/
    username: na-user
    password: na-pass
    countries: [US, CA]
storefronts:
  - name: shop-b
    klarna_accounts: [eu]
    jwt_hs256_key_file: ` + filepath.Join(dir, "shop-b-jwt") + `
    events:
      url: https://shop-b.example/hooks
      secret_file: ` + filepath.Join(dir, "shop-b-whsec") + `
env:
  HPPD_LISTEN: 127.0.0.1:9999
  HPPD_DB: /from/file.db
`
}

func fileEnv(t *testing.T, body string) (map[string]string, string) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "eu-pass", "eu-secret-password\n")
	writeFile(t, dir, "shop-b-jwt", strings.Repeat("b", 32)+"\n"+strings.Repeat("c", 40)+"\n")
	writeFile(t, dir, "shop-b-whsec", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
	if body == "" {
		body = twoAccounts(dir)
	}
	return map[string]string{
		"HPPD_CONFIG_FILE":   writeFile(t, dir, "hppd.yaml", body),
		"HPPD_JWT_HS256_KEY": strings.Repeat("k", 32),
		"HPPD_DB":            "/from/env.db",
	}, dir
}

func TestConfigFileAccounts(t *testing.T) {
	m, _ := fileEnv(t, "")
	c, err := load(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Accounts) != 2 {
		t.Fatalf("accounts %+v, want eu and na (no HPPD_KLARNA_USERNAME: no default)", c.Accounts)
	}
	eu, na := c.Accounts[0], c.Accounts[1]
	if eu.Name != "eu" || eu.Password != "eu-secret-password" || strings.Join(eu.Countries, ",") != "SE,NO,FI" || eu.CreateRate != 5 {
		t.Fatalf("eu account %+v", eu)
	}
	if na.BaseURL != "http://127.0.0.1:9" || na.Password != "na-pass" || na.Environment != "playground" {
		t.Fatalf("na account %+v", na)
	}
	if c.Listen != "127.0.0.1:9999" || c.DB != "/from/env.db" {
		t.Fatalf("listen %s db %s: the file's env fills in, the environment wins", c.Listen, c.DB)
	}
	if c.Sources["HPPD_LISTEN"] != "file" || c.Sources["HPPD_DB"] != "env" || c.Sources["HPPD_POLL_SCHEDULE"] != "default" {
		t.Fatalf("sources %v", c.Sources)
	}
	if got := c.StorefrontAccounts(); len(got) != 1 || strings.Join(got["shop-b"], ",") != "eu" {
		t.Fatalf("storefront accounts %v", got)
	}
	sb := c.Storefronts[0]
	if len(sb.JWTHS256Keys) != 2 || sb.Events == nil || !strings.HasPrefix(sb.Events.Secret, "whsec_") {
		t.Fatalf("storefront %+v", sb)
	}

	// With HPPD_KLARNA_* set, they make a "default" account too.
	m["HPPD_KLARNA_USERNAME"], m["HPPD_KLARNA_PASSWORD"] = "u", "p"
	if c, err = load(m); err != nil {
		t.Fatal(err)
	}
	if len(c.Accounts) != 3 || c.Accounts[0].Name != "default" || c.Accounts[0].Source != "env" {
		t.Fatalf("accounts %+v", c.Accounts)
	}
}

func TestConfigFileErrors(t *testing.T) {
	cases := []struct {
		name string
		edit func(body, dir string) string
		want []string
	}{
		{"unknown key names key and line", func(b, _ string) string {
			return strings.Replace(b, "    username: na-user\n", "    username: na-user\n    pasword: x\n", 1)
		}, []string{"line 11", "pasword"}},
		{"unknown top-level key", func(b, _ string) string { return b + "storefront: []\n" }, []string{"line 23", "storefront"}},
		{"two accounts claim one country", func(b, _ string) string {
			return strings.Replace(b, "countries: [US, CA]", "countries: [US, SE]", 1)
		}, []string{"accounts eu and na both claim SE", "line 2"}},
		{"two accounts claim one country for one storefront", func(b, _ string) string {
			b = strings.Replace(b, "countries: [US, CA]", "countries: [US, FI]", 1)
			return strings.Replace(b, "storefronts:\n", "storefronts:\n  - name: shop-c\n    klarna_accounts: [na, eu]\n", 1)
		}, []string{"accounts eu and na both claim FI for storefront shop-c", "storefronts[0].klarna_accounts"}},
		{"unreadable secret file", func(b, dir string) string {
			return strings.Replace(b, filepath.Join(dir, "eu-pass"), filepath.Join(dir, "missing"), 1)
		}, []string{"line 6", "klarna_accounts[0].password_file", "cannot read"}},
		{"bad value", func(b, _ string) string { return strings.Replace(b, "environment: playground", "environment: prod", 1) }, []string{"line 4", "klarna_accounts[0].environment", `"prod"`}},
		{"unknown account of a storefront", func(b, _ string) string {
			return strings.Replace(b, "klarna_accounts: [eu]", "klarna_accounts: [oc]", 1)
		}, []string{"storefronts[0].klarna_accounts[0]", `"oc"`}},
		{"unknown env key", func(b, _ string) string { return b + "  HPPD_LISTN: x\n" }, []string{"env.HPPD_LISTN", "unknown key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := fileEnv(t, "")
			writeFile(t, dir, "hppd.yaml", tc.edit(twoAccounts(dir), dir))
			_, err := load(m)
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "eu-secret-password") || strings.Contains(err.Error(), "na-pass") {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
}
