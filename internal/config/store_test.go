package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// LoadStore reads where the store is by Load's rules (the environment
// first, then the file's env section, _FILE variants) and nothing else: no
// Klarna credentials or keys are needed, and a bad value elsewhere is not
// its business; a bad store setting still is.
func TestLoadStore(t *testing.T) {
	dir := t.TempDir()
	urlFile := writeFile(t, dir, "url", "postgres://hppd:pw@db/hppd\n")
	file := writeFile(t, dir, "hppd.yaml", "env:\n  HPPD_DATABASE_URL_FILE: "+urlFile+"\n  HPPD_DATABASE_CONNECT_TIMEOUT: 3s\n  HPPD_DB: /from/file.db\n  HPPD_LOG_LEVEL: loud\n")
	load := func(vars map[string]string) (*Config, error) {
		return LoadStore(func(k string) string { return vars[k] })
	}
	c, err := load(map[string]string{"HPPD_CONFIG_FILE": file})
	if err != nil {
		t.Fatal(err)
	}
	if c.Database != "postgres://hppd:pw@db/hppd" || c.DatabaseConnectTimeout != 3*time.Second || c.DatabaseStatementTimeout != 10*time.Second ||
		c.DatabaseMaxConns != 16 || c.DB != "/from/file.db" || c.AdminSocket != "/from/file.db.sock" {
		t.Fatalf("from the file: %+v", c)
	}
	if c.Sources["HPPD_DATABASE_URL"] != "file" {
		t.Fatalf("source of HPPD_DATABASE_URL: %q", c.Sources["HPPD_DATABASE_URL"])
	}

	// The environment wins, as a variable or as its _FILE variant.
	c, err = load(map[string]string{"HPPD_CONFIG_FILE": file, "HPPD_DATABASE_URL": "postgres://other/db", "HPPD_DB": "/env.db", "HPPD_ADMIN_SOCKET": "/run/a.sock"})
	if err != nil || c.Database != "postgres://other/db" || c.DB != "/env.db" || c.AdminSocket != "/run/a.sock" {
		t.Fatalf("the environment over the file: %+v, %v", c, err)
	}

	// Nothing but the store: the defaults without any variable.
	c, err = load(nil)
	if err != nil || c.Database != "" || c.DB != "data/hppd.db" || c.AdminSocket != "data/hppd.db.sock" {
		t.Fatalf("defaults: %+v, %v", c, err)
	}

	for name, vars := range map[string]map[string]string{
		"HPPD_DATABASE_URL":       {"HPPD_DATABASE_URL": "mysql://x/y"},
		"not both":                {"HPPD_DATABASE_URL": "postgres://a/b", "HPPD_DATABASE_URL_FILE": urlFile},
		"HPPD_DATABASE_URL_FILE":  {"HPPD_DATABASE_URL_FILE": filepath.Join(dir, "missing")},
		"HPPD_DATABASE_MAX_CONNS": {"HPPD_DATABASE_MAX_CONNS": "1"},
		"line 2":                  {"HPPD_CONFIG_FILE": writeFile(t, dir, "bad.yaml", "env:\n  HPPD_NOPE: x\n")},
	} {
		if _, err := load(vars); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: error %v, want one naming %s", vars, err, name)
		}
	}
}
