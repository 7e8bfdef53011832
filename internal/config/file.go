package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v4"

	"github.com/hppd/hppd/events"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/webhook"
)

// The configuration file (HPPD_CONFIG_FILE) holds what does not fit
// environment variables: several Klarna accounts and per-storefront
// settings. It is YAML, decoded strictly: an unknown key, a bad value or an
// unreadable secret file stops start-up with a message naming the key and
// its line.
//
//	env:                      # optional: HPPD_* settings; the environment wins
//	  HPPD_LISTEN: 0.0.0.0:8080
//	klarna_accounts:
//	  - name: eu
//	    region: eu            # eu | na | oc, or base_url: (a simulator, a proxy)
//	    environment: production
//	    username: K123456_abcdef
//	    password_file: /run/secrets/klarna-eu   # or password: (discouraged)
//	    countries: [SE, NO, FI, DK, DE]
//	storefronts:
//	  - name: shop-a
//	    klarna_accounts: [eu, na]               # default: all
//	    jwt_hs256_key_file: /run/secrets/shop-a-jwt
//	    jwt_public_keys_file: /etc/hppd/shop-a-jwt.pem
//	    events: {url: https://shop-a.example/hooks/hppd, secret_file: /run/secrets/shop-a-whsec}
//	    share_tokens_with: [shop-b]             # who else may read and charge its tokens
//	    klarna_share: 0.5                       # of each account's rate (default: no cap)
//
// The HPPD_KLARNA_* variables, when HPPD_KLARNA_USERNAME is set, make one
// more account named "default" (serving every country no other account
// claims unless the file lists none); without a file they are the only one.

// KlarnaAccount is one Klarna account hppd holds credentials for.
type KlarnaAccount struct {
	Name        string
	Region      string // eu, na or oc (ignored with BaseURL)
	Environment string // playground or production
	BaseURL     string
	Username    string
	Password    string
	// PasswordFile is where Password came from ("" when given inline or
	// by HPPD_KLARNA_PASSWORD).
	PasswordFile string
	// Countries are the purchase countries it serves; none: every country
	// no other account of a storefront claims.
	Countries                             []string
	CreateRate, OtherRate, TokenOrderRate float64
	// Source is "env" (the HPPD_KLARNA_* variables) or "file".
	Source string
}

// Storefront is a storefront's section of the configuration file.
type Storefront struct {
	Name string
	// KlarnaAccounts it may use; nil: all.
	KlarnaAccounts []string
	// JWTHS256Keys are the storefront's own HS256 keys (one a line of
	// JWTHS256KeyFile); JWTPublicKeys its PEM public keys. A token whose iss
	// names a storefront with keys of its own verifies only with those.
	JWTHS256Keys      [][]byte
	JWTHS256KeyFile   string
	JWTPublicKeys     []byte
	JWTPublicKeysFile string
	Events            *StorefrontEvents
	// ShareTokensWith are the storefronts that may read and charge the
	// customer tokens this storefront owns (it charged them first).
	ShareTokensWith []string
	// KlarnaShare is the fraction (0 < x <= 1) of each Klarna account's
	// rates its requests may use; 0: no cap of its own.
	KlarnaShare float64
}

// StorefrontEvents is a storefront's event endpoint (what HPPD_EVENTS_FILE
// held).
type StorefrontEvents struct {
	URL        string
	Secret     string
	SecretFile string
}

// The file's layout; yaml.v4 with known fields refuses any other key.
type fileDoc struct {
	Env            map[string]string `yaml:"env"`
	KlarnaAccounts []fileAccount     `yaml:"klarna_accounts"`
	Storefronts    []fileStorefront  `yaml:"storefronts"`
}

type fileAccount struct {
	Name           string   `yaml:"name"`
	Region         string   `yaml:"region"`
	BaseURL        string   `yaml:"base_url"`
	Environment    string   `yaml:"environment"`
	Username       string   `yaml:"username"`
	UsernameFile   string   `yaml:"username_file"`
	Password       string   `yaml:"password"`
	PasswordFile   string   `yaml:"password_file"`
	Countries      []string `yaml:"countries"`
	CreateRate     *float64 `yaml:"create_rate"`
	OtherRate      *float64 `yaml:"other_rate"`
	TokenOrderRate *float64 `yaml:"token_order_rate"`
}

type fileStorefront struct {
	Name              string      `yaml:"name"`
	KlarnaAccounts    []string    `yaml:"klarna_accounts"`
	JWTHS256KeyFile   string      `yaml:"jwt_hs256_key_file"`
	JWTPublicKeysFile string      `yaml:"jwt_public_keys_file"`
	Events            *fileEvents `yaml:"events"`
	ShareTokensWith   []string    `yaml:"share_tokens_with"`
	KlarnaShare       *float64    `yaml:"klarna_share"`
}

type fileEvents struct {
	URL        string `yaml:"url"`
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
}

// The file's patterns are compiled on first use: only a process with a
// configuration file needs them.
var (
	accountNameRe    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`) })
	storefrontNameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`) })
	countryRe        = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Z]{2}$`) })
	yamlLineRe       = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`) })
)

// maxFileBytes bounds the configuration file.
const maxFileBytes = 1 << 20

// configFile is a parsed HPPD_CONFIG_FILE with the positions of its keys.
type configFile struct {
	path string
	doc  fileDoc
	root *yaml.Node
}

// readConfigFile reads and strictly decodes the file at path.
func readConfigFile(path string) (*configFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("HPPD_CONFIG_FILE: cannot read %s: %v", path, errors.Unwrap(err))
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("HPPD_CONFIG_FILE: %s is larger than %d bytes", path, maxFileBytes)
	}
	f := &configFile{path: path}
	var root yaml.Node
	if err := yaml.Load(b, &root); err != nil {
		return nil, fmt.Errorf("HPPD_CONFIG_FILE %s: %s", path, yamlMessage(err))
	}
	f.root = &root
	if len(bytes.TrimSpace(b)) == 0 {
		return f, nil
	}
	if err := yaml.Load(b, &f.doc, yaml.WithKnownFields()); err != nil {
		return nil, fmt.Errorf("HPPD_CONFIG_FILE %s: %s", path, yamlMessage(err))
	}
	if what := f.doc.inlineSecret(); what != "" {
		// A file that holds a secret itself must be as private as a
		// secret file: the *_file keys keep secrets out of it instead.
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("HPPD_CONFIG_FILE: %s holds a secret (%s) and is readable by others (mode %04o): chmod 600 it, or move the secret to a *_file key",
				path, what, st.Mode().Perm())
		}
	}
	return f, nil
}

// inlineSecret names the first secret written in the file itself, "" when
// every secret comes from a file of its own.
func (d *fileDoc) inlineSecret() string {
	for _, k := range []string{"HPPD_KLARNA_PASSWORD", "HPPD_KLARNA_USERNAME", "HPPD_JWT_HS256_KEY"} {
		if d.Env[k] != "" {
			return "env." + k
		}
	}
	for _, a := range d.KlarnaAccounts {
		if a.Password != "" {
			return "klarna_accounts " + a.Name + ": password"
		}
	}
	for _, s := range d.Storefronts {
		if s.Events != nil && s.Events.Secret != "" {
			return "storefronts " + s.Name + ": events.secret"
		}
	}
	return ""
}

// yamlMessage rewords the decoder's errors: "line 7: unknown key foo".
func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	msg = strings.TrimPrefix(msg, "construct errors: ")
	msg = yamlLineRe().ReplaceAllString(msg, "line $1: unknown key $2")
	lines := strings.Split(msg, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}

// line is the line of the value at path (mapping keys and sequence
// indexes) in the file, or of the nearest enclosing node present.
func (f *configFile) line(path ...any) int {
	n := f.root
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == k {
						next = n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				next = n.Content[k]
			}
		}
		if next == nil {
			return n.Line
		}
		n = next
	}
	return n.Line
}

// fileErr is an error about the value at path, naming the file, the line
// and the key.
func (f *configFile) errAt(path []any, format string, args ...any) error {
	var key strings.Builder
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if key.Len() > 0 {
				key.WriteByte('.')
			}
			key.WriteString(k)
		case int:
			key.WriteString("[" + strconv.Itoa(k) + "]")
		}
	}
	return fmt.Errorf("HPPD_CONFIG_FILE %s line %d: %s: %s", f.path, f.line(path...), key.String(), fmt.Sprintf(format, args...))
}

// readSecretFile reads a secret file, without its trailing newline.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %v", path, errors.Unwrap(err))
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// accounts checks the file's klarna_accounts.
func (f *configFile) accounts(errs *[]error) []KlarnaAccount {
	bad := func(path []any, format string, args ...any) { *errs = append(*errs, f.errAt(path, format, args...)) }
	var out []KlarnaAccount
	seen := map[string]bool{}
	for i, fa := range f.doc.KlarnaAccounts {
		at := func(k ...any) []any { return append([]any{"klarna_accounts", i}, k...) }
		a := KlarnaAccount{Name: fa.Name, Region: fa.Region, Environment: fa.Environment, BaseURL: strings.TrimRight(fa.BaseURL, "/"), Source: "file"}
		switch {
		case !accountNameRe().MatchString(a.Name):
			bad(at("name"), "%q must be 1-32 of a-z 0-9 _ - (it is a metric label and a CLI value)", a.Name)
		case seen[a.Name]:
			bad(at("name"), "account %q is listed twice", a.Name)
		}
		seen[a.Name] = true
		if a.Environment == "" {
			a.Environment = "playground"
		}
		if a.Environment != "playground" && a.Environment != "production" {
			bad(at("environment"), "%q must be playground or production", a.Environment)
		}
		switch {
		case a.BaseURL != "" && a.Region != "":
			bad(at("base_url"), "set either region or base_url, not both")
		case a.BaseURL != "":
			if u, err := url.Parse(a.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(at("base_url"), "%q is not an absolute http(s) URL", a.BaseURL)
			}
		case a.Region == "":
			bad(at("region"), "is required (eu, na or oc), or base_url")
		default:
			if _, err := klarna.BaseURLFor(a.Region, "playground"); err != nil {
				bad(at("region"), "%q must be eu, na or oc", a.Region)
			}
		}
		a.Username = fa.Username
		switch {
		case fa.Username != "" && fa.UsernameFile != "":
			bad(at("username_file"), "set either username or username_file, not both")
		case fa.UsernameFile != "":
			v, err := readSecretFile(fa.UsernameFile)
			if err != nil {
				bad(at("username_file"), "%v", err)
			}
			a.Username = v
		}
		if a.Username == "" && fa.UsernameFile == "" {
			bad(at("username"), "is required")
		}
		a.Password, a.PasswordFile = fa.Password, fa.PasswordFile
		switch {
		case fa.Password != "" && fa.PasswordFile != "":
			bad(at("password_file"), "set either password or password_file, not both")
		case fa.PasswordFile != "":
			v, err := readSecretFile(fa.PasswordFile)
			if err != nil {
				bad(at("password_file"), "%v", err)
			} else if v == "" {
				bad(at("password_file"), "%s is empty", fa.PasswordFile)
			}
			a.Password = v
		case fa.Password == "":
			bad(at("password_file"), "is required (or password)")
		}
		cseen := map[string]bool{}
		for j, c := range fa.Countries {
			c = strings.ToUpper(strings.TrimSpace(c))
			if !countryRe().MatchString(c) {
				bad(at("countries", j), "%q is not an ISO 3166-1 alpha-2 country code", fa.Countries[j])
				continue
			}
			if !cseen[c] {
				a.Countries = append(a.Countries, c)
			}
			cseen[c] = true
		}
		create, other, token := klarna.DefaultRates(a.Environment)
		rate := func(v *float64, def float64, key string) float64 {
			if v == nil {
				return def
			}
			if *v <= 0 {
				bad(at(key), "must be a positive number")
			}
			return *v
		}
		a.CreateRate = rate(fa.CreateRate, create, "create_rate")
		a.OtherRate = rate(fa.OtherRate, other, "other_rate")
		a.TokenOrderRate = rate(fa.TokenOrderRate, token, "token_order_rate")
		out = append(out, a)
	}
	return out
}

// storefronts checks the file's storefronts against the accounts.
func (f *configFile) storefronts(accounts []KlarnaAccount, errs *[]error) []Storefront {
	bad := func(path []any, format string, args ...any) { *errs = append(*errs, f.errAt(path, format, args...)) }
	names := make([]string, len(accounts))
	for i, a := range accounts {
		names[i] = a.Name
	}
	var out []Storefront
	seen := map[string]bool{}
	for i, fs := range f.doc.Storefronts {
		at := func(k ...any) []any { return append([]any{"storefronts", i}, k...) }
		s := Storefront{Name: fs.Name, JWTHS256KeyFile: fs.JWTHS256KeyFile, JWTPublicKeysFile: fs.JWTPublicKeysFile}
		switch {
		case !storefrontNameRe().MatchString(s.Name):
			bad(at("name"), "%q must be 1-64 of A-Z a-z 0-9 . _ - (the JWT iss)", s.Name)
		case seen[s.Name]:
			bad(at("name"), "storefront %q is listed twice", s.Name)
		}
		seen[s.Name] = true
		if fs.KlarnaAccounts != nil {
			s.KlarnaAccounts = []string{}
			if len(fs.KlarnaAccounts) == 0 {
				bad(at("klarna_accounts"), "is empty: leave it out to allow every account")
			}
		}
		for j, n := range fs.KlarnaAccounts {
			if !slices.Contains(names, n) {
				bad(at("klarna_accounts", j), "%q is not an account (accounts: %s)", n, strings.Join(names, ", "))
				continue
			}
			s.KlarnaAccounts = append(s.KlarnaAccounts, n)
		}
		if p := fs.JWTHS256KeyFile; p != "" {
			v, err := readSecretFile(p)
			if err != nil {
				bad(at("jwt_hs256_key_file"), "%v", err)
			}
			keys, kerr := hs256Keys(v)
			if kerr != nil {
				bad(at("jwt_hs256_key_file"), "%v", kerr)
			}
			s.JWTHS256Keys = keys
			if err == nil && kerr == nil && len(s.JWTHS256Keys) == 0 {
				bad(at("jwt_hs256_key_file"), "%s holds no key", p)
			}
		}
		if p := fs.JWTPublicKeysFile; p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				bad(at("jwt_public_keys_file"), "cannot read %s: %v", p, errors.Unwrap(err))
			} else if _, err := webhook.ParsePublicKeys(b); err != nil {
				bad(at("jwt_public_keys_file"), "%s: %v", p, err)
			}
			s.JWTPublicKeys = b
		}
		if v := fs.KlarnaShare; v != nil {
			if !(*v > 0 && *v <= 1) {
				bad(at("klarna_share"), "must be a fraction 0 < x <= 1 of each account's rate")
			} else {
				s.KlarnaShare = *v
			}
		}
		for j, n := range fs.ShareTokensWith {
			switch {
			case !storefrontNameRe().MatchString(n):
				bad(at("share_tokens_with", j), "%q is not a storefront name (1-64 of A-Z a-z 0-9 . _ -)", n)
			case n == s.Name:
				bad(at("share_tokens_with", j), "a storefront always uses its own tokens")
			default:
				s.ShareTokensWith = append(s.ShareTokensWith, n)
			}
		}
		if e := fs.Events; e != nil {
			ev := &StorefrontEvents{URL: e.URL, Secret: e.Secret, SecretFile: e.SecretFile}
			if ev.URL == "" {
				bad(at("events", "url"), "is required")
			}
			switch {
			case e.Secret != "" && e.SecretFile != "":
				bad(at("events", "secret_file"), "set either secret or secret_file, not both")
			case e.SecretFile != "":
				v, err := readSecretFile(e.SecretFile)
				if err != nil {
					bad(at("events", "secret_file"), "%v", err)
				}
				ev.Secret = v
			case e.Secret == "":
				bad(at("events", "secret_file"), "is required (or secret)")
			}
			if ev.URL != "" && ev.Secret != "" {
				// The same checks as HPPD_EVENTS_FILE's, here so that the
				// error names the line.
				if _, err := events.NewConfig(map[string]events.Endpoint{"x": {URL: ev.URL, Secret: ev.Secret}}); err != nil {
					key := "url"
					if strings.Contains(err.Error(), ".secret") {
						key = "secret"
						if e.SecretFile != "" {
							key = "secret_file"
						}
					}
					_, msg, _ := strings.Cut(err.Error(), ": ")
					bad(at("events", key), "%s", msg)
				}
			}
			s.Events = ev
		}
		out = append(out, s)
	}
	return out
}

// hs256Keys splits a jwt_hs256_key_file into its keys, one a line (blank
// lines skipped; "kid=<id> <key>" gives a key its kid).
func hs256Keys(v string) ([][]byte, error) {
	var out [][]byte
	for _, k := range strings.Split(v, "\n") {
		if k = strings.TrimRight(k, "\r"); k == "" {
			continue
		}
		if _, after, ok := strings.Cut(k, " "); strings.HasPrefix(k, "kid=") && ok {
			if len(after) < 32 {
				return nil, errors.New("every key (one a line) must be at least 32 bytes")
			}
		} else if len(k) < 32 {
			return nil, errors.New("every key (one a line) must be at least 32 bytes")
		}
		out = append(out, []byte(k))
	}
	return out, nil
}

// ReadStorefrontKeys reads a storefront's key files again (a reload on
// SIGHUP): its HS256 keys and PEM public keys, with the checks of start-up.
// A storefront without key files has none.
func ReadStorefrontKeys(s Storefront) (hs [][]byte, publicPEM []byte, err error) {
	if p := s.JWTHS256KeyFile; p != "" {
		v, err := readSecretFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("storefront %s: jwt_hs256_key_file: %v", s.Name, err)
		}
		if hs, err = hs256Keys(v); err != nil {
			return nil, nil, fmt.Errorf("storefront %s: jwt_hs256_key_file %s: %v", s.Name, p, err)
		}
		if len(hs) == 0 {
			return nil, nil, fmt.Errorf("storefront %s: jwt_hs256_key_file: %s holds no key", s.Name, p)
		}
	}
	if p := s.JWTPublicKeysFile; p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("storefront %s: jwt_public_keys_file: cannot read %s: %v", s.Name, p, errors.Unwrap(err))
		}
		if _, err := webhook.ParsePublicKeys(b); err != nil {
			return nil, nil, fmt.Errorf("storefront %s: jwt_public_keys_file %s: %v", s.Name, p, err)
		}
		publicPEM = b
	}
	return hs, publicPEM, nil
}

// checkRouting refuses a storefront for which two accounts claim one
// country, or two accounts claim none (both would serve the rest). The
// storefronts not in the file may use every account.
func checkRouting(accounts []KlarnaAccount, storefronts []Storefront, f *configFile, errs *[]error) {
	check := func(who string, path []any, allowed []string) {
		claim := map[string]string{}
		catchAll := ""
		for _, a := range accounts {
			if allowed != nil && !slices.Contains(allowed, a.Name) {
				continue
			}
			if len(a.Countries) == 0 {
				if catchAll != "" {
					*errs = append(*errs, routingErr(f, path, "accounts %s and %s both list no countries (each would serve every country no account claims) for %s", catchAll, a.Name, who))
				}
				catchAll = a.Name
			}
			for _, c := range a.Countries {
				if other, ok := claim[c]; ok {
					*errs = append(*errs, routingErr(f, path, "accounts %s and %s both claim %s for %s", other, a.Name, c, who))
				}
				claim[c] = a.Name
			}
		}
	}
	check("the storefronts not listed under storefronts (they may use every account)", []any{"klarna_accounts"}, nil)
	for i, s := range storefronts {
		if s.KlarnaAccounts != nil {
			check("storefront "+s.Name, []any{"storefronts", i, "klarna_accounts"}, s.KlarnaAccounts)
		}
	}
}

func routingErr(f *configFile, path []any, format string, args ...any) error {
	if f == nil {
		return fmt.Errorf("klarna accounts: %s", fmt.Sprintf(format, args...))
	}
	return f.errAt(path, format, args...)
}

// withFile returns getenv with the file's env section behind it: a setting
// the environment gives (as NAME or NAME_FILE) comes from the environment
// only, else from the file. sources says where each variable came from.
func withFile(getenv func(string) string, f *configFile, errs *[]error) (func(string) string, map[string]string) {
	known := make(map[string]bool, len(Vars))
	for _, v := range Vars {
		known[v.Name] = true
	}
	// setting is the variable a NAME_FILE variant belongs to.
	setting := func(name string) string {
		if base, ok := strings.CutSuffix(name, "_FILE"); ok && known[base] {
			return base
		}
		return name
	}
	envHas := func(name string) bool {
		name = setting(name)
		return strings.TrimSpace(getenv(name)) != "" || strings.TrimSpace(getenv(name+"_FILE")) != ""
	}
	var fileEnv map[string]string
	if f != nil {
		fileEnv = f.doc.Env
		for _, k := range SortedKeys(fileEnv) {
			switch {
			case k == "HPPD_CONFIG_FILE":
				*errs = append(*errs, f.errAt([]any{"env", k}, "names the file itself; set it in the environment"))
			case !known[setting(k)]:
				*errs = append(*errs, f.errAt([]any{"env", k}, "unknown key: not an HPPD_* variable"))
			case k != setting(k) && !slices.ContainsFunc(Vars, func(v Var) bool { return v.Name == setting(k) && v.Secret }):
				*errs = append(*errs, f.errAt([]any{"env", k}, "unknown key: %s has no _FILE variant", setting(k)))
			}
		}
	}
	sources := make(map[string]string, len(Vars))
	for _, v := range Vars {
		switch {
		case envHas(v.Name):
			sources[v.Name] = "env"
		case fileEnv[v.Name] != "" || fileEnv[v.Name+"_FILE"] != "":
			sources[v.Name] = "file"
		default:
			sources[v.Name] = "default"
		}
	}
	return func(name string) string {
		if envHas(name) || fileEnv == nil {
			return getenv(name)
		}
		return fileEnv[name]
	}, sources
}

// accountsAndStorefronts builds c.Accounts (the HPPD_KLARNA_* account first,
// when HPPD_KLARNA_USERNAME is set) and c.Storefronts, and checks routing.
func (c *Config) accountsAndStorefronts(f *configFile, errs *[]error) {
	if c.KlarnaUsername != "" {
		c.Accounts = append(c.Accounts, KlarnaAccount{
			Name: "default", Region: c.KlarnaRegion, Environment: c.KlarnaEnv, BaseURL: c.KlarnaBaseURL,
			Username: c.KlarnaUsername, Password: c.KlarnaPassword,
			CreateRate: c.KlarnaCreateRate, OtherRate: c.KlarnaOtherRate, TokenOrderRate: c.KlarnaTokenOrderRate,
			Source: "env",
		})
	}
	if f == nil {
		return
	}
	for i, a := range f.accounts(errs) {
		if a.Name == "default" && c.KlarnaUsername != "" {
			*errs = append(*errs, f.errAt([]any{"klarna_accounts", i, "name"}, "default is the account the HPPD_KLARNA_* variables make; name this one otherwise or unset HPPD_KLARNA_USERNAME"))
		}
		c.Accounts = append(c.Accounts, a)
	}
	c.Storefronts = f.storefronts(c.Accounts, errs)
	checkRouting(c.Accounts, c.Storefronts, f, errs)
}

// storefrontKeys reports whether some storefront has JWT keys of its own.
func (c *Config) storefrontKeys() bool {
	return slices.ContainsFunc(c.Storefronts, func(s Storefront) bool {
		return len(s.JWTHS256Keys) > 0 || len(s.JWTPublicKeys) > 0
	})
}

// production reports whether some Klarna account is a production one.
func (c *Config) production() bool {
	if len(c.Accounts) == 0 {
		return c.KlarnaEnv == "production"
	}
	return slices.ContainsFunc(c.Accounts, func(a KlarnaAccount) bool { return a.Environment == "production" })
}

// StorefrontShares maps each storefront with a klarna_share to it
// (hpp.Config.StorefrontShares).
func (c *Config) StorefrontShares() map[string]float64 {
	out := map[string]float64{}
	for _, s := range c.Storefronts {
		if s.KlarnaShare > 0 {
			out[s.Name] = s.KlarnaShare
		}
	}
	return out
}

// TokenSharing maps each storefront that shares its customer tokens to the
// storefronts it shares them with (hpp.Config.TokenSharing).
func (c *Config) TokenSharing() map[string][]string {
	out := map[string][]string{}
	for _, s := range c.Storefronts {
		if len(s.ShareTokensWith) > 0 {
			out[s.Name] = s.ShareTokensWith
		}
	}
	return out
}

// StorefrontAccounts maps each storefront limited to some accounts to
// their names (hpp.Config.StorefrontAccounts).
func (c *Config) StorefrontAccounts() map[string][]string {
	out := map[string][]string{}
	for _, s := range c.Storefronts {
		if s.KlarnaAccounts != nil {
			out[s.Name] = s.KlarnaAccounts
		}
	}
	return out
}

// ReadGlobalKeys reads the global HPPD_JWT_* keys again (a reload on
// SIGHUP) with the checks of start-up: the HS256 key from
// HPPD_JWT_HS256_KEY_FILE and the PEM public keys from
// HPPD_JWT_PUBLIC_KEYS_FILE. A key given literally in the environment
// cannot change without a restart and is returned as it is. An error names
// the variable and the file.
func ReadGlobalKeys(c *Config) (hs []byte, publicPEM []byte, err error) {
	hs, publicPEM = c.JWTHS256Key, c.JWTPublicKeys
	if p := c.JWTHS256KeyFile; p != "" {
		v, err := readSecretFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("HPPD_JWT_HS256_KEY_FILE: %v", err)
		}
		if len(v) < 32 {
			return nil, nil, fmt.Errorf("HPPD_JWT_HS256_KEY_FILE %s: the key must be at least 32 bytes", p)
		}
		if err := webhook.CheckKeys(webhook.Keys{HS256: [][]byte{[]byte(v)}}); err != nil {
			return nil, nil, fmt.Errorf("HPPD_JWT_HS256_KEY_FILE %s: %v", p, err)
		}
		hs = []byte(v)
	}
	if p := c.JWTPublicKeysFile; p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("HPPD_JWT_PUBLIC_KEYS_FILE: cannot read %s: %v", p, errors.Unwrap(err))
		}
		if _, err := webhook.ParsePublicKeys(b); err != nil {
			return nil, nil, fmt.Errorf("HPPD_JWT_PUBLIC_KEYS_FILE %s: %v", p, err)
		}
		publicPEM = b
	}
	return hs, publicPEM, nil
}
