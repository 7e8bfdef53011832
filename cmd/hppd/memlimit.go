package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryMax is where a cgroup v2 process reads its memory limit
// (systemd's MemoryMax=, a Kubernetes container's memory limit).
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

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
