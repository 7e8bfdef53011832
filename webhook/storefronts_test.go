package webhook_test

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hppd/hppd/webhook"
)

// Storefront identity: a token verifies only with a key of the storefront
// its iss names; kid picks the key; the global key still serves storefronts
// without keys of their own.
func TestStorefrontKeys(t *testing.T) {
	k := testKeys(t)
	keyA1 := strings.Repeat("a", 40)
	keyA2 := strings.Repeat("A", 40)
	keyB := strings.Repeat("b", 40)
	keyC := strings.Repeat("c", 40)
	der, err := x509.MarshalPKIXPublicKey(k.rsa.Public())
	if err != nil {
		t.Fatal(err)
	}
	// shop-c: an HS256 key and an RSA public key, both with a kid.
	pemC := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"kid": "c-rsa"}, Bytes: der})
	a, err := webhook.NewAuthenticator([]byte(hsKey), nil, "hppd", func() time.Time { return jwtNow })
	if err != nil {
		t.Fatal(err)
	}
	// shop-a rotates: two keys with kids; shop-b has one key without kid.
	if err := a.SetStorefrontKeys("shop-a", [][]byte{[]byte("kid=a1 " + keyA1), []byte("kid=a2 " + keyA2)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.SetStorefrontKeys("shop-b", [][]byte{[]byte(keyB)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.SetStorefrontKeys("shop-c", [][]byte{[]byte("kid=c-hs " + keyC)}, pemC); err != nil {
		t.Fatal(err)
	}
	iss := func(name string) jwt.MapClaims { return claims(map[string]any{"iss": name}) }
	hs := jwt.SigningMethodHS256
	cases := []struct {
		name, token, want string // want "": refused
		reason            string // part of the refusal's text
	}{
		{"shop-a's newer key, picked by kid", signKID(t, hs, []byte(keyA2), "a2", iss("shop-a")), "shop-a", ""},
		{"shop-a's older key, picked by kid", signKID(t, hs, []byte(keyA1), "a1", iss("shop-a")), "shop-a", ""},
		{"shop-a's key without kid: every key is tried", sign(t, hs, []byte(keyA2), iss("shop-a")), "shop-a", ""},
		{"kid a1 on a token signed with a2", signKID(t, hs, []byte(keyA2), "a1", iss("shop-a")), "", "signature is invalid"},
		{"unknown kid", signKID(t, hs, []byte(keyA1), "a3", iss("shop-a")), "", "unknown kid"},
		{"shop-a's key with iss=shop-b", sign(t, hs, []byte(keyA1), iss("shop-b")), "", "signature is invalid"},
		{"shop-a's key and kid with iss=shop-b", signKID(t, hs, []byte(keyA1), "a1", iss("shop-b")), "", "unknown kid"},
		{"shop-b's key with iss=shop-a", sign(t, hs, []byte(keyB), iss("shop-a")), "", "signature is invalid"},
		{"the global key with iss=shop-a, which has keys of its own", sign(t, hs, []byte(hsKey), iss("shop-a")), "", "signature is invalid"},
		{"the global key with a storefront without keys", sign(t, hs, []byte(hsKey), iss("shop-z")), "shop-z", ""},
		{"shop-b's key with a storefront without keys", sign(t, hs, []byte(keyB), iss("shop-z")), "", "signature is invalid"},
		{"shop-c's RSA key by kid", signKID(t, jwt.SigningMethodRS256, k.rsa, "c-rsa", iss("shop-c")), "shop-c", ""},
		{"shop-c's RSA key without kid", sign(t, jwt.SigningMethodRS256, k.rsa, iss("shop-c")), "shop-c", ""},
		// Mixed HS256 and public keys: a wrong HS256 key is a bad signature,
		// not "the algorithm does not match the key".
		{"shop-c with a wrong HS256 key", sign(t, hs, []byte(keyB), iss("shop-c")), "", "signature is invalid"},
		{"shop-c's HS256 kid on an RS256 token", signKID(t, jwt.SigningMethodRS256, k.rsa, "c-hs", iss("shop-c")), "", "alg"},
		{"HS256 signed with shop-c's public key file", sign(t, hs, pemC, iss("shop-c")), "", "signature is invalid"},
		{"ES256 for shop-c, which has no EC key", sign(t, jwt.SigningMethodES256, k.ec, iss("shop-c")), "", "alg"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sf, err := a.Verify(c.token)
			if c.want != "" {
				if err != nil || sf != c.want {
					t.Fatalf("got %q, %v; want %s", sf, err, c.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted as %q", sf)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("refused with %q, want it to say %q", err, c.reason)
			}
		})
	}
}

// A reload replaces every storefront's keys at once; a bad set changes
// nothing.
func TestReplaceStorefrontKeys(t *testing.T) {
	oldKey, newKey := strings.Repeat("o", 40), strings.Repeat("n", 40)
	a, err := webhook.NewStorefrontAuthenticator("hppd", func() time.Time { return jwtNow })
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetStorefrontKeys("shop-a", [][]byte{[]byte(oldKey)}, nil); err != nil {
		t.Fatal(err)
	}
	oldTok := sign(t, jwt.SigningMethodHS256, []byte(oldKey), claims(nil))
	newTok := sign(t, jwt.SigningMethodHS256, []byte(newKey), claims(nil))
	if err := a.ReplaceStorefrontKeys(map[string]webhook.StorefrontKeys{"shop-a": {HS256: [][]byte{[]byte("short")}}}); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
	if _, err := a.Verify(oldTok); err != nil {
		t.Fatalf("a refused reload changed the keys: %v", err)
	}
	if err := a.ReplaceStorefrontKeys(map[string]webhook.StorefrontKeys{"shop-a": {HS256: [][]byte{[]byte(newKey)}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(newTok); err != nil {
		t.Fatalf("new key refused: %v", err)
	}
	if sf, err := a.Verify(oldTok); err == nil {
		t.Fatalf("the removed key still signs %s", sf)
	}
}

// A reload replaces the global keys and the storefronts' keys in one step;
// a bad set anywhere changes nothing.
func TestReplaceKeys(t *testing.T) {
	oldKey, newKey, shopKey := strings.Repeat("o", 40), strings.Repeat("n", 40), strings.Repeat("s", 40)
	a, err := webhook.NewAuthenticator([]byte(oldKey), nil, "hppd", func() time.Time { return jwtNow })
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetStorefrontKeys("shop-a", [][]byte{[]byte(shopKey)}, nil); err != nil {
		t.Fatal(err)
	}
	iss := func(name string) jwt.MapClaims { return claims(map[string]any{"iss": name}) }
	hs := jwt.SigningMethodHS256
	oldTok, newTok := sign(t, hs, []byte(oldKey), iss("shop-z")), sign(t, hs, []byte(newKey), iss("shop-z"))
	shopTok := sign(t, hs, []byte(shopKey), iss("shop-a"))
	verifies := func(what, tok string, want bool) {
		t.Helper()
		if _, err := a.Verify(tok); (err == nil) != want {
			t.Fatalf("%s: verified %v, want %v (%v)", what, err == nil, want, err)
		}
	}
	shops := map[string]webhook.StorefrontKeys{"shop-a": {HS256: [][]byte{[]byte(shopKey)}}}
	if err := a.ReplaceKeys(webhook.Keys{HS256: [][]byte{[]byte(newKey)}}, map[string]webhook.StorefrontKeys{"shop-a": {HS256: [][]byte{[]byte("short")}}}); err == nil {
		t.Fatal("a 5-byte storefront key was accepted")
	}
	if err := a.ReplaceKeys(webhook.Keys{PublicPEM: []byte("not a PEM file")}, shops); err == nil {
		t.Fatal("a global PEM file without a key was accepted")
	}
	verifies("the old global key after refused reloads", oldTok, true)
	verifies("the new global key after refused reloads", newTok, false)
	if err := a.ReplaceKeys(webhook.Keys{HS256: [][]byte{[]byte(newKey)}}, shops); err != nil {
		t.Fatal(err)
	}
	verifies("the new global key", newTok, true)
	verifies("the removed global key", oldTok, false)
	verifies("shop-a's own key", shopTok, true)
	verifies("the new global key as shop-a", sign(t, hs, []byte(newKey), iss("shop-a")), false)
	// No global key at all: only storefronts with keys of their own.
	if err := a.ReplaceKeys(webhook.Keys{}, shops); err != nil {
		t.Fatal(err)
	}
	verifies("a global key once there is none", newTok, false)
	verifies("shop-a's own key without global keys", shopTok, true)
}

// HPPD_JWT_MAX_LIFETIME shortens the lifetime a token may have.
func TestMaxLifetime(t *testing.T) {
	a, err := webhook.NewAuthenticator([]byte(hsKey), nil, "hppd", func() time.Time { return jwtNow })
	if err != nil {
		t.Fatal(err)
	}
	a.SetMaxLifetime(5 * time.Minute)
	if _, err := a.Verify(sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(nil))); err == nil || !strings.Contains(err.Error(), "longer than the 5m0s") {
		t.Fatalf("a 10-minute token with a 5-minute limit: %v", err)
	}
	if _, err := a.Verify(sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(map[string]any{"exp": jwtNow.Add(5 * time.Minute).Unix()}))); err != nil {
		t.Fatalf("a 5-minute token: %v", err)
	}
}
