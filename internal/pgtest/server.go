package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ServerOptions configure Start.
type ServerOptions struct {
	// Durable runs a throwaway cluster with fsync and full_page_writes on,
	// as a production server runs (the tests' cluster runs without them).
	Durable bool
	// Settings are more server settings of a throwaway cluster, each
	// "name=value" (e.g. "shared_buffers=128MB"); they override the
	// cluster's own.
	Settings []string
}

// Server is a PostgreSQL server for a program that is not a test (a
// benchmark): HPPD_TEST_DATABASE_URL's server when set, else a throwaway
// cluster of its own, as DB starts one for tests. Stop ends it.
type Server struct {
	// AdminURL is a URL of the server's maintenance database, as a role
	// allowed to create databases.
	AdminURL string
	c        *throwaway
}

// Start starts (or, with HPPD_TEST_DATABASE_URL set, names) a server. It
// fails with an error naming the missing binaries when PostgreSQL is not
// installed.
func Start(o ServerOptions) (*Server, error) {
	if u := os.Getenv(EnvURL); u != "" {
		if _, err := withDatabase(u, "postgres"); err != nil {
			return nil, err
		}
		return &Server{AdminURL: u}, nil
	}
	fs := "off"
	if o.Durable {
		fs = "on"
	}
	for _, s := range o.Settings {
		if name, _, ok := strings.Cut(s, "="); !ok || name == "" || strings.ContainsAny(s, " '\"\\") {
			return nil, fmt.Errorf("pgtest: setting %q is not name=value", s)
		}
	}
	c, err := startCluster(fs, o.Settings...)
	if err != nil {
		return nil, err
	}
	return &Server{AdminURL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port), c: c}, nil
}

// Throwaway reports whether the server is a cluster Start made (and Stop
// removes), rather than HPPD_TEST_DATABASE_URL's.
func (s *Server) Throwaway() bool { return s.c != nil }

// URL is the URL of database name on the server.
func (s *Server) URL(name string) (string, error) { return withDatabase(s.AdminURL, name) }

// PostmasterPID is the pid of a throwaway cluster's postmaster, the parent
// of every server process (from postmaster.pid in its data directory).
func (s *Server) PostmasterPID() (int, error) {
	if s.c == nil {
		return 0, errors.New("pgtest: not a throwaway cluster")
	}
	b, err := os.ReadFile(filepath.Join(s.c.data(), "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("pgtest: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pgtest: postmaster.pid starts with %q", first)
	}
	return pid, nil
}

// Stop stops a throwaway cluster and removes its directory; for
// HPPD_TEST_DATABASE_URL's server it does nothing.
func (s *Server) Stop() error {
	if s.c == nil {
		return nil
	}
	c := s.c
	s.c = nil
	return c.stop()
}

// Available reports why Start cannot give a server (no
// HPPD_TEST_DATABASE_URL and no PostgreSQL binaries), or nil.
func Available() error {
	if os.Getenv(EnvURL) != "" {
		return nil
	}
	_, err := binDir()
	return err
}
