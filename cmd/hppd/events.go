package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/hppd/hppd/events"
	"github.com/hppd/hppd/internal/config"
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
