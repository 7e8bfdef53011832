package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/hppd/hppd/events"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/klarna/klarnasim"
)

// eventsConfig is the storefronts' event endpoints: from the storefronts
// section of HPPD_CONFIG_FILE, or from HPPD_EVENTS_FILE (kept for one
// release; start-up says the section replaces it). nil: no events.
func eventsConfig(cfg *config.Config, log *slog.Logger) (*events.Config, error) {
	fromFile := map[string]events.Endpoint{}
	for _, s := range cfg.Storefronts {
		if s.Events != nil {
			fromFile[s.Name] = events.Endpoint{URL: s.Events.URL, Secret: s.Events.Secret}
		}
	}
	switch {
	case cfg.EventsFile != "" && len(fromFile) > 0:
		return nil, errors.New("HPPD_EVENTS_FILE: set event endpoints in one place: the storefronts section of HPPD_CONFIG_FILE replaces HPPD_EVENTS_FILE")
	case cfg.EventsFile != "":
		log.Warn("HPPD_EVENTS_FILE is deprecated: the storefronts section of HPPD_CONFIG_FILE (events: url, secret_file) replaces it", "file", cfg.EventsFile)
		ec, err := events.LoadFile(cfg.EventsFile)
		if err != nil {
			return nil, fmt.Errorf("HPPD_EVENTS_FILE: %w", err)
		}
		return ec, nil
	case len(fromFile) > 0:
		ec, err := events.NewConfig(fromFile)
		if err != nil {
			return nil, fmt.Errorf("HPPD_CONFIG_FILE: %w", err)
		}
		return ec, nil
	}
	return nil, nil
}

// simAccounts is the repeatable --account flag of hppd sim.
type simAccounts []klarnasim.Account

func (a *simAccounts) String() string {
	names := make([]string, len(*a))
	for i, x := range *a {
		names[i] = x.Name
	}
	return strings.Join(names, ",")
}

// Set parses name:username:password-file; the password is read from the
// file so that it stays out of ps.
func (a *simAccounts) Set(v string) error {
	parts := strings.SplitN(v, ":", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return errors.New("want name:username:password-file")
	}
	b, err := os.ReadFile(parts[2])
	if err != nil {
		return fmt.Errorf("password file of account %s: %w", parts[0], errors.Unwrap(err))
	}
	*a = append(*a, klarnasim.Account{Name: parts[0], Username: parts[1], Password: strings.TrimRight(string(b), "\r\n")})
	return nil
}
