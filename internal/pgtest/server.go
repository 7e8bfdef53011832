package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a PostgreSQL server for a program that is not a test (the chaos
// run): the one of HPPD_TEST_DATABASE_URL, or a throwaway cluster of its
// own, started as DB starts one and stopped by Close.
type Server struct {
	adminURL string
	cluster  *throwaway
	dbs      []string
}

// ErrNoPostgres is StartServer's error (wrapped) when there is neither
// HPPD_TEST_DATABASE_URL nor PostgreSQL's server binaries.
var ErrNoPostgres = errNoPostgres

// StartServer returns the server of HPPD_TEST_DATABASE_URL when it is set,
// else starts a throwaway cluster (see the package doc). Close it after use.
func StartServer() (*Server, error) {
	if u := os.Getenv(EnvURL); u != "" {
		return &Server{adminURL: u}, nil
	}
	c, err := startCluster()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return &Server{cluster: c, adminURL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)}, nil
}

// Database creates a new, empty database named name and returns its URL.
// Close drops it.
func (s *Server) Database(ctx context.Context, name string) (string, error) {
	u, err := withDatabase(s.adminURL, name)
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	conn, err := pgx.Connect(ctx, s.adminURL)
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

// Close drops the databases Database made and stops the throwaway cluster,
// if one was started.
func (s *Server) Close() error {
	var errs []error
	if s.cluster == nil && len(s.dbs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.adminURL)
		if err != nil {
			errs = append(errs, fmt.Errorf("pgtest: connect to drop: %w", err))
		} else {
			for _, name := range s.dbs {
				if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
					errs = append(errs, fmt.Errorf("pgtest: drop database %s: %w", name, err))
				}
			}
			conn.Close(ctx)
		}
	}
	if s.cluster != nil {
		if err := s.cluster.stop(); err != nil {
			errs = append(errs, fmt.Errorf("pgtest: stop cluster: %w", err))
		}
	}
	return errors.Join(errs...)
}
