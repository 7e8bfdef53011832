// Package config reads hppd's configuration from environment variables (the
// contract users, the README and deploy/ rely on). Secrets may come from files
// through the *_FILE variants. Invalid configuration is an error naming the
// variable; secrets never appear in errors or in Redacted.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/poller"
)

// Config is hppd's effective configuration.
type Config struct {
	Listen    string
	PublicURL string
	DB        string
	// Database is HPPD_DATABASE_URL: when set, the store is PostgreSQL
	// (store/pgstore) instead of the bbolt file at DB.
	Database                 string
	DatabaseMaxConns         int
	DatabaseConnectTimeout   time.Duration
	DatabaseStatementTimeout time.Duration
	KlarnaRegion             string
	KlarnaEnv                string
	KlarnaBaseURL            string
	KlarnaUsername           string
	KlarnaPassword           string
	KlarnaTimeout            time.Duration
	KlarnaCreateRate         float64
	KlarnaOtherRate          float64
	KlarnaTokenOrderRate     float64
	JWTHS256Key              []byte
	JWTHS256KeyFile          string // HPPD_JWT_HS256_KEY_FILE ("" for a literal key); SIGHUP re-reads it
	JWTPublicKeys            []byte
	JWTPublicKeysFile        string
	JWTAudience              string
	JWTMaxLifetime           time.Duration
	PollSchedule             string
	StaleAfter               time.Duration
	ExpiryMargin             time.Duration
	PlaceOrderMode           string
	ChargeRetrySchedule      []time.Duration
	LogLevel                 string
	LogFormat                string
	ShutdownTimeout          time.Duration
	LeaseTTL                 time.Duration
	EventsFile               string
	AdminSocket              string
	IdempotencyTTL           time.Duration
	Retention                time.Duration
	// StaleSchedule is HPPD_STALE_AFTER: the gaps between routine re-reads
	// of a session with no news, the last one repeating. StaleAfter is its
	// first gap.
	StaleSchedule []time.Duration
	// RereadShare is the share of KlarnaOtherRate routine re-reads may use.
	RereadShare float64
	// MetricsListen is the address of the /metrics listener, apart from
	// the public one ("" when HPPD_METRICS_LISTEN is off).
	MetricsListen string
	// MaxConnections caps the public listener's open connections; further
	// ones wait in the kernel's backlog. IdleTimeout ends a keep-alive
	// connection with no request; ReadHeaderTimeout a request whose
	// headers do not arrive.
	MaxConnections    int
	IdleTimeout       time.Duration
	ReadHeaderTimeout time.Duration

	// ConfigFile is HPPD_CONFIG_FILE (file.go); Accounts are the Klarna
	// accounts, the HPPD_KLARNA_* one ("default") first when it is set;
	// Storefronts the file's storefronts section.
	ConfigFile  string
	Accounts    []KlarnaAccount
	Storefronts []Storefront
	// Sources says where each variable's value came from: "default",
	// "env" or "file".
	Sources map[string]string
}

// Var describes one environment variable.
type Var struct {
	Name, Default, Meaning string
	Secret                 bool
}

// Vars lists every variable, for `hppd config` and the README.
var Vars = []Var{
	{"HPPD_CONFIG_FILE", "", "YAML file of Klarna accounts, storefronts and HPPD_* settings (README: The configuration file); environment variables win over it", false},
	{"HPPD_LISTEN", "127.0.0.1:8080", "address to listen on", false},
	{"HPPD_PUBLIC_URL", "http:// + listen address", "base URL at which Klarna and shoppers reach hppd; used to build merchant_urls; required and https:// in production", false},
	{"HPPD_DB", "data/hppd.db", "bbolt data file", false},
	{"HPPD_DATABASE_URL", "", "PostgreSQL URL (postgres://user:password@host/db); when set, hppd keeps everything there instead of HPPD_DB and several replicas may share it (README: High availability; _FILE variant)", true},
	{"HPPD_DATABASE_MAX_CONNS", "16", "most connections to HPPD_DATABASE_URL this process holds", false},
	{"HPPD_DATABASE_CONNECT_TIMEOUT", "5s", "bound of connecting to HPPD_DATABASE_URL", false},
	{"HPPD_DATABASE_STATEMENT_TIMEOUT", "10s", "PostgreSQL statement_timeout of hppd's statements", false},
	{"HPPD_KLARNA_REGION", "eu", "eu, na or oc", false},
	{"HPPD_KLARNA_ENV", "playground", "playground or production", false},
	{"HPPD_KLARNA_BASE_URL", "", "overrides region/env (e.g. the simulator)", false},
	{"HPPD_KLARNA_USERNAME", "", "Klarna API username (required; _FILE variant)", true},
	{"HPPD_KLARNA_PASSWORD", "", "Klarna API password (required; _FILE variant)", true},
	{"HPPD_KLARNA_TIMEOUT", "30s", "timeout of one Klarna call", false},
	{"HPPD_KLARNA_CREATE_RATE", "5 (playground), 40 (production)", "session creations per second, for KP and HPP session creation each (Klarna's limit for HPPD_KLARNA_ENV)", false},
	{"HPPD_KLARNA_OTHER_RATE", "50 (playground), 200 (production)", "other Klarna calls per second (Klarna's limit for HPPD_KLARNA_ENV)", false},
	{"HPPD_KLARNA_TOKEN_ORDER_RATE", "5 (playground), 40 (production)", "customer token orders per second; they count towards HPPD_KLARNA_OTHER_RATE too", false},
	{"HPPD_JWT_HS256_KEY", "", "HS256 key for storefront JWTs, at least 32 bytes (_FILE variant)", true},
	{"HPPD_JWT_PUBLIC_KEYS_FILE", "", "PEM file of RS256/ES256/EdDSA public keys for storefront JWTs", false},
	{"HPPD_JWT_AUDIENCE", "hppd", "required aud claim: a token's aud is this value (a string, or an array of this one value)", false},
	{"HPPD_JWT_MAX_LIFETIME", "24h", "longest lifetime (exp - iat) of a storefront JWT; iat is required", false},
	{"HPPD_POLL_SCHEDULE", "@every 30s", "cron spec of the poller", false},
	{"HPPD_STALE_AFTER", "1m,2m,5m,10m,20m", "gaps between the routine re-reads from Klarna of a non-final session with no news, the last one repeating (a single duration: every time); a callback or redirect starts the list again", false},
	{"HPPD_REREAD_SHARE", "0.5", "share (0 < x <= 1) of HPPD_KLARNA_OTHER_RATE that routine re-reads may use; placements, charges and confirming reads go first", false},
	{"HPPD_EXPIRY_MARGIN", "10m", "a session still pending this long before it expires is disabled and marked expired", false},
	{"HPPD_PLACE_ORDER_MODE", "NONE", "default place_order_mode for new sessions", false},
	{"HPPD_CHARGE_RETRY_SCHEDULE", "1h,6h,24h", "delays of the retries of a declined token charge with the customer absent", false},
	{"HPPD_LOG_LEVEL", "info", "debug, info, warn or error", false},
	{"HPPD_LOG_FORMAT", "json", "json or text", false},
	{"HPPD_SHUTDOWN_TIMEOUT", "20s", "how long shutdown waits for in-flight requests and jobs", false},
	{"HPPD_LEASE_TTL", "2m", "how long a claim on a job or a creation holds; the work of a process that died is taken over after it", false},
	{"HPPD_EVENTS_FILE", "", "JSON file of storefront event endpoints and secrets", false},
	{"HPPD_ADMIN_SOCKET", "<data file>.sock", "Unix socket of the admin API used by the admin CLI while the daemon runs", false},
	{"HPPD_IDEMPOTENCY_TTL", "24h", "a storefront Idempotency-Key is replayed for this long; then it is forgotten and may name a new request (at most HPPD_RETENTION)", false},
	{"HPPD_RETENTION", "180d", "final sessions and charges last updated longer ago are deleted by the poller, a bounded amount per run (a Go duration or whole days such as 180d)", false},
	{"HPPD_METRICS_LISTEN", "127.0.0.1:9464", "address of the Prometheus /metrics listener, apart from HPPD_LISTEN (which does not serve /metrics); off: no metrics", false},
	{"HPPD_MAX_CONNECTIONS", "4096", "most connections HPPD_LISTEN holds open at once; at the cap, the connection that has waited longest for a request is closed to make room (only when every one is in a request do more wait in the kernel's backlog)", false},
	{"HPPD_IDLE_TIMEOUT", "30s", "a keep-alive connection with no request for this long is closed", false},
	{"HPPD_READ_HEADER_TIMEOUT", "5s", "a request whose headers have not all arrived after this long is dropped", false},
}

// Load reads the configuration through getenv (os.Getenv in production).
func Load(getenv func(string) string) (*Config, error) {
	c, r, file, err := open(getenv)
	if err != nil {
		return nil, err
	}
	getenv, get, secret, dur, bad := r.getenv, r.get, r.secret, r.dur, r.bad
	// days is dur that also takes whole days ("180d").
	days := func(name, def string) time.Duration {
		v := get(name, def)
		d, err := ParseDays(v)
		if err != nil || d <= 0 {
			bad(name, "%q is not a positive duration such as 24h, 4320h or 180d", v)
		}
		return d
	}
	rate := func(name, def string) float64 {
		v := get(name, def)
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			bad(name, "%q is not a positive number", v)
		}
		return f
	}
	// durList reads a comma-separated list of positive durations.
	durList := func(name, def string) []time.Duration {
		v := get(name, def)
		var ds []time.Duration
		for _, part := range strings.Split(v, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(part))
			if err != nil || d <= 0 {
				bad(name, "%q is not a positive duration or a comma-separated list of them, such as 2m or 1m,5m,20m", v)
				return nil
			}
			ds = append(ds, d)
		}
		return ds
	}
	// share reads a fraction in (0, 1].
	share := func(name, def string) float64 {
		v := get(name, def)
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= 1) {
			bad(name, "%q is not a share greater than 0 and at most 1, such as 0.5", v)
		}
		return f
	}

	c.Listen = get("HPPD_LISTEN", "127.0.0.1:8080")
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("HPPD_LISTEN", "%q is not host:port", c.Listen)
	}
	c.PublicURL = strings.TrimRight(get("HPPD_PUBLIC_URL", ""), "/")
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(c.PublicURL, "?#") {
			bad("HPPD_PUBLIC_URL", "%q is not an absolute http(s) URL without query or fragment", c.PublicURL)
		}
	}
	c.readStore(r)
	c.KlarnaRegion = get("HPPD_KLARNA_REGION", "eu")
	c.KlarnaEnv = get("HPPD_KLARNA_ENV", "playground")
	c.KlarnaBaseURL = strings.TrimRight(get("HPPD_KLARNA_BASE_URL", ""), "/")
	if c.KlarnaBaseURL != "" {
		if u, err := url.Parse(c.KlarnaBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("HPPD_KLARNA_BASE_URL", "%q is not an absolute http(s) URL", c.KlarnaBaseURL)
		}
	} else if _, err := klarna.BaseURLFor(c.KlarnaRegion, c.KlarnaEnv); err != nil {
		switch c.KlarnaRegion {
		case "eu", "na", "oc":
			bad("HPPD_KLARNA_ENV", "%q must be playground or production", c.KlarnaEnv)
		default:
			bad("HPPD_KLARNA_REGION", "%q must be eu, na or oc", c.KlarnaRegion)
		}
	}
	c.KlarnaUsername = secret("HPPD_KLARNA_USERNAME")
	c.KlarnaPassword = secret("HPPD_KLARNA_PASSWORD")
	fileAccounts := file != nil && len(file.doc.KlarnaAccounts) > 0
	if c.KlarnaUsername == "" && !fileAccounts {
		bad("HPPD_KLARNA_USERNAME", "is required (or klarna_accounts in HPPD_CONFIG_FILE)")
	}
	if c.KlarnaPassword == "" && (!fileAccounts || c.KlarnaUsername != "") {
		bad("HPPD_KLARNA_PASSWORD", "is required")
	}
	c.KlarnaTimeout = dur("HPPD_KLARNA_TIMEOUT", "30s")
	// Rate defaults follow the environment (FACTS 8.5).
	defCreate, defOther, defToken := klarna.DefaultRates(c.KlarnaEnv)
	c.KlarnaCreateRate = rate("HPPD_KLARNA_CREATE_RATE", strconv.FormatFloat(defCreate, 'g', -1, 64))
	c.KlarnaOtherRate = rate("HPPD_KLARNA_OTHER_RATE", strconv.FormatFloat(defOther, 'g', -1, 64))
	c.KlarnaTokenOrderRate = rate("HPPD_KLARNA_TOKEN_ORDER_RATE", strconv.FormatFloat(defToken, 'g', -1, 64))

	if k := secret("HPPD_JWT_HS256_KEY"); k != "" {
		if len(k) < 32 {
			bad("HPPD_JWT_HS256_KEY", "must be at least 32 bytes")
		}
		c.JWTHS256Key = []byte(k)
		c.JWTHS256KeyFile = getenv("HPPD_JWT_HS256_KEY_FILE")
	}
	if f := get("HPPD_JWT_PUBLIC_KEYS_FILE", ""); f != "" {
		c.JWTPublicKeysFile = f
		b, err := os.ReadFile(f)
		if err != nil {
			bad("HPPD_JWT_PUBLIC_KEYS_FILE", "cannot read the file: %v", errors.Unwrap(err))
		}
		c.JWTPublicKeys = b
	}
	c.accountsAndStorefronts(file, &r.errs)
	if len(c.JWTHS256Key) == 0 && c.JWTPublicKeysFile == "" && !c.storefrontKeys() {
		bad("HPPD_JWT_HS256_KEY", "one of HPPD_JWT_HS256_KEY or HPPD_JWT_PUBLIC_KEYS_FILE is required (or storefront keys in HPPD_CONFIG_FILE)")
	}
	c.JWTAudience = get("HPPD_JWT_AUDIENCE", "hppd")
	c.JWTMaxLifetime = dur("HPPD_JWT_MAX_LIFETIME", "24h")

	c.PollSchedule = get("HPPD_POLL_SCHEDULE", "@every 30s")
	if _, err := poller.ParseSchedule(c.PollSchedule); err != nil {
		bad("HPPD_POLL_SCHEDULE", "%q is not a cron spec: %v", c.PollSchedule, err)
	}
	c.StaleSchedule = durList("HPPD_STALE_AFTER", "1m,2m,5m,10m,20m")
	if len(c.StaleSchedule) > 0 {
		c.StaleAfter = c.StaleSchedule[0]
	}
	c.RereadShare = share("HPPD_REREAD_SHARE", "0.5")
	c.ExpiryMargin = dur("HPPD_EXPIRY_MARGIN", "10m")
	c.PlaceOrderMode = get("HPPD_PLACE_ORDER_MODE", "NONE")
	switch c.PlaceOrderMode {
	case "NONE", "PLACE_ORDER", "CAPTURE_ORDER":
	default:
		bad("HPPD_PLACE_ORDER_MODE", "%q must be NONE, PLACE_ORDER or CAPTURE_ORDER", c.PlaceOrderMode)
	}
	sched := get("HPPD_CHARGE_RETRY_SCHEDULE", "1h,6h,24h")
	for _, part := range strings.Split(sched, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d <= 0 {
			bad("HPPD_CHARGE_RETRY_SCHEDULE", "%q is not a comma-separated list of positive durations", sched)
			break
		}
		c.ChargeRetrySchedule = append(c.ChargeRetrySchedule, d)
	}
	c.LogLevel = get("HPPD_LOG_LEVEL", "info")
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("HPPD_LOG_LEVEL", "%q must be debug, info, warn or error", c.LogLevel)
	}
	c.LogFormat = get("HPPD_LOG_FORMAT", "json")
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("HPPD_LOG_FORMAT", "%q must be json or text", c.LogFormat)
	}
	c.ShutdownTimeout = dur("HPPD_SHUTDOWN_TIMEOUT", "20s")
	c.LeaseTTL = dur("HPPD_LEASE_TTL", "2m")
	if c.LeaseTTL < 2*c.KlarnaTimeout || c.LeaseTTL < time.Minute {
		// A lease must outlast the Klarna call made under it, or a slow
		// call's job is taken over and run again while it is in flight.
		bad("HPPD_LEASE_TTL", "must be at least 1m and twice HPPD_KLARNA_TIMEOUT (%s)", c.KlarnaTimeout)
	}
	c.EventsFile = get("HPPD_EVENTS_FILE", "")
	c.MetricsListen = get("HPPD_METRICS_LISTEN", "127.0.0.1:9464")
	if c.MetricsListen == "off" {
		c.MetricsListen = ""
	} else if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
		bad("HPPD_METRICS_LISTEN", "%q is not host:port (or off)", c.MetricsListen)
	}
	if v := get("HPPD_MAX_CONNECTIONS", "4096"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			bad("HPPD_MAX_CONNECTIONS", "%q is not a positive whole number", v)
		}
		c.MaxConnections = n
	}
	c.IdleTimeout = dur("HPPD_IDLE_TIMEOUT", "30s")
	c.ReadHeaderTimeout = dur("HPPD_READ_HEADER_TIMEOUT", "5s")
	c.IdempotencyTTL = days("HPPD_IDEMPOTENCY_TTL", "24h")
	c.Retention = days("HPPD_RETENTION", "180d")
	if c.IdempotencyTTL > 0 && c.Retention > 0 && c.IdempotencyTTL > c.Retention {
		// A replay would name a session or charge retention has deleted.
		bad("HPPD_IDEMPOTENCY_TTL", "%s is longer than HPPD_RETENTION (%s)", FormatDays(c.IdempotencyTTL), FormatDays(c.Retention))
	}
	if c.production() && !strings.HasPrefix(strings.ToLower(c.PublicURL), "https://") {
		// Klarna sends callbacks over HTTPS only (FACTS 8.6): a plain-http
		// merchant_urls would lose every status_update in production.
		if c.PublicURL == "" {
			bad("HPPD_PUBLIC_URL", "is required with a production Klarna account (HPPD_KLARNA_ENV=production) and must be an https:// URL (Klarna sends callbacks over HTTPS only)")
		} else {
			bad("HPPD_PUBLIC_URL", "%q must be an https:// URL with a production Klarna account (HPPD_KLARNA_ENV=production) (Klarna sends callbacks over HTTPS only)", c.PublicURL)
		}
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Listen
	}
	if len(r.errs) > 0 {
		return nil, errors.Join(r.errs...)
	}
	return c, nil
}

// LoadStore reads only where the store is: HPPD_DB and HPPD_ADMIN_SOCKET,
// or HPPD_DATABASE_URL (or its _FILE variant) with the pool's settings, by
// Load's rules (the environment first, then HPPD_CONFIG_FILE's env section).
// The other fields of the Config are left zero, and the rest of the
// configuration is not checked: the admin CLI reads the store with it, and
// listing sessions needs no Klarna credentials.
func LoadStore(getenv func(string) string) (*Config, error) {
	c, r, _, err := open(getenv)
	if err != nil {
		return nil, err
	}
	c.readStore(r)
	if len(r.errs) > 0 {
		return nil, errors.Join(r.errs...)
	}
	return c, nil
}

// open starts a load: it reads HPPD_CONFIG_FILE when it is set and returns
// the reader of the settings, the environment in front of the file's env
// section.
func open(getenv func(string) string) (*Config, *reader, *configFile, error) {
	c := &Config{}
	r := &reader{}
	var file *configFile
	if p := strings.TrimSpace(getenv("HPPD_CONFIG_FILE")); p != "" {
		c.ConfigFile = p
		f, err := readConfigFile(p)
		if err != nil {
			return nil, nil, nil, err
		}
		file = f
	}
	r.getenv, c.Sources = withFile(getenv, file, &r.errs)
	return c, r, file, nil
}

// readStore reads the settings that locate the store.
func (c *Config) readStore(r *reader) {
	c.DB = r.get("HPPD_DB", "data/hppd.db")
	c.AdminSocket = r.get("HPPD_ADMIN_SOCKET", c.DB+".sock")
	c.Database = strings.TrimSpace(r.secret("HPPD_DATABASE_URL"))
	if c.Database != "" {
		if scheme, _, ok := strings.Cut(c.Database, "://"); ok && scheme != "postgres" && scheme != "postgresql" {
			// The value itself is not repeated: it holds a password.
			r.bad("HPPD_DATABASE_URL", "must be a postgres:// URL (or libpq key=value settings)")
		}
	}
	c.DatabaseMaxConns = 16
	if v := r.get("HPPD_DATABASE_MAX_CONNS", "16"); v != "16" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 || n > 1000 {
			r.bad("HPPD_DATABASE_MAX_CONNS", "%q is not a number from 2 to 1000", v)
		}
		c.DatabaseMaxConns = n
	}
	c.DatabaseConnectTimeout = r.dur("HPPD_DATABASE_CONNECT_TIMEOUT", "5s")
	c.DatabaseStatementTimeout = r.dur("HPPD_DATABASE_STATEMENT_TIMEOUT", "10s")
}

// reader reads settings through getenv and collects what is wrong with
// them, each error naming its variable.
type reader struct {
	getenv func(string) string
	errs   []error
}

func (r *reader) bad(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// get is the trimmed value of name, or def when it is empty.
func (r *reader) get(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

// secret is name's value, or the content of the file name_FILE names
// (without its final line break); setting both is an error.
func (r *reader) secret(name string) string {
	v, f := r.getenv(name), r.getenv(name+"_FILE")
	if v != "" && f != "" {
		r.bad(name, "set either %s or %s_FILE, not both", name, name)
		return ""
	}
	if f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			r.bad(name+"_FILE", "cannot read the file: %v", errors.Unwrap(err))
			return ""
		}
		return strings.TrimRight(string(b), "\r\n")
	}
	return v
}

// dur reads a positive Go duration.
func (r *reader) dur(name, def string) time.Duration {
	v := r.get(name, def)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.bad(name, "%q is not a positive duration such as 30s or 2m", v)
	}
	return d
}

// Redacted is the effective configuration for display, secrets as <redacted>.
func (c *Config) Redacted() map[string]string {
	red := func(set bool) string {
		if set {
			return "<redacted>"
		}
		return ""
	}
	durs := make([]string, len(c.ChargeRetrySchedule))
	for i, d := range c.ChargeRetrySchedule {
		durs[i] = d.String()
	}
	return map[string]string{
		"HPPD_CONFIG_FILE":                c.ConfigFile,
		"HPPD_LISTEN":                     c.Listen,
		"HPPD_PUBLIC_URL":                 c.PublicURL,
		"HPPD_DB":                         c.DB,
		"HPPD_DATABASE_URL":               red(c.Database != ""),
		"HPPD_DATABASE_MAX_CONNS":         strconv.Itoa(c.DatabaseMaxConns),
		"HPPD_DATABASE_CONNECT_TIMEOUT":   c.DatabaseConnectTimeout.String(),
		"HPPD_DATABASE_STATEMENT_TIMEOUT": c.DatabaseStatementTimeout.String(),
		"HPPD_KLARNA_REGION":              c.KlarnaRegion,
		"HPPD_KLARNA_ENV":                 c.KlarnaEnv,
		"HPPD_KLARNA_BASE_URL":            c.KlarnaBaseURL,
		"HPPD_KLARNA_USERNAME":            red(c.KlarnaUsername != ""),
		"HPPD_KLARNA_PASSWORD":            red(c.KlarnaPassword != ""),
		"HPPD_KLARNA_TIMEOUT":             c.KlarnaTimeout.String(),
		"HPPD_KLARNA_CREATE_RATE":         strconv.FormatFloat(c.KlarnaCreateRate, 'g', -1, 64),
		"HPPD_KLARNA_OTHER_RATE":          strconv.FormatFloat(c.KlarnaOtherRate, 'g', -1, 64),
		"HPPD_KLARNA_TOKEN_ORDER_RATE":    strconv.FormatFloat(c.KlarnaTokenOrderRate, 'g', -1, 64),
		"HPPD_JWT_HS256_KEY":              red(len(c.JWTHS256Key) > 0),
		"HPPD_JWT_PUBLIC_KEYS_FILE":       c.JWTPublicKeysFile,
		"HPPD_JWT_AUDIENCE":               c.JWTAudience,
		"HPPD_JWT_MAX_LIFETIME":           c.JWTMaxLifetime.String(),
		"HPPD_POLL_SCHEDULE":              c.PollSchedule,
		"HPPD_STALE_AFTER":                joinDurations(c.StaleSchedule),
		"HPPD_REREAD_SHARE":               strconv.FormatFloat(c.RereadShare, 'g', -1, 64),
		"HPPD_EXPIRY_MARGIN":              c.ExpiryMargin.String(),
		"HPPD_PLACE_ORDER_MODE":           c.PlaceOrderMode,
		"HPPD_CHARGE_RETRY_SCHEDULE":      strings.Join(durs, ","),
		"HPPD_LOG_LEVEL":                  c.LogLevel,
		"HPPD_LOG_FORMAT":                 c.LogFormat,
		"HPPD_SHUTDOWN_TIMEOUT":           c.ShutdownTimeout.String(),
		"HPPD_LEASE_TTL":                  c.LeaseTTL.String(),
		"HPPD_EVENTS_FILE":                c.EventsFile,
		"HPPD_ADMIN_SOCKET":               c.AdminSocket,
		"HPPD_IDEMPOTENCY_TTL":            FormatDays(c.IdempotencyTTL),
		"HPPD_RETENTION":                  FormatDays(c.Retention),
		"HPPD_METRICS_LISTEN":             orOff(c.MetricsListen),
		"HPPD_MAX_CONNECTIONS":            strconv.Itoa(c.MaxConnections),
		"HPPD_IDLE_TIMEOUT":               c.IdleTimeout.String(),
		"HPPD_READ_HEADER_TIMEOUT":        c.ReadHeaderTimeout.String(),
	}
}

// joinDurations writes ds as HPPD_STALE_AFTER takes them.
func joinDurations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}

// ParseDays parses a Go duration or a whole number of days ("180d").
func ParseDays(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 0 || d > 100*365 {
			return 0, fmt.Errorf("%q is not a number of days", v)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

// FormatDays shows a duration of two or more whole days as days ("180d"),
// any other as a Go duration without zero minutes and seconds ("24h").
func FormatDays(d time.Duration) string {
	if day := 24 * time.Hour; d >= 2*day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if t, ok := strings.CutSuffix(s, "h0m0s"); ok {
		return t + "h"
	}
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		return t + "m"
	}
	return s
}

// SortedKeys returns the keys of m in order.
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// orOff shows an address that is switched off as "off".
func orOff(addr string) string {
	if addr == "" {
		return "off"
	}
	return addr
}
