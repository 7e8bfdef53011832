package admin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hppd/hppd/store/boltstore"
)

// BackupFile writes a consistent copy of the data to path: into a new
// temporary file next to it (boltstore.CreateBackupTemp: O_EXCL|O_NOFOLLOW, mode
// 0600), fsynced, then moved to path and the directory fsynced, so path
// never holds a partial copy. An existing path is refused unless force is
// set (without force the move is a hard link, which fails atomically if path
// appeared meanwhile). live is the data file's path: writing over it, or
// over its .tmp sibling, is refused whatever force says.
func BackupFile(ctx context.Context, b Backend, path, live string, force bool) (n int64, err error) {
	if path == "" {
		return 0, errors.New("backup: no file given")
	}
	dst, err := filepath.Abs(path)
	if err != nil {
		return 0, fmt.Errorf("backup to %s: %w", path, err)
	}
	if live != "" {
		if src, err := filepath.Abs(live); err == nil && (src == dst || src == dst+".tmp" || src+".tmp" == dst) {
			return 0, fmt.Errorf("backup to %s: that is the live data file", path)
		}
	}
	if !force {
		if _, err := os.Lstat(dst); err == nil {
			return 0, fmt.Errorf("backup to %s: the file exists (use --force to replace it)", path)
		}
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("backup to %s: %w", path, err)
	}
	f, tmp, err := boltstore.CreateBackupTemp(dst)
	if err != nil {
		return 0, fmt.Errorf("backup to %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if n, err = b.Backup(ctx, f); err != nil {
		return n, fmt.Errorf("backup to %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return n, fmt.Errorf("backup to %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return n, fmt.Errorf("backup to %s: %w", path, err)
	}
	if force {
		err = os.Rename(tmp, dst)
	} else if err = os.Link(tmp, dst); err == nil {
		_ = os.Remove(tmp) // path holds the copy; a stray .tmp is only untidy
	}
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return n, fmt.Errorf("backup to %s: the file appeared meanwhile (use --force to replace it)", path)
		}
		return n, fmt.Errorf("backup to %s: %w", path, err)
	}
	return n, syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
