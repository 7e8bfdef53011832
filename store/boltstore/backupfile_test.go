package boltstore

import (
	"os"
	"path/filepath"
	"testing"
)

// TestBackupFileIgnoresPlantedFiles: a 0644 file or a symlink planted where
// the backup used to write its temporary copy (path.tmp, opened O_TRUNC and
// followed) is neither written through nor makes the backup readable: the
// backup is 0600 and the symlink's target is untouched.
func TestBackupFileIgnoresPlantedFiles(t *testing.T) {
	db := openTest(t)
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, plant := range []string{"file", "symlink"} {
		t.Run(plant, func(t *testing.T) {
			dst := filepath.Join(dir, plant+".db")
			if plant == "file" {
				if err := os.WriteFile(dst+".tmp", nil, 0o644); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Symlink(victim, dst+".tmp"); err != nil {
				t.Fatal(err)
			}
			if err := db.BackupFile(dst); err != nil {
				t.Fatal(err)
			}
			if got := fileMode(t, dst); got != 0o600 {
				t.Fatalf("backup mode %o, want 600", got)
			}
			if b, _ := os.ReadFile(victim); string(b) != "keep me" {
				t.Fatalf("the symlink's target was written: %q", b)
			}
			if got := fileMode(t, victim); got != 0o644 {
				t.Fatalf("the symlink's target mode changed to %o", got)
			}
		})
	}
}
