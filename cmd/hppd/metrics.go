package main

import (
	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/metrics"
)

// Serve /metrics and feed it from the daemon's hooks.
func init() {
	prev := configure
	configure = func(m *daemon.Main) {
		prev(m)
		metrics.Install(m)
	}
}
