package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/testenv"
)

// startWithAdmin runs hppd with its admin API.
func startWithAdmin(t *testing.T) *daemon.Main {
	t.Helper()
	return testenv.New(t, testenv.Options{Admin: true}).Main
}

func adminGet(path string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	resp, err := c.Get("http://admin/jobs")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /jobs: %s", resp.Status)
	}
	return "admin ok", nil
}

// TestAdminSocketIsPrivate: the admin socket is 0600, no temporary name is
// left next to it, and its own user gets through.
func TestAdminSocketIsPrivate(t *testing.T) {
	t.Parallel()
	m := startWithAdmin(t)
	fi, err := os.Lstat(m.Config.AdminSocket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode %v, want a socket with 0600", fi.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(m.Config.AdminSocket))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".hppd-admin-") {
			t.Fatalf("temporary %s left next to the socket", e.Name())
		}
	}
	if out, err := adminGet(m.Config.AdminSocket); err != nil || out != "admin ok" {
		t.Fatalf("own user: %q %v", out, err)
	}
}

// TestAdminSocketRefusesOtherUsers: even with the socket's mode opened up,
// a peer of another uid (checked with SO_PEERCRED) gets no answer. It needs
// root, to run the client as nobody.
func TestAdminSocketRefusesOtherUsers(t *testing.T) {
	t.Parallel()
	if dial := os.Getenv("HPPD_TEST_ADMIN_DIAL"); dial != "" {
		out, err := adminGet(dial)
		fmt.Printf("RESULT %q %v\n", out, err)
		return
	}
	if runtime.GOOS != "linux" || os.Getuid() != 0 {
		t.Skip("needs root on Linux to run a client as another user")
	}
	m := startWithAdmin(t)
	sock := m.Config.AdminSocket
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	// A copy of this test binary that nobody may run.
	bin := filepath.Join(filepath.Dir(sock), "client.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestAdminSocketRefusesOtherUsers$", "-test.count=1")
	cmd.Env = []string{"HPPD_TEST_ADMIN_DIAL=" + sock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "RESULT ") {
		t.Fatalf("the client did not run: %s", out)
	}
	t.Logf("client as nobody: %s", strings.TrimSpace(string(out)))
	if strings.Contains(string(out), "admin ok") || strings.Contains(string(out), "permission denied") {
		t.Fatalf("another user was answered, or never reached the peer check: %s", out)
	}
	// Root still is.
	if got, err := adminGet(sock); err != nil || got != "admin ok" {
		t.Fatalf("root: %q %v", got, err)
	}
}
