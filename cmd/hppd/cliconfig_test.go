package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hppd/hppd/admin"
	"github.com/hppd/hppd/internal/pgtest"
)

// onlyVars is an environment holding vars and nothing else.
func onlyVars(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// runWith runs the command line with getenv and returns what it printed.
func runWith(getenv func(string) string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), args, getenv, &out, &errb)
	return out.String() + errb.String(), err
}

// writeConfig writes an HPPD_CONFIG_FILE whose env section is env.
func writeConfig(t *testing.T, env map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("env:\n")
	for _, k := range []string{"HPPD_DB", "HPPD_ADMIN_SOCKET", "HPPD_DATABASE_URL", "HPPD_DATABASE_URL_FILE", "HPPD_DATABASE_CONNECT_TIMEOUT", "HPPD_LOG_LEVEL"} {
		if v, ok := env[k]; ok {
			b.WriteString("  " + k + ": " + v + "\n")
		}
	}
	p := filepath.Join(t.TempDir(), "hppd.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The admin CLI finds the data file where hppd serve does: HPPD_DB in
// HPPD_CONFIG_FILE's env section counts, the environment wins over it, and
// the rest of the configuration (here: no Klarna credentials at all) is not
// needed to read the store.
func TestCLIReadsTheDataFileFromTheConfigFile(t *testing.T) {
	e := newEnv(t, true)
	id, _ := e.mustSession("shop-a")
	e.stop()
	file := writeConfig(t, map[string]string{"HPPD_DB": e.vars["HPPD_DB"], "HPPD_ADMIN_SOCKET": filepath.Join(t.TempDir(), "none.sock")})
	getenv := onlyVars(map[string]string{"HPPD_CONFIG_FILE": file})

	out, err := runWith(getenv, "sessions", "list")
	if err != nil || !strings.Contains(out, id) {
		t.Fatalf("sessions list with HPPD_DB from the file: %v\n%s", err, out)
	}
	backup := filepath.Join(t.TempDir(), "b.db")
	if out, err := runWith(getenv, "backup", backup); err != nil || !strings.Contains(out, "data file") {
		t.Fatalf("backup with HPPD_DB from the file: %v\n%s", err, out)
	}
	if out, err := runWith(getenv, "compact"); err != nil || !strings.Contains(out, e.vars["HPPD_DB"]) {
		t.Fatalf("compact with HPPD_DB from the file: %v\n%s", err, out)
	}
	// check: the configuration fails (no Klarna account, no keys), the data
	// file is found and sound.
	var checks []admin.Check
	out, err = runWith(getenv, "check", "--json")
	if err == nil {
		t.Fatal("check passed without Klarna credentials")
	}
	if jerr := json.Unmarshal([]byte(out[:strings.LastIndex(out, "]")+1]), &checks); jerr != nil {
		t.Fatalf("check --json: %v\n%s", jerr, out)
	}
	byName := map[string]admin.Check{}
	for _, c := range checks {
		byName[c.Name] = c
	}
	if byName["configuration"].Result != admin.Fail || byName["data file"].Result != admin.OK {
		t.Fatalf("check with the store from the file: %+v", checks)
	}

	// The environment wins over the file, as for hppd serve.
	missing := filepath.Join(t.TempDir(), "nope", "hppd.db")
	getenv = onlyVars(map[string]string{"HPPD_CONFIG_FILE": file, "HPPD_DB": missing})
	if _, err := runWith(getenv, "sessions", "list"); err == nil || !strings.Contains(err.Error(), "no data file") {
		t.Fatalf("HPPD_DB in the environment over the file's: %v", err)
	}
	// A configuration file that does not load stops the CLI with serve's
	// message, naming the key and its line.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("env:\n  HPPD_DB: x\n  HPPD_NOPE: y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runWith(onlyVars(map[string]string{"HPPD_CONFIG_FILE": bad}), "sessions", "list"); err == nil ||
		!strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "HPPD_NOPE") {
		t.Fatalf("a bad configuration file: %v", err)
	}
}

// On PostgreSQL the CLI takes HPPD_DATABASE_URL as hppd serve does: from
// the environment, from HPPD_DATABASE_URL_FILE, or from HPPD_CONFIG_FILE's
// env section (either of them); setting both variants is refused.
func TestCLIReadsTheDatabaseURLAsServeDoes(t *testing.T) {
	url := pgtest.DB(t)
	urlFile := filepath.Join(t.TempDir(), "url")
	if err := os.WriteFile(urlFile, []byte(url+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	migrated, err := runWith(onlyVars(map[string]string{"HPPD_CONFIG_FILE": writeConfig(t, map[string]string{"HPPD_DATABASE_URL_FILE": urlFile})}), "migrate")
	if err != nil || !strings.Contains(migrated, "applied 0001_init") {
		t.Fatalf("migrate with HPPD_DATABASE_URL_FILE in the file: %v\n%s", err, migrated)
	}
	e := newEnvWith(t, true, map[string]string{"HPPD_DATABASE_URL": url})
	id, _ := e.mustSession("shop-a")
	for name, vars := range map[string]map[string]string{
		"the environment's _FILE": {"HPPD_DATABASE_URL_FILE": urlFile},
		"the file's URL":          {"HPPD_CONFIG_FILE": writeConfig(t, map[string]string{"HPPD_DATABASE_URL": url})},
		"the file's _FILE":        {"HPPD_CONFIG_FILE": writeConfig(t, map[string]string{"HPPD_DATABASE_URL_FILE": urlFile, "HPPD_DATABASE_CONNECT_TIMEOUT": "3s"})},
	} {
		getenv := onlyVars(vars)
		out, err := runWith(getenv, "sessions", "list")
		if err != nil || !strings.Contains(out, id) {
			t.Fatalf("%s: sessions list: %v\n%s", name, err, out)
		}
		if out, err := runWith(getenv, "migrate"); err != nil || !strings.Contains(out, "already") {
			t.Fatalf("%s: migrate: %v\n%s", name, err, out)
		}
		if _, err := runWith(getenv, "backup", filepath.Join(t.TempDir(), "b.db")); err == nil || !strings.Contains(err.Error(), "pg_dump") {
			t.Fatalf("%s: backup on PostgreSQL: %v", name, err)
		}
		if _, err := runWith(getenv, "compact"); err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
			t.Fatalf("%s: compact on PostgreSQL: %v", name, err)
		}
	}
	both := onlyVars(map[string]string{"HPPD_DATABASE_URL": url, "HPPD_DATABASE_URL_FILE": urlFile})
	if _, err := runWith(both, "sessions", "list"); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("both variants: %v", err)
	}
	if _, err := runWith(onlyVars(nil), "migrate"); err == nil || !strings.Contains(err.Error(), "HPPD_CONFIG_FILE") {
		t.Fatalf("migrate without a database: %v", err)
	}
}
