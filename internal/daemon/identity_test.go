package daemon_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hppd/hppd/webhook"
)

// Each storefront's own key, with a kid (kid=<id> <key> lines).
const (
	shopAKey1 = "kid=a1 shop-a-key-one-0123456789abcdef-0123456789"
	shopAKey2 = "kid=a2 shop-a-key-two-0123456789abcdef-0123456789"
	shopBOwn  = "kid=b1 shop-b-key-one-0123456789abcdef-0123456789"
)

// shopsEnv is an env whose config file gives shop-a and shop-b keys of
// their own (files in dir), with more per-storefront YAML from extra.
type shopsEnv struct {
	*env
	dir string
}

func newShopsEnv(t *testing.T, extraA, extraB, top string) *shopsEnv {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"shop-a-jwt": shopAKey1 + "\n", "shop-b-jwt": shopBOwn + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	yaml := top + `storefronts:
  - name: shop-a
    jwt_hs256_key_file: ` + filepath.Join(dir, "shop-a-jwt") + "\n" + extraA + `  - name: shop-b
    jwt_hs256_key_file: ` + filepath.Join(dir, "shop-b-jwt") + "\n" + extraB
	cfgPath := filepath.Join(dir, "hppd.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, map[string]string{"HPPD_CONFIG_FILE": cfgPath})
	return &shopsEnv{env: e, dir: dir}
}

// as is the Authorization header of a token signed with key for iss.
func (s *shopsEnv) as(key, iss string) map[string]string {
	s.t.Helper()
	tok, err := webhook.IssueToken([]byte(key), iss, "hppd", time.Hour, s.clock.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	return map[string]string{"Authorization": "Bearer " + tok}
}

// A token verifies only with a key of the storefront its iss names, and a
// reload (SIGHUP's work) replaces the keys from the rewritten files.
func TestStorefrontIdentityAndKeyReload(t *testing.T) {
	t.Parallel()
	s := newShopsEnv(t, "", "", "")
	st, sess := s.do("POST", "/v1/sessions", sessionBody(10000, ""), s.as(shopAKey1, "shop-a"))
	if st != http.StatusCreated {
		t.Fatalf("shop-a creates a session: %d %v", st, sess)
	}
	id := sess["id"].(string)
	unauthorized := func(what string, hdr map[string]string) {
		t.Helper()
		st, out := s.do("GET", "/v1/sessions/"+id, nil, hdr)
		if st != http.StatusUnauthorized || !strings.Contains(out["_raw"].(string), `"field":"Authorization"`) {
			t.Fatalf("%s: %d %s, want 401 naming Authorization", what, st, out["_raw"])
		}
	}
	unauthorized("shop-b's key with iss=shop-a", s.as(shopBOwn, "shop-a"))
	unauthorized("the global key with iss=shop-a", s.as(testKey, "shop-a"))
	if st, _ := s.do("GET", "/v1/sessions/"+id, nil, s.as(shopBOwn, "shop-b")); st != http.StatusNotFound {
		t.Fatalf("shop-b reads shop-a's session: %d", st)
	}

	// Rotation: add a2, reload, both keys work; drop a1, reload, a1 is refused.
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(s.dir, "shop-a-jwt"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	unauthorized("a2 before the reload", s.as(shopAKey2, "shop-a"))
	write(shopAKey1 + "\n" + shopAKey2 + "\n")
	if err := s.m.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{shopAKey1, shopAKey2} {
		if st, _ := s.do("GET", "/v1/sessions/"+id, nil, s.as(k, "shop-a")); st != http.StatusOK {
			t.Fatalf("after adding a2, %s: %d", k[:6], st)
		}
	}
	write(shopAKey2 + "\n")
	if err := s.m.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	unauthorized("a1 after it was removed", s.as(shopAKey1, "shop-a"))
	// A broken file keeps the keys in use.
	write("short\n")
	if err := s.m.ReloadKeys(); err == nil || !strings.Contains(err.Error(), "shop-a") {
		t.Fatalf("reload of a broken file: %v", err)
	}
	if st, _ := s.do("GET", "/v1/sessions/"+id, nil, s.as(shopAKey2, "shop-a")); st != http.StatusOK {
		t.Fatalf("a2 after a refused reload: %d", st)
	}
}
