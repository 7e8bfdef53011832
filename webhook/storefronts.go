package webhook

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
)

// jwtKey is one verification key: an HS256 secret ([]byte) or a public key,
// the one algorithm it verifies, and its kid ("" when it has none).
type jwtKey struct {
	key any
	alg string
	kid string
}

// keySet is the global keys, or one storefront's own.
type keySet struct {
	keys []jwtKey
}

// newKeySet checks HS256 keys (each at least 32 bytes, optionally written
// "kid=<id> <key>") and PEM public keys (a "kid" PEM header names one).
func newKeySet(hsKeys [][]byte, publicPEM []byte) (*keySet, error) {
	ks := &keySet{}
	for _, k := range hsKeys {
		kid, secret := splitKID(k)
		if kid != "" && !kidOK(kid) {
			return nil, errors.New("a kid must be 1-128 of A-Z a-z 0-9 . _ : -")
		}
		if len(secret) < 32 {
			return nil, errors.New("HS256 key must be at least 32 bytes")
		}
		ks.keys = append(ks.keys, jwtKey{key: secret, alg: "HS256", kid: kid})
	}
	if len(publicPEM) > 0 {
		pub, err := parsePublicKeys(publicPEM)
		if err != nil {
			return nil, err
		}
		ks.keys = append(ks.keys, pub...)
	}
	seen := map[string]bool{}
	for _, k := range ks.keys {
		if k.kid == "" {
			continue
		}
		if seen[k.kid] {
			return nil, fmt.Errorf("kid %q names two keys", k.kid)
		}
		seen[k.kid] = true
	}
	return ks, nil
}

// splitKID reads an HS256 key line: "kid=<id> <key>" names the key's kid,
// anything else is the key itself.
func splitKID(line []byte) (kid string, key []byte) {
	s := string(line)
	if rest, ok := strings.CutPrefix(s, "kid="); ok {
		if id, k, ok := strings.Cut(rest, " "); ok {
			return id, []byte(k)
		}
	}
	return "", line
}

// pick returns the keys a token of alg and header kid may verify with: the
// key of that kid, or (no kid) every key of alg. An unknown kid, or a kid
// naming a key of another algorithm, is refused.
func (k *keySet) pick(alg string, kidHeader any) ([]jwtKey, error) {
	if kidHeader != nil {
		kid, ok := kidHeader.(string)
		if !ok || kid == "" {
			return nil, errors.New("kid must be a non-empty string")
		}
		for _, key := range k.keys {
			if key.kid == kid {
				if key.alg != alg {
					return nil, errors.New("the token's alg is not the algorithm of the key its kid names")
				}
				return []jwtKey{key}, nil
			}
		}
		return nil, errors.New("unknown kid: no key of this storefront has it")
	}
	var out []jwtKey
	for _, key := range k.keys {
		if key.alg == alg {
			out = append(out, key)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("signing method (alg) is invalid: no key of this storefront verifies it")
	}
	return out, nil
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
	a := &Authenticator{audience: audience, now: now}
	a.maxLifetime.Store(int64(DefaultMaxLifetime))
	a.keys.Store(&keyring{global: &keySet{}})
	return a, nil
}

// Keys are one set of verification keys: HS256 keys (each at least 32
// bytes, "kid=<id> <key>" to give one a kid) and/or a PEM file of public
// keys (a "kid: <id>" PEM header gives one).
type Keys struct {
	HS256     [][]byte
	PublicPEM []byte
}

// CheckKeys reports whether k is a valid set of keys (the checks of
// start-up), without using it.
func CheckKeys(k Keys) error {
	_, err := newKeySet(k.HS256, k.PublicPEM)
	return err
}

// StorefrontKeys are one storefront's own keys (one HS256 key a line of its
// key file).
type StorefrontKeys = Keys

// SetStorefrontKeys gives storefront keys of its own: HS256 keys (each at
// least 32 bytes, several for rotation) and/or PEM public keys. A token
// whose iss names the storefront then verifies only with these keys, never
// with the global ones.
func (a *Authenticator) SetStorefrontKeys(storefront string, hsKeys [][]byte, publicPEM []byte) error {
	ks, err := storefrontKeySet(storefront, StorefrontKeys{HS256: hsKeys, PublicPEM: publicPEM})
	if err != nil {
		return err
	}
	cur := a.keys.Load()
	next := &keyring{global: cur.global, storefronts: make(map[string]*keySet, len(cur.storefronts)+1)}
	maps.Copy(next.storefronts, cur.storefronts)
	next.storefronts[storefront] = ks
	a.keys.Store(next)
	return nil
}

// ReplaceStorefrontKeys replaces every storefront's own keys at once (a
// reload of the key files) and keeps the global keys: either all of keys
// are valid and take effect together, or nothing changes and the error
// names the storefront.
func (a *Authenticator) ReplaceStorefrontKeys(keys map[string]StorefrontKeys) error {
	storefronts, err := storefrontKeySets(keys)
	if err != nil {
		return err
	}
	a.keys.Store(&keyring{global: a.keys.Load().global, storefronts: storefronts})
	return nil
}

// ReplaceKeys replaces the global keys and every storefront's own keys in
// one step (SIGHUP): either every set is valid and all take effect
// together, or nothing changes. Global keys that hold no key leave hppd
// without global keys, as at start-up without HPPD_JWT_*.
func (a *Authenticator) ReplaceKeys(global Keys, storefronts map[string]StorefrontKeys) error {
	g, err := newKeySet(global.HS256, global.PublicPEM)
	if err != nil {
		return fmt.Errorf("global keys: %w", err)
	}
	sf, err := storefrontKeySets(storefronts)
	if err != nil {
		return err
	}
	a.keys.Store(&keyring{global: g, storefronts: sf})
	return nil
}

func storefrontKeySets(keys map[string]StorefrontKeys) (map[string]*keySet, error) {
	out := make(map[string]*keySet, len(keys))
	for name, k := range keys {
		ks, err := storefrontKeySet(name, k)
		if err != nil {
			return nil, fmt.Errorf("storefront %s: %w", name, err)
		}
		out[name] = ks
	}
	return out, nil
}

func storefrontKeySet(storefront string, k StorefrontKeys) (*keySet, error) {
	if !issuerOK(storefront) {
		return nil, errors.New("storefront name must be 1-64 of A-Z a-z 0-9 . _ -")
	}
	ks, err := newKeySet(k.HS256, k.PublicPEM)
	if err != nil {
		return nil, err
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("no JWT key given")
	}
	return ks, nil
}
