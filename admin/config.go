package admin

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/klarna"
)

// Redacted replaces the value of a secret that is set.
const Redacted = "<redacted>"

// ConfigVar is one variable of the effective configuration.
type ConfigVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Source is "env", "file" (HPPD_CONFIG_FILE's env section, or a
	// secret read from NAME_FILE) or "default".
	Source string `json:"source"`
	Secret bool   `json:"secret,omitempty"`
}

// Configuration is what `hppd config --json` prints.
type Configuration struct {
	Variables      []ConfigVar     `json:"variables"`
	KlarnaAccounts []ConfigAccount `json:"klarna_accounts"`
	Storefronts    []ConfigStore   `json:"storefronts"`
}

// ConfigAccount is one Klarna account of the effective configuration.
type ConfigAccount struct {
	Name        string `json:"name"`
	Source      string `json:"source"` // "env" (HPPD_KLARNA_*) or "file"
	Region      string `json:"region,omitempty"`
	Environment string `json:"environment"`
	BaseURL     string `json:"base_url"`
	// Password says where the password is: "<redacted>" (inline in the
	// file), the password_file, or the HPPD_KLARNA_PASSWORD variable.
	Password  string   `json:"password"`
	Countries []string `json:"countries"`
	Rates     string   `json:"rates"` // create/other/token order per second
}

// ConfigStore is one storefront of HPPD_CONFIG_FILE.
type ConfigStore struct {
	Name              string   `json:"name"`
	KlarnaAccounts    []string `json:"klarna_accounts"` // nil: all
	JWTHS256KeyFile   string   `json:"jwt_hs256_key_file,omitempty"`
	JWTPublicKeysFile string   `json:"jwt_public_keys_file,omitempty"`
	EventsURL         string   `json:"events_url,omitempty"`
	EventsSecret      string   `json:"events_secret,omitempty"` // "<redacted>" or the secret_file
	ShareTokensWith   []string `json:"share_tokens_with,omitempty"`
	KlarnaShare       float64  `json:"klarna_share,omitempty"` // 0: no cap
}

// ConfigOf is the whole effective configuration for display.
func ConfigOf(cfg *config.Config, getenv func(string) string) Configuration {
	out := Configuration{Variables: ConfigVars(cfg, getenv), KlarnaAccounts: []ConfigAccount{}, Storefronts: []ConfigStore{}}
	for _, a := range cfg.Accounts {
		ca := ConfigAccount{Name: a.Name, Source: a.Source, Region: a.Region, Environment: a.Environment, BaseURL: a.BaseURL,
			Countries: a.Countries, Rates: fmt.Sprintf("%g/%g/%g", a.CreateRate, a.OtherRate, a.TokenOrderRate)}
		if ca.Countries == nil {
			ca.Countries = []string{}
		}
		if ca.BaseURL == "" {
			ca.BaseURL, _ = klarna.BaseURLFor(a.Region, a.Environment)
		} else {
			ca.Region = ""
		}
		switch {
		case a.Source == "env":
			ca.Password = "HPPD_KLARNA_PASSWORD"
		case a.PasswordFile != "":
			ca.Password = a.PasswordFile
		default:
			ca.Password = Redacted
		}
		out.KlarnaAccounts = append(out.KlarnaAccounts, ca)
	}
	for _, s := range cfg.Storefronts {
		cs := ConfigStore{Name: s.Name, KlarnaAccounts: s.KlarnaAccounts, JWTHS256KeyFile: s.JWTHS256KeyFile, JWTPublicKeysFile: s.JWTPublicKeysFile,
			ShareTokensWith: s.ShareTokensWith, KlarnaShare: s.KlarnaShare}
		if e := s.Events; e != nil {
			cs.EventsURL = e.URL
			if u, err := url.Parse(e.URL); err == nil {
				// The query may carry a token: show scheme, host and path.
				cs.EventsURL = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
			}
			cs.EventsSecret = Redacted
			if e.SecretFile != "" {
				cs.EventsSecret = e.SecretFile
			}
		}
		out.Storefronts = append(out.Storefronts, cs)
	}
	return out
}

// ConfigVars lists every variable of config.Vars with its effective value,
// secrets as <redacted>. getenv tells where each value came from.
func ConfigVars(cfg *config.Config, getenv func(string) string) []ConfigVar {
	values := cfg.Redacted()
	out := make([]ConfigVar, 0, len(config.Vars))
	for _, v := range config.Vars {
		cv := ConfigVar{Name: v.Name, Value: values[v.Name], Source: "default", Secret: v.Secret}
		switch {
		case strings.TrimSpace(getenv(v.Name)) != "":
			cv.Source = "env"
		case v.Secret && getenv(v.Name+"_FILE") != "":
			cv.Source = "file"
		case cfg.Sources[v.Name] == "file":
			cv.Source = "file"
		}
		// Defence in depth: a secret is never shown, whatever Redacted did.
		if v.Secret && cv.Value != "" {
			cv.Value = Redacted
		}
		out = append(out, cv)
	}
	return out
}
