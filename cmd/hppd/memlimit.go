package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryMax is where a cgroup v2 process in its own cgroup namespace
// (a container: a Kubernetes memory limit) reads its memory limit.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// ownCgroupMemoryMax is the memory.max of the cgroup /proc/self/cgroup names
// (a systemd unit's MemoryMax=, seen without a cgroup namespace), or
// cgroupMemoryMax when that cannot be read.
func ownCgroupMemoryMax() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return cgroupMemoryMax
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok && rest != "/" && !strings.Contains(rest, "..") {
			p := filepath.Join("/sys/fs/cgroup", rest, "memory.max")
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	return cgroupMemoryMax
}

// memoryLimitFromCgroup returns 90 % of the limit in the memory.max file
// at path, or 0 when there is none ("max", no file, not a number).
func memoryLimitFromCgroup(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n / 10 * 9
}

// applyMemoryLimit sets Go's soft memory limit to 90 % of the cgroup's when
// GOMEMLIMIT is not set, so the garbage collector works harder before the
// kernel's OOM killer ends the process. An operator's GOMEMLIMIT wins.
func applyMemoryLimit(getenv func(string) string, path string, log *slog.Logger) {
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	if limit := memoryLimitFromCgroup(path); limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info("memory limit from the cgroup", "gomemlimit_bytes", limit, "source", path)
	}
}
