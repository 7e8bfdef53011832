package webhook

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenBytes bounds the bearer token hppd will parse.
const MaxTokenBytes = 8 << 10

// DefaultMaxLifetime is the longest exp - iat a token may have unless
// SetMaxLifetime says otherwise (HPPD_JWT_MAX_LIFETIME).
const DefaultMaxLifetime = 24 * time.Hour

// leeway is the clock skew allowed on exp, nbf and iat.
const leeway = 30 * time.Second

// issuerOK reports whether s is a storefront name (the JWT iss): 1 to 64 of
// A-Z a-z 0-9 . _ -. kidOK: a key id, 1 to 128 of those and ':'. (Checked by
// hand: the equivalent regexps, with their bounded repeats, compiled to
// about 180 KB of heap at start.)
func issuerOK(s string) bool { return charsetOK(s, 64, "._-") }

func kidOK(s string) bool { return charsetOK(s, 128, "._:-") }

// charsetOK reports whether s has 1 to max bytes, each an ASCII letter or
// digit or one of punct.
func charsetOK(s string, max int, punct string) bool {
	if len(s) < 1 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(punct, c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// Authenticator verifies storefront JWTs. The accepted algorithms follow from
// the configured keys (HS256 for the shared key; RS256/ES256/EdDSA for the
// public keys of those types), so a token can never choose how it is checked:
// "none", or HS256 signed with a public key, is refused.
//
// A token must carry iss (the storefront), aud (exactly the configured
// audience: a string, or an array holding that one value and nothing else),
// iat (not in the future beyond a 30 s leeway) and exp, at most the maximum
// lifetime after iat. A token whose iss names a storefront with keys of its
// own verifies only with those keys; any other token with the global keys.
// A kid in the token's header picks the key of that kid and a kid no key has
// is refused; a token without kid is tried against every key of its
// algorithm (rotation without kids).
//
// Every key, global and per storefront, sits in one keyring behind one
// atomic pointer: a reload of the key files (SIGHUP) swaps the whole ring,
// so a token is always checked against one consistent set, never half old
// and half new.
type Authenticator struct {
	audience    string
	now         func() time.Time
	maxLifetime atomic.Int64 // time.Duration
	keys        atomic.Pointer[keyring]
}

// keyring is every key in use: the global keys, and the keys of
// storefronts with keys of their own (storefronts.go), whose tokens verify
// only with those. It is never changed once stored; a change stores a new
// one.
type keyring struct {
	global      *keySet
	storefronts map[string]*keySet
}

// NewAuthenticator returns an Authenticator for an HS256 key and/or PEM public keys.
func NewAuthenticator(hsKey []byte, publicPEM []byte, audience string, now func() time.Time) (*Authenticator, error) {
	var hs [][]byte
	if len(hsKey) > 0 {
		hs = [][]byte{hsKey}
	}
	ks, err := newKeySet(hs, publicPEM)
	if err != nil {
		return nil, err
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("no JWT key configured")
	}
	a, err := NewStorefrontAuthenticator(audience, now)
	if err != nil {
		return nil, err
	}
	a.keys.Store(&keyring{global: ks})
	return a, nil
}

// SetMaxLifetime sets the longest exp - iat a token may have (0: the
// default, 24 h).
func (a *Authenticator) SetMaxLifetime(d time.Duration) {
	if d <= 0 {
		d = DefaultMaxLifetime
	}
	a.maxLifetime.Store(int64(d))
}

// ParsePublicKeys reads every PUBLIC KEY block of a PEM file.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	keys, err := parsePublicKeys(data)
	if err != nil {
		return nil, err
	}
	out := make([]crypto.PublicKey, len(keys))
	for i, k := range keys {
		out[i] = k.key
	}
	return out, nil
}

// parsePublicKeys reads every PUBLIC KEY block of a PEM file with its kid
// (a "kid: <id>" PEM header, optional).
func parsePublicKeys(data []byte) ([]jwtKey, error) {
	var keys []jwtKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		jk := jwtKey{key: k, kid: block.Headers["kid"]}
		if jk.kid != "" && !kidOK(jk.kid) {
			return nil, errors.New("a kid PEM header must be 1-128 of A-Z a-z 0-9 . _ : -")
		}
		switch k.(type) {
		case *rsa.PublicKey:
			jk.alg = "RS256"
		case *ecdsa.PublicKey:
			jk.alg = "ES256"
		case ed25519.PublicKey:
			jk.alg = "EdDSA"
		default:
			return nil, fmt.Errorf("unsupported public key type %T", k)
		}
		keys = append(keys, jk)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PUBLIC KEY block found")
	}
	return keys, nil
}

// Verify checks a bearer token and returns the storefront it names (iss).
func (a *Authenticator) Verify(token string) (string, error) {
	if token == "" {
		return "", errors.New("missing bearer token")
	}
	if len(token) > MaxTokenBytes {
		return "", errors.New("token too large")
	}
	// The header and iss are read before the signature is checked only to
	// pick the keys; the token is then verified with those alone.
	var unverified jwt.RegisteredClaims
	parsed, _, err := jwt.NewParser().ParseUnverified(token, &unverified)
	if err != nil {
		return "", err
	}
	ring := a.keys.Load()
	ks := ring.global
	if own, ok := ring.storefronts[unverified.Issuer]; ok {
		ks = own
	} else if len(ks.keys) == 0 {
		return "", errors.New("the token's iss names no storefront with keys, and hppd has no global JWT key")
	}
	alg, _ := parsed.Header["alg"].(string)
	candidates, err := ks.pick(alg, parsed.Header["kid"])
	if err != nil {
		return "", err
	}
	var lastErr error
	for _, key := range candidates {
		claims := jwt.RegisteredClaims{}
		_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return key.key, nil },
			jwt.WithValidMethods([]string{key.alg}),
			jwt.WithAudience(a.audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithTimeFunc(a.now),
			jwt.WithLeeway(leeway),
		)
		if err != nil {
			lastErr = err
			if errors.Is(err, jwt.ErrTokenSignatureInvalid) || errors.Is(err, jwt.ErrTokenUnverifiable) {
				continue
			}
			return "", err
		}
		if err := a.checkClaims(&claims); err != nil {
			return "", err
		}
		return claims.Issuer, nil
	}
	return "", lastErr
}

// checkClaims adds what jwt's validation does not check to a token whose
// signature, exp, nbf, iat and aud passed.
func (a *Authenticator) checkClaims(c *jwt.RegisteredClaims) error {
	if !issuerOK(c.Issuer) {
		return errors.New("iss must name the storefront (1-64 of A-Z a-z 0-9 . _ -)")
	}
	if len(c.Audience) != 1 {
		return fmt.Errorf("aud must be %q alone (a string, or an array of that one value)", a.audience)
	}
	if c.IssuedAt == nil {
		return errors.New("iat is required")
	}
	max := time.Duration(a.maxLifetime.Load())
	if lifetime := c.ExpiresAt.Sub(c.IssuedAt.Time); lifetime > max {
		return fmt.Errorf("the token lives %s from iat to exp, longer than the %s hppd allows", lifetime.Round(time.Second), max)
	}
	return nil
}

// IssueToken signs an HS256 storefront token (for development and the demo).
// A key written "kid=<id> <key>" (a line of a storefront's key file) signs
// with <key> and puts its kid in the header.
func IssueToken(key []byte, issuer, audience string, ttl time.Duration, now time.Time) (string, error) {
	if !issuerOK(issuer) {
		return "", errors.New("issuer must be 1-64 of A-Z a-z 0-9 . _ -")
	}
	claims := jwt.RegisteredClaims{
		Issuer:    issuer,
		Audience:  jwt.ClaimStrings{audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	kid, secret := splitKID(key)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	return tok.SignedString(secret)
}
