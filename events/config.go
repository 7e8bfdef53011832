package events

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// SecretPrefix starts every endpoint secret (the Standard Webhooks
// serialization of a symmetric key: "whsec_" + base64 of the key bytes).
const SecretPrefix = "whsec_"

// Bounds of an endpoint secret's key, in bytes (Standard Webhooks: at least 192
// bits, at most 512).
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// maxConfigBytes bounds the configuration file.
const maxConfigBytes = 1 << 20

// storefrontName is the charset of storefront names (the JWT iss claim).
var storefrontName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`) })

// redacted is how a secret is shown anywhere it could be printed.
const redacted = "<redacted>"

// key is an endpoint's decoded HMAC key. It formats as "<redacted>" so that no
// %v of a Config or an endpoint can print it.
type key []byte

func (key) String() string   { return redacted }
func (key) GoString() string { return redacted }

// endpoint is one storefront's receiver.
type endpoint struct {
	url  *url.URL
	host string // for logs: never the full URL (its query may carry a token)
	key  key
}

// Config maps storefront names to their event endpoints. It is immutable once
// parsed and safe for concurrent use. The zero value and nil have no
// storefronts: nothing is emitted.
type Config struct {
	endpoints map[string]endpoint
}

// fileFormat is the JSON layout of the configuration file; each storefront's
// entry is decoded on its own so that errors can name the storefront.
type fileFormat struct {
	Storefronts map[string]json.RawMessage `json:"storefronts"`
}

// endpointFormat is one storefront's entry.
type endpointFormat struct {
	URL    *string `json:"url"`
	Secret *string `json:"secret"`
}

// LoadFile reads and validates the configuration file at path (the value of
// HPPD_EVENTS_FILE). Errors name the file and the offending field, never a
// secret.
func LoadFile(path string) (*Config, error) {
	if path == "" {
		return nil, errors.New("events config: empty path")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("events config: %w", err)
	}
	defer f.Close()
	// The file holds signing secrets: one that other users can read (or
	// change) is refused, not used.
	if fi, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("events config %s: %w", path, err)
	} else if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("events config %s: mode %04o lets other users read or change its secrets; chmod 600 it (owned by hppd's user)", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("events config %s: %w", path, err)
	}
	if len(b) > maxConfigBytes {
		return nil, fmt.Errorf("events config %s: larger than %d bytes", path, maxConfigBytes)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses and validates a configuration document:
//
//	{"storefronts": {"<name>": {"url": "https://…", "secret": "whsec_<base64>"}}}
//
// Names match ^[A-Za-z0-9._-]{1,64}$ (the storefront's JWT iss). A URL is an
// absolute http or https URL with a host, no user info and no fragment. A
// secret is "whsec_" followed by the standard (padded) base64 of 24 to 64
// bytes. Unknown fields are refused, so a misspelt key is an error rather
// than a storefront that silently gets no events.
func ParseConfig(data []byte) (*Config, error) {
	var ff fileFormat
	if err := decodeStrict(data, &ff); err != nil {
		return nil, fmt.Errorf("events config: %w", err)
	}
	cfg := &Config{endpoints: make(map[string]endpoint, len(ff.Storefronts))}
	for _, name := range sortedKeys(ff.Storefronts) {
		field := fmt.Sprintf("storefronts[%q]", name)
		if !storefrontName().MatchString(name) {
			return nil, fmt.Errorf("events config: %s: name must match %s", field, storefrontName())
		}
		var e endpointFormat
		if err := decodeStrict(ff.Storefronts[name], &e); err != nil {
			return nil, fmt.Errorf("events config: %s: %w", field, err)
		}
		if e.URL == nil {
			return nil, fmt.Errorf("events config: %s.url: is required", field)
		}
		u, err := parseURL(*e.URL)
		if err != nil {
			return nil, fmt.Errorf("events config: %s.url: %w", field, err)
		}
		if e.Secret == nil {
			return nil, fmt.Errorf("events config: %s.secret: is required", field)
		}
		k, err := decodeSecret(*e.Secret)
		if err != nil {
			return nil, fmt.Errorf("events config: %s.secret: %w", field, err)
		}
		if len(k) < MinSecretBytes || len(k) > MaxSecretBytes {
			return nil, fmt.Errorf("events config: %s.secret: must encode %d to %d bytes, not %d", field, MinSecretBytes, MaxSecretBytes, len(k))
		}
		cfg.endpoints[name] = endpoint{url: u, host: u.Host, key: k}
	}
	return cfg, nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// trailing data. Its errors give a position or a field name only: a syntax
// error's own message quotes the offending character, which may belong to a
// secret.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return errors.New("empty document")
		case errors.As(err, &se):
			return fmt.Errorf("invalid JSON at byte %d", se.Offset)
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				return fmt.Errorf("must be a JSON object")
			}
			return fmt.Errorf("%s: must be a JSON %s", field, jsonKind(te.Type.Kind()))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return errors.New(strings.TrimPrefix(err.Error(), "json: "))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("truncated JSON")
		}
		return errors.New("invalid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// jsonKind names what a Go kind is in JSON.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Bool:
		return "boolean"
	}
	return "number"
}

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("is not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("must be an absolute http or https URL")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("has no host")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		// Events carry purchase details and their signature: over plain
		// http anyone on the path reads them (and may replay them).
		return nil, errors.New("must be https (http only to a loopback host)")
	case u.User != nil:
		return nil, errors.New("must not carry user info (put credentials nowhere: events are signed)")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("must not have a fragment")
	}
	return u, nil
}

// decodeSecret returns the key bytes of a "whsec_" secret. Its errors never
// quote the secret.
func decodeSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("must start with %q", SecretPrefix)
	}
	k, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("must be %q followed by standard base64", SecretPrefix)
	}
	return k, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Storefronts returns the configured storefront names, sorted.
func (c *Config) Storefronts() []string {
	if c == nil {
		return nil
	}
	return sortedKeys(c.endpoints)
}

// Enabled reports whether storefront has an endpoint (and so gets events).
func (c *Config) Enabled(storefront string) bool {
	_, ok := c.endpoint(storefront)
	return ok
}

func (c *Config) endpoint(storefront string) (endpoint, bool) {
	if c == nil {
		return endpoint{}, false
	}
	e, ok := c.endpoints[storefront]
	return e, ok
}

// String lists the storefronts and their endpoint hosts; secrets show as
// "<redacted>". It is what %v of a Config prints.
func (c Config) String() string {
	if len(c.endpoints) == 0 {
		return "events: no storefronts"
	}
	var b strings.Builder
	b.WriteString("events:")
	for _, name := range c.Storefronts() {
		fmt.Fprintf(&b, " %s=%s(secret %s)", name, c.endpoints[name].host, redacted)
	}
	return b.String()
}

// GoString is String, so that %#v redacts too.
func (c Config) GoString() string { return c.String() }

// Endpoint is one storefront's event receiver as the storefronts section of
// HPPD_CONFIG_FILE gives it.
type Endpoint struct {
	URL, Secret string
}

// NewConfig validates endpoints (storefront name → endpoint) as
// ParseConfig validates the file's entries. Errors name the storefront and
// the field, never a secret.
func NewConfig(endpoints map[string]Endpoint) (*Config, error) {
	cfg := &Config{endpoints: make(map[string]endpoint, len(endpoints))}
	for _, name := range sortedKeys(endpoints) {
		e := endpoints[name]
		field := fmt.Sprintf("storefronts[%q].events", name)
		if !storefrontName().MatchString(name) {
			return nil, fmt.Errorf("%s: name must match %s", field, storefrontName())
		}
		u, err := parseURL(e.URL)
		if err != nil {
			return nil, fmt.Errorf("%s.url: %w", field, err)
		}
		k, err := decodeSecret(e.Secret)
		if err != nil {
			return nil, fmt.Errorf("%s.secret: %w", field, err)
		}
		if len(k) < MinSecretBytes || len(k) > MaxSecretBytes {
			return nil, fmt.Errorf("%s.secret: must encode %d to %d bytes, not %d", field, MinSecretBytes, MaxSecretBytes, len(k))
		}
		cfg.endpoints[name] = endpoint{url: u, host: u.Host, key: k}
	}
	return cfg, nil
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
