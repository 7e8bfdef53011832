package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is Start's error (wrapped) when there is neither
// HPPD_TEST_DATABASE_URL nor PostgreSQL's server binaries.
var ErrNoPostgres = errNoPostgres

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
// benchmark, the chaos run): HPPD_TEST_DATABASE_URL's server when set, else
// a throwaway cluster of its own, as DB starts one for tests. Stop ends it.
type Server struct {
	// AdminURL is a URL of the server's maintenance database, as a role
	// allowed to create databases.
	AdminURL string
	c        *throwaway
	dbs      []string // made by Database, dropped by Stop
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

// Database creates a new, empty database named name and returns its URL.
// Stop drops it.
func (s *Server) Database(ctx context.Context, name string) (string, error) {
	u, err := s.URL(name)
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	conn, err := pgx.Connect(ctx, s.AdminURL)
	if err != nil {
		return "", fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	s.dbs = append(s.dbs, name)
	return u, nil
}

// Stop stops a throwaway cluster and removes its directory; on
// HPPD_TEST_DATABASE_URL's server it drops the databases Database made.
func (s *Server) Stop() error {
	if s.c == nil {
		return s.dropDatabases()
	}
	c := s.c
	s.c = nil
	s.dbs = nil
	return c.stop()
}

func (s *Server) dropDatabases() error {
	if len(s.dbs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.AdminURL)
	if err != nil {
		return fmt.Errorf("pgtest: connect to drop: %w", err)
	}
	defer conn.Close(ctx)
	var errs []error
	for _, name := range s.dbs {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			errs = append(errs, fmt.Errorf("pgtest: drop database %s: %w", name, err))
		}
	}
	s.dbs = nil
	return errors.Join(errs...)
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
