package webhook

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// keySet is one storefront's own JWT keys and the algorithms they allow.
type keySet struct {
	hs      [][]byte
	pub     []crypto.PublicKey
	methods []string
}

func (k *keySet) candidates() []any {
	out := make([]any, 0, len(k.hs)+len(k.pub))
	for _, h := range k.hs {
		out = append(out, h)
	}
	for _, p := range k.pub {
		out = append(out, p)
	}
	return out
}

// NewStorefrontAuthenticator returns an Authenticator without global keys:
// only storefronts given keys with SetStorefrontKeys are accepted.
func NewStorefrontAuthenticator(audience string, now func() time.Time) (*Authenticator, error) {
	if audience == "" {
		return nil, errors.New("JWT audience must not be empty")
	}
	if now == nil {
		now = time.Now
	}
	return &Authenticator{audience: audience, now: now}, nil
}

// SetStorefrontKeys gives storefront keys of its own: HS256 keys (each at
// least 32 bytes, several for rotation) and/or PEM public keys. A token
// whose iss names the storefront then verifies only with these keys, never
// with the global ones. Call it before the Authenticator is used.
func (a *Authenticator) SetStorefrontKeys(storefront string, hsKeys [][]byte, publicPEM []byte) error {
	if !issuerRe.MatchString(storefront) {
		return errors.New("storefront name must be 1-64 of A-Z a-z 0-9 . _ -")
	}
	ks := &keySet{}
	for _, k := range hsKeys {
		if len(k) < 32 {
			return errors.New("HS256 key must be at least 32 bytes")
		}
		ks.hs = append(ks.hs, k)
	}
	if len(ks.hs) > 0 {
		ks.methods = append(ks.methods, "HS256")
	}
	if len(publicPEM) > 0 {
		keys, err := ParsePublicKeys(publicPEM)
		if err != nil {
			return err
		}
		ks.pub = keys
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
				ks.methods = append(ks.methods, m)
			}
		}
	}
	if len(ks.methods) == 0 {
		return errors.New("no JWT key given")
	}
	if a.storefronts == nil {
		a.storefronts = map[string]*keySet{}
	}
	a.storefronts[storefront] = ks
	return nil
}

// storefrontKeys returns the own keys of the storefront the token's iss
// names, if it has any. The iss is read before the signature is checked
// only to pick the keys; the token is then verified with them alone.
func (a *Authenticator) storefrontKeys(token string) (*keySet, bool) {
	if len(a.storefronts) == 0 {
		return nil, false
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &claims); err != nil {
		return nil, false
	}
	ks, ok := a.storefronts[claims.Issuer]
	return ks, ok
}
