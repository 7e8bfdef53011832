package webhook_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hppd/hppd/webhook"
)

// With the global HS256 key and public keys both configured, a token signed
// with a wrong HS256 key is refused as a bad signature: the reason a
// storefront engineer needs, not "algorithm does not match the key".
func TestWrongHS256KeyInAMixedSetupSaysSignatureIsInvalid(t *testing.T) {
	k := testKeys(t)
	a, err := webhook.NewAuthenticator([]byte(hsKey), k.pem, "hppd", func() time.Time { return jwtNow })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, token string }{
		{"wrong key", sign(t, jwt.SigningMethodHS256, []byte("another key that is long enough!!"), claims(nil))},
		{"the key base64-encoded", sign(t, jwt.SigningMethodHS256, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYtaG9zdGlsZS1rZXk="), claims(nil))},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := a.Verify(c.token)
			if err == nil || !strings.Contains(err.Error(), "signature is invalid") {
				t.Fatalf("refused with %v, want \"signature is invalid\"", err)
			}
		})
	}
	if sf, err := a.Verify(sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(nil))); err != nil || sf != "shop-a" {
		t.Fatalf("the right key: %q %v", sf, err)
	}
}

// The README's numbers: 30 s of leeway on exp and iat, and a lifetime
// (exp - iat) of at most HPPD_JWT_MAX_LIFETIME, 24 h by default.
func TestTokenLeewayAndLifetimeAreTheDocumentedOnes(t *testing.T) {
	a, err := webhook.NewAuthenticator([]byte(hsKey), nil, "hppd", func() time.Time { return jwtNow })
	if err != nil {
		t.Fatal(err)
	}
	hs := []byte(hsKey)
	day := jwtNow.Add(-time.Hour)
	for _, c := range []struct {
		name string
		edit map[string]any
		ok   bool
	}{
		{"expired 29 s ago", map[string]any{"exp": jwtNow.Add(-29 * time.Second).Unix()}, true},
		{"expired 31 s ago", map[string]any{"exp": jwtNow.Add(-31 * time.Second).Unix()}, false},
		{"iat 29 s ahead", map[string]any{"iat": jwtNow.Add(29 * time.Second).Unix(), "nbf": nil}, true},
		{"iat 31 s ahead", map[string]any{"iat": jwtNow.Add(31 * time.Second).Unix(), "nbf": nil}, false},
		{"a lifetime of exactly 24 h", map[string]any{"iat": day.Unix(), "nbf": nil, "exp": day.Add(24 * time.Hour).Unix()}, true},
		{"a lifetime of 24 h and a second", map[string]any{"iat": day.Unix(), "nbf": nil, "exp": day.Add(24*time.Hour + time.Second).Unix()}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := a.Verify(sign(t, jwt.SigningMethodHS256, hs, claims(c.edit)))
			if (err == nil) != c.ok {
				t.Fatalf("accepted %v, want %v (err %v)", err == nil, c.ok, err)
			}
		})
	}
}
