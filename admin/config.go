package admin

import (
	"strings"

	"github.com/hppd/hppd/internal/config"
)

// Redacted replaces the value of a secret that is set.
const Redacted = "<redacted>"

// ConfigVar is one variable of the effective configuration.
type ConfigVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Source is "env", "file" (the secret came from NAME_FILE) or "default".
	Source string `json:"source"`
	Secret bool   `json:"secret,omitempty"`
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
		}
		// Defence in depth: a secret is never shown, whatever Redacted did.
		if v.Secret && cv.Value != "" {
			cv.Value = Redacted
		}
		out = append(out, cv)
	}
	return out
}
