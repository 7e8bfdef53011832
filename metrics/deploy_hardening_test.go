package metrics_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The review found the systemd unit without MemoryMax, TasksMax or
// LimitCORE=0: an outsider could grow hppd until the machine swapped, and a
// crash could write a core file holding secrets and authorization tokens.
func TestDeploySystemdUnitLimits(t *testing.T) {
	u := parseUnit(t, readDeploy(t, "systemd/hppd.service"))
	if v, _ := u.last("Service", "LimitCORE"); v != "0" {
		t.Errorf("[Service] LimitCORE=%q, want 0 (no core dumps)", v)
	}
	for _, k := range []string{"MemoryMax", "TasksMax"} {
		v, ok := u.last("Service", k)
		if !ok || v == "" || v == "infinity" {
			t.Errorf("[Service] %s=%q, want a bound", k, v)
		}
	}
}

// The review found the Docker example publishing plain HTTP on every
// interface. The example `docker run` in the Dockerfile's header publishes
// on loopback only (a TLS proxy in front), read-only, without
// capabilities.
func TestDeployDockerRunIsLoopbackReadOnlyWithoutCapabilities(t *testing.T) {
	var run strings.Builder
	in := false
	for _, line := range strings.Split(string(readDeploy(t, "docker/Dockerfile")), "\n") {
		text, ok := strings.CutPrefix(strings.TrimSpace(line), "#")
		if !ok {
			break
		}
		text = strings.TrimSpace(text)
		if strings.HasPrefix(text, "docker run ") {
			in = true
		}
		if in {
			run.WriteString(strings.TrimSuffix(text, `\`) + " ")
			if !strings.HasSuffix(text, `\`) {
				break
			}
		}
	}
	cmd := strings.Fields(run.String())
	if len(cmd) == 0 {
		t.Fatal("no `docker run` example in the Dockerfile's header")
	}
	has := func(flag, value string) bool {
		for i, f := range cmd {
			if f == flag+"="+value || (f == flag && i+1 < len(cmd) && cmd[i+1] == value) {
				return true
			}
		}
		return false
	}
	if !slices.Contains(cmd, "--read-only") {
		t.Error("the example does not run the container --read-only")
	}
	if !has("--cap-drop", "ALL") {
		t.Error("the example does not drop every capability (--cap-drop ALL)")
	}
	loopback := regexp.MustCompile(`^127\.0\.0\.1:\d+:\d+$`)
	published := 0
	for i, f := range cmd {
		if (f == "-p" || f == "--publish") && i+1 < len(cmd) {
			published++
			if !loopback.MatchString(cmd[i+1]) {
				t.Errorf("-p %s publishes beyond loopback", cmd[i+1])
			}
		}
	}
	if published == 0 {
		t.Error("the example publishes no port")
	}
}
