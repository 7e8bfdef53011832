package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMemoryLimitFromCgroup(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, content string
		want          int64
	}{
		{"512 MiB", "536870912\n", 536870912 / 10 * 9},
		{"no limit", "max\n", 0},
		{"garbage", "lots", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := memoryLimitFromCgroup(p); got != c.want {
				t.Fatalf("memoryLimitFromCgroup(%q) = %d, want %d", c.content, got, c.want)
			}
		})
	}
	if got := memoryLimitFromCgroup(filepath.Join(dir, "absent")); got != 0 {
		t.Fatalf("no file: %d, want 0", got)
	}
}
