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
	"regexp"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenBytes bounds the bearer token hppd will parse.
const MaxTokenBytes = 8 << 10

var issuerRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Authenticator verifies storefront JWTs. The accepted algorithms follow from
// the configured keys (HS256 for the shared key; RS256/ES256/EdDSA for the
// public keys of those types), so a token can never choose how it is checked:
// "none", or HS256 signed with a public key, is refused.
type Authenticator struct {
	hsKey    []byte
	pubKeys  []crypto.PublicKey
	audience string
	methods  []string
	now      func() time.Time
	// storefronts holds the keys of storefronts with keys of their own
	// (storefronts.go): their tokens verify only with those.
	storefronts map[string]*keySet
}

// NewAuthenticator returns an Authenticator for an HS256 key and/or PEM public keys.
func NewAuthenticator(hsKey []byte, publicPEM []byte, audience string, now func() time.Time) (*Authenticator, error) {
	a := &Authenticator{hsKey: hsKey, audience: audience, now: now}
	if a.now == nil {
		a.now = time.Now
	}
	if len(hsKey) > 0 {
		if len(hsKey) < 32 {
			return nil, errors.New("HS256 key must be at least 32 bytes")
		}
		a.methods = append(a.methods, "HS256")
	}
	if len(publicPEM) > 0 {
		keys, err := ParsePublicKeys(publicPEM)
		if err != nil {
			return nil, err
		}
		a.pubKeys = keys
		seen := map[string]bool{}
		for _, k := range keys {
			var m string
			switch k.(type) {
			case *rsa.PublicKey:
				m = "RS256"
			case *ecdsa.PublicKey:
				m = "ES256"
			case ed25519.PublicKey:
				m = "EdDSA"
			}
			if !seen[m] {
				seen[m] = true
				a.methods = append(a.methods, m)
			}
		}
	}
	if len(a.methods) == 0 {
		return nil, errors.New("no JWT key configured")
	}
	if audience == "" {
		return nil, errors.New("JWT audience must not be empty")
	}
	return a, nil
}

// ParsePublicKeys reads every PUBLIC KEY block of a PEM file.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
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
		switch k.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, k)
		default:
			return nil, fmt.Errorf("unsupported public key type %T", k)
		}
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
	candidates, methods := a.candidateKeys(), a.methods
	if ks, ok := a.storefrontKeys(token); ok {
		candidates, methods = ks.candidates(), ks.methods
	} else if len(candidates) == 0 {
		return "", errors.New("the token's iss names no storefront with keys, and hppd has no global JWT key")
	}
	var lastErr error
	for _, key := range candidates {
		claims := jwt.RegisteredClaims{}
		_, err := jwt.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
			switch t.Method.(type) {
			case *jwt.SigningMethodHMAC:
				if _, ok := key.([]byte); ok {
					return key, nil
				}
			case *jwt.SigningMethodRSA:
				if _, ok := key.(*rsa.PublicKey); ok {
					return key, nil
				}
			case *jwt.SigningMethodECDSA:
				if _, ok := key.(*ecdsa.PublicKey); ok {
					return key, nil
				}
			case *jwt.SigningMethodEd25519:
				if _, ok := key.(ed25519.PublicKey); ok {
					return key, nil
				}
			}
			return nil, errors.New("algorithm does not match the key")
		},
			jwt.WithValidMethods(methods),
			jwt.WithAudience(a.audience),
			jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(a.now),
			jwt.WithLeeway(30*time.Second),
		)
		if err != nil {
			lastErr = err
			if errors.Is(err, jwt.ErrTokenSignatureInvalid) || errors.Is(err, jwt.ErrTokenUnverifiable) {
				continue
			}
			return "", err
		}
		if !issuerRe.MatchString(claims.Issuer) {
			return "", errors.New("iss must name the storefront (1-64 of A-Z a-z 0-9 . _ -)")
		}
		return claims.Issuer, nil
	}
	return "", lastErr
}

func (a *Authenticator) candidateKeys() []any {
	var out []any
	if len(a.hsKey) > 0 {
		out = append(out, a.hsKey)
	}
	for _, k := range a.pubKeys {
		out = append(out, k)
	}
	return out
}

// IssueToken signs an HS256 storefront token (for development and the demo).
func IssueToken(key []byte, issuer, audience string, ttl time.Duration, now time.Time) (string, error) {
	if !issuerRe.MatchString(issuer) {
		return "", errors.New("issuer must be 1-64 of A-Z a-z 0-9 . _ -")
	}
	claims := jwt.RegisteredClaims{
		Issuer:    issuer,
		Audience:  jwt.ClaimStrings{audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
}
