package config

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
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

// The configuration files deploy/ shows load, with their secrets where the
// examples put them (moved to a temporary directory).
func TestDeployConfigFileExamples(t *testing.T) {
	secrets := map[string]string{
		"klarna-eu": "eu-password", "klarna-na": "na-password",
		"shop-a-jwt": strings.Repeat("a", 40), "shop-b-jwt": strings.Repeat("b", 40),
		"shop-a-whsec": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	}
	check := func(t *testing.T, body, secretDir string) *Config {
		t.Helper()
		dir := t.TempDir()
		for name, v := range secrets {
			writeFile(t, dir, name, v)
		}
		body = strings.ReplaceAll(body, secretDir, dir+"/")
		c, err := load(map[string]string{
			"HPPD_CONFIG_FILE":   writeFile(t, dir, "hppd.yaml", body),
			"HPPD_JWT_HS256_KEY": strings.Repeat("k", 32),
			"HPPD_PUBLIC_URL":    "https://hppd.example.com",
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Accounts) != 2 || c.Accounts[0].Password != "eu-password" || len(c.Storefronts) != 2 ||
			c.Storefronts[0].Events == nil || len(c.Storefronts[1].JWTHS256Keys) != 1 {
			t.Fatalf("accounts %+v storefronts %+v", c.Accounts, c.Storefronts)
		}
		return c
	}
	t.Run("systemd", func(t *testing.T) {
		b, err := os.ReadFile("../../deploy/systemd/hppd.yaml.example")
		if err != nil {
			t.Fatal(err)
		}
		check(t, string(b), "/run/credentials/hppd.service/")
		unit, err := os.ReadFile("../../deploy/systemd/accounts.conf")
		if err != nil {
			t.Fatal(err)
		}
		for name := range secrets {
			if !strings.Contains(string(unit), "LoadCredential="+name+":") {
				t.Errorf("accounts.conf does not load the credential %s", name)
			}
		}
	})
	t.Run("kubernetes", func(t *testing.T) {
		b, err := os.ReadFile("../../deploy/kubernetes/accounts.example.yaml")
		if err != nil {
			t.Fatal(err)
		}
		docs := strings.Split(string(b), "\n---\n")
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		var sec struct {
			StringData map[string]string `yaml:"stringData"`
		}
		if len(docs) != 2 || yaml.Load([]byte(docs[0]), &cm) != nil || yaml.Load([]byte(docs[1]), &sec) != nil {
			t.Fatalf("want a ConfigMap and a Secret")
		}
		for name := range secrets {
			if _, ok := sec.StringData[name]; !ok {
				t.Errorf("the Secret lacks %s", name)
			}
		}
		check(t, cm.Data["hppd.yaml"], "/run/secrets/hppd-accounts/")
	})
}

func TestConfigFileEventsChecked(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"url: https://shop-b.example/hooks", "url: ftp://shop-b.example/hooks", "line 18: storefronts[0].events.url: must be an absolute http or https URL"},
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "nope", `line 19: storefronts[0].events.secret_file: must start with "whsec_"`},
	} {
		m, dir := fileEnv(t, "")
		if tc.from == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" {
			writeFile(t, dir, "shop-b-whsec", tc.to+"\n")
		} else {
			writeFile(t, dir, "hppd.yaml", strings.Replace(twoAccounts(dir), tc.from, tc.to, 1))
		}
		_, err := load(m)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

func TestConfigFileStorefrontPublicKeys(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, pem, want string
	}{
		{"a key", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), ""},
		{"no key", "not a key\n", "line 16: storefronts[0].jwt_public_keys_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := fileEnv(t, "")
			p := writeFile(t, dir, "shop-b.pem", tc.pem)
			body := strings.Replace(twoAccounts(dir), "    jwt_hs256_key_file:", "    jwt_public_keys_file: "+p+"\n    jwt_hs256_key_file:", 1)
			writeFile(t, dir, "hppd.yaml", body)
			c, err := load(m)
			if tc.want == "" {
				if err != nil || len(c.Storefronts[0].JWTPublicKeys) == 0 {
					t.Fatalf("%v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestStorefrontShareAndTokenSharing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hppd.yaml")
	load := func(body string) (*Config, error) {
		t.Helper()
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		env := map[string]string{"HPPD_CONFIG_FILE": p, "HPPD_KLARNA_USERNAME": "u", "HPPD_KLARNA_PASSWORD": "p", "HPPD_JWT_HS256_KEY": strings.Repeat("k", 32)}
		return Load(func(k string) string { return env[k] })
	}
	c, err := load("storefronts:\n  - name: shop-a\n    klarna_share: 0.25\n    share_tokens_with: [shop-b]\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.StorefrontShares()["shop-a"] != 0.25 || !slices.Equal(c.TokenSharing()["shop-a"], []string{"shop-b"}) {
		t.Fatalf("shares %v, sharing %v", c.StorefrontShares(), c.TokenSharing())
	}
	for body, want := range map[string]string{
		"storefronts:\n  - name: shop-a\n    klarna_share: 0\n":             "line 3: storefronts[0].klarna_share",
		"storefronts:\n  - name: shop-a\n    klarna_share: 1.5\n":           "line 3: storefronts[0].klarna_share",
		"storefronts:\n  - name: shop-a\n    share_tokens_with: [shop-a]\n": "storefronts[0].share_tokens_with[0]",
		"storefronts:\n  - name: shop-a\n    share_tokens_with: ['a b']\n":  "storefronts[0].share_tokens_with[0]",
	} {
		if _, err := load(body); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %s", body, err, want)
		}
	}
}

// A config file that holds a secret itself must not be readable by others;
// one whose secrets all come from *_file keys may be.
func TestConfigFileWithSecretsMustBePrivate(t *testing.T) {
	dir := t.TempDir()
	inline := `klarna_accounts:
  - name: eu
    region: eu
    environment: playground
    username: K1
    password: inline-secret
`
	p := writeFile(t, dir, "inline.yaml", inline)
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{"HPPD_CONFIG_FILE": p, "HPPD_JWT_HS256_KEY": strings.Repeat("k", 32)}
	_, err := load(m)
	if err == nil || !strings.Contains(err.Error(), "readable by others") || !strings.Contains(err.Error(), "password") || strings.Contains(err.Error(), "inline-secret") {
		t.Fatalf("0644 file with an inline password: %v", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := load(m); err != nil {
		t.Fatalf("0600 file with an inline password: %v", err)
	}
	pw := writeFile(t, dir, "pw", "file-secret\n")
	q := writeFile(t, dir, "files.yaml", strings.Replace(inline, "password: inline-secret", "password_file: "+pw, 1))
	if err := os.Chmod(q, 0o644); err != nil {
		t.Fatal(err)
	}
	m["HPPD_CONFIG_FILE"] = q
	if _, err := load(m); err != nil {
		t.Fatalf("0644 file whose secrets are in files: %v", err)
	}
}
