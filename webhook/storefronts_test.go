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
