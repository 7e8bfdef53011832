package webhook_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/webhook"
)

var jwtNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// claims are valid storefront claims at jwtNow, with edits applied (nil
// removes a claim).
func claims(edits map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": "shop-a", "aud": "hppd",
		"iat": jwtNow.Unix(), "nbf": jwtNow.Unix(), "exp": jwtNow.Add(10 * time.Minute).Unix(),
	}
	for k, v := range edits {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// signKID signs c with a kid header.
func signKID(t *testing.T, m jwt.SigningMethod, key any, kid any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// unsigned builds a token with header alg "none" by hand.
func unsigned(c jwt.MapClaims, alg string) string {
	enc := base64.RawURLEncoding.EncodeToString
	payload := mustJSON(c)
	return enc([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + enc(payload) + "."
}

// tokenCase is a bearer token and whether hppd must accept it.
type tokenCase struct {
	name  string
	token string
	ok    bool
}

func tokenCases(t *testing.T, k *jwtKeys) []tokenCase {
	hs := []byte(hsKey)
	valid := sign(t, jwt.SigningMethodHS256, hs, claims(nil))
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(mustJSON(claims(map[string]any{"iss": "shop-b"}))) + "." + parts[2]
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return []tokenCase{
		{"valid HS256", valid, true},
		{"valid RS256", sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil)), true},
		{"valid ES256", sign(t, jwt.SigningMethodES256, k.ec, claims(nil)), true},
		{"valid EdDSA", sign(t, jwt.SigningMethodEdDSA, k.ed, claims(nil)), true},
		{"audience as an array of itself", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"aud": []string{"hppd"}})), true},
		{"lifetime of exactly 24h", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"exp": jwtNow.Add(24 * time.Hour).Unix()})), true},
		{"iat 20s ahead, within the leeway", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"iat": jwtNow.Add(20 * time.Second).Unix()})), true},
		{"expired 20s ago, within the 30s leeway", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"exp": jwtNow.Add(-20 * time.Second).Unix()})), true},

		{"alg none", none, false},
		{"alg none by hand", unsigned(claims(nil), "none"), false},
		{"alg NONE by hand", unsigned(claims(nil), "NONE"), false},
		{"HS256 signed with the RSA public key", sign(t, jwt.SigningMethodHS256, k.rsaPEM, claims(nil)), false},
		{"HS256 signed with the EC public key", sign(t, jwt.SigningMethodHS256, k.ecPEM, claims(nil)), false},
		{"HS256 signed with the whole public key file", sign(t, jwt.SigningMethodHS256, k.pem, claims(nil)), false},
		{"HS256 signed with another key", sign(t, jwt.SigningMethodHS256, []byte("another key that is long enough!!"), claims(nil)), false},
		{"HS384 with the right key", sign(t, jwt.SigningMethodHS384, hs, claims(nil)), false},
		{"PS256 with the RSA key", sign(t, jwt.SigningMethodPS256, k.rsa, claims(nil)), false},
		{"RS256 signed by another RSA key", sign(t, jwt.SigningMethodRS256, otherRSA, claims(nil)), false},
		{"ES256 signed by another EC key", sign(t, jwt.SigningMethodES256, otherEC, claims(nil)), false},
		{"expired", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"exp": jwtNow.Add(-time.Hour).Unix()})), false},
		{"missing exp", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"exp": nil})), false},
		{"exp as a string", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"exp": "tomorrow"})), false},
		{"wrong aud", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"aud": "klarna"})), false},
		{"missing aud", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"aud": nil})), false},
		{"audience among several", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"aud": []string{"other", "hppd"}})), false},
		{"audience twice", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"aud": []string{"hppd", "hppd"}})), false},
		{"empty audience array", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"aud": []string{}})), false},
		{"missing iat", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"iat": nil})), false},
		{"iat a year ahead", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"iat": jwtNow.AddDate(1, 0, 0).Unix(), "exp": jwtNow.AddDate(1, 0, 0).Add(time.Minute).Unix()})), false},
		{"exp 100 years ahead", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"exp": jwtNow.AddDate(100, 0, 0).Unix()})), false},
		{"lifetime of 24h and a second", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"exp": jwtNow.Add(24*time.Hour + time.Second).Unix()})), false},
		{"unknown kid", signKID(t, jwt.SigningMethodHS256, hs, "nobody", claims(nil)), false},
		{"kid that is not a string", signKID(t, jwt.SigningMethodHS256, hs, 7, claims(nil)), false},
		{"nbf in the future", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"nbf": jwtNow.Add(5 * time.Minute).Unix()})), false},
		{"missing iss", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"iss": nil})), false},
		{"iss with a space", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"iss": "shop a"})), false},
		{"iss with a NUL", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"iss": "shop\x00a"})), false},
		{"iss of 65 characters", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"iss": strings.Repeat("s", 65)})), false},
		{"payload changed after signing", tampered, false},
		{"signature removed", parts[0] + "." + parts[1] + ".", false},
		{"huge token", sign(t, jwt.SigningMethodHS256, hs, claims(map[string]any{"pad": strings.Repeat("p", webhook.MaxTokenBytes)})), false},
		{"two parts", parts[0] + "." + parts[1], false},
		{"garbage", "not.a.token", false},
		{"dots", "....", false},
	}
}

func TestAuthenticator(t *testing.T) {
	k := testKeys(t)
	a, err := webhook.NewAuthenticator([]byte(hsKey), k.pem, "hppd", func() time.Time { return jwtNow })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range tokenCases(t, k) {
		t.Run(c.name, func(t *testing.T) {
			sf, err := a.Verify(c.token)
			if c.ok {
				if err != nil || sf != "shop-a" {
					t.Fatalf("refused: %q %v", sf, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted as %q", sf)
			}
			// The reason never repeats the token or its signature.
			sig := c.token[strings.LastIndex(c.token, ".")+1:]
			if strings.Contains(err.Error(), c.token) || (len(sig) > 8 && strings.Contains(err.Error(), sig)) {
				t.Fatalf("the error shows the token: %v", err)
			}
		})
	}
}

// With public keys only, no HS256 token is accepted, whatever key signed it.
func TestAuthenticatorWithPublicKeysOnly(t *testing.T) {
	k := testKeys(t)
	a, err := webhook.NewAuthenticator(nil, k.pem, "hppd", func() time.Time { return jwtNow })
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range [][]byte{k.rsaPEM, k.ecPEM, k.pem, []byte(hsKey)} {
		if sf, err := a.Verify(sign(t, jwt.SigningMethodHS256, key, claims(nil))); err == nil {
			t.Fatalf("HS256 token accepted as %q", sf)
		}
	}
	if _, err := a.Verify(sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil))); err != nil {
		t.Fatalf("RS256: %v", err)
	}
	// And with an HS256 key only, a token signed with a private key of a
	// type hppd does not know is refused.
	h, err := webhook.NewAuthenticator([]byte(hsKey), nil, "hppd", func() time.Time { return jwtNow })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Verify(sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil))); err == nil {
		t.Fatal("RS256 token accepted without public keys")
	}
}

func TestNewAuthenticatorRefusesWeakConfigurations(t *testing.T) {
	if _, err := webhook.NewAuthenticator([]byte("short"), nil, "hppd", nil); err == nil {
		t.Error("a 5-byte HS256 key was accepted")
	}
	if _, err := webhook.NewAuthenticator(nil, nil, "hppd", nil); err == nil {
		t.Error("no key at all was accepted")
	}
	if _, err := webhook.NewAuthenticator([]byte(hsKey), nil, "", nil); err == nil {
		t.Error("an empty audience was accepted")
	}
	if _, err := webhook.NewAuthenticator(nil, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), "hppd", nil); err == nil {
		t.Error("a broken PEM file was accepted")
	}
}

// The same tokens over HTTP: every refused one is a 401 naming the
// Authorization header, on a request that would create a session, and the
// store does not change; a token of another storefront sees nothing of
// shop-a's.
func TestJWTOverHTTP(t *testing.T) {
	e := newHostileEnv(t, daemon.Timeouts{})
	s := e.createSession("shop-a", sessionBody(10000))
	id := s["id"].(string)
	e.clock.Freeze(jwtNow) // the tokens' times are relative to jwtNow
	body := mustJSON(sessionBody(10000))
	var rows []row
	for _, c := range tokenCases(t, e.keys) {
		if c.ok {
			rows = append(rows, row{name: c.name, method: "GET", path: "/v1/sessions/" + id, hdr: bearer(c.token), want: 200})
			continue
		}
		tok := c.token
		rows = append(rows, row{name: c.name, method: "POST", path: "/v1/sessions", body: body, hdr: bearer(tok), want: 401, field: "Authorization",
			check: func(t *testing.T, r response) {
				if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="hppd"` {
					t.Errorf("WWW-Authenticate %q", got)
				}
				sig := tok[strings.LastIndex(tok, ".")+1:]
				if len(sig) > 8 && strings.Contains(string(r.body), sig) {
					t.Errorf("the answer repeats the token: %s", r.body)
				}
			}})
	}
	shopB := sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(map[string]any{"iss": "shop-b"}))
	rows = append(rows,
		row{name: "another storefront reads the session", method: "GET", path: "/v1/sessions/" + id, hdr: bearer(shopB), want: 404},
		row{name: "another storefront cancels the session", method: "POST", path: "/v1/sessions/" + id + "/cancel", hdr: bearer(shopB), want: 404},
		row{name: "another storefront lists sessions", method: "GET", path: "/v1/sessions", hdr: bearer(shopB), want: 200,
			check: func(t *testing.T, r response) {
				if data := r.json(t)["data"].([]any); len(data) != 0 {
					t.Errorf("shop-b lists %d sessions of shop-a", len(data))
				}
			}},
		row{name: "no Authorization header", method: "POST", path: "/v1/sessions", body: body, hdr: map[string]string{"Authorization": ""}, want: 401, field: "Authorization"},
		row{name: "Basic instead of Bearer", method: "POST", path: "/v1/sessions", body: body, hdr: map[string]string{"Authorization": "Basic c2hvcDpzZWNyZXQ="}, want: 401, field: "Authorization"},
		// Authentication schemes are case-insensitive (RFC 9110, 11.1).
		row{name: "lower-case bearer", method: "GET", path: "/v1/sessions", hdr: map[string]string{"Authorization": "bearer " + shopB}, want: 200},
		row{name: "upper-case BEARER", method: "GET", path: "/v1/sessions", hdr: map[string]string{"Authorization": "BEARER " + shopB}, want: 200},
		row{name: "bearer without a space", method: "GET", path: "/v1/sessions", hdr: map[string]string{"Authorization": "Bearer" + shopB}, want: 401, field: "Authorization"},
		row{name: "Bearer and nothing", method: "POST", path: "/v1/sessions", body: body, hdr: map[string]string{"Authorization": "Bearer "}, want: 401, field: "Authorization"},
		// Larger than the server's header limit: net/http refuses it
		// before hppd sees it (431, not hppd's JSON).
		row{name: "token larger than the header limit", method: "POST", path: "/v1/sessions", body: body, hdr: bearer(strings.Repeat("a", 100<<10)), want: http.StatusRequestHeaderFieldsTooLarge, plain: true},
	)
	e.run(t, rows)
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// noLocation checks that an answer redirects nowhere.
func noLocation(t *testing.T, r response) {
	t.Helper()
	if loc := r.header.Get("Location"); loc != "" {
		t.Errorf("redirects to %q", loc)
	}
}
