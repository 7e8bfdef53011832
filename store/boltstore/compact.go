package boltstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// compactTxSize is how many bytes bbolt's Compact copies per transaction of
// the new file.
const compactTxSize = 64 << 20

// CompactResult reports a compaction.
type CompactResult struct {
	Before, After int64 // file sizes in bytes
}

// CompactFile rewrites the store file at path without its free pages, with
// bbolt's own compaction (bolt.Compact), for a stopped hppd: bbolt reuses
// freed pages but never gives them back to the file system, so after
// retention deleted many records the file stays as large as it was.
//
// It takes the file's exclusive lock first (waiting lockTimeout, default
// 1s), so it fails with *LockedError while a daemon has the file open, and
// holds it until the end, so no daemon can start on the file meanwhile. The
// copy goes to path.compact (mode 0600), is fsynced, reopened and checked
// (bbolt's page check and the same number of keys in every bucket as the
// original) and only then renamed over path, and the directory fsynced. On
// any failure the copy is removed and the original is left as it was.
func CompactFile(path string, lockTimeout time.Duration) (res CompactResult, err error) {
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	fi, err := os.Stat(path)
	if err != nil {
		return res, fmt.Errorf("store: compact %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return res, fmt.Errorf("store: compact %s: not a regular file", path)
	}
	res.Before = fi.Size()
	src, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return res, &LockedError{Path: path}
	}
	if err != nil {
		return res, fmt.Errorf("store: compact %s: %w", path, err)
	}
	defer src.Close() // after the rename: the lock keeps daemons out until then
	if err := src.View(func(btx *bolt.Tx) error {
		meta := btx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("not an hppd store: no bucket meta")
		}
		if meta.Get(keyMigration) != nil {
			return errors.New("a migration is unfinished: start hppd once to finish it")
		}
		_, err := readSchema(meta)
		return err
	}); err != nil {
		return res, fmt.Errorf("store: compact %s: %w", path, err)
	}

	tmp := path + ".compact"
	// A copy left by a compaction that died is stale: start afresh.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("store: compact %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return res, fmt.Errorf("store: compact %s: %w", path, err)
	}
	if err := bolt.Compact(dst, src, compactTxSize); err != nil {
		_ = dst.Close()
		return res, fmt.Errorf("store: compact %s: %w", path, err)
	}
	// NoSync skipped the fsyncs of Compact's commits: one sync for all.
	if err := dst.Sync(); err != nil {
		_ = dst.Close()
		return res, fmt.Errorf("store: compact %s: sync the copy: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		return res, fmt.Errorf("store: compact %s: %w", path, err)
	}
	if err := verifyCopy(src, tmp); err != nil {
		return res, fmt.Errorf("store: compact %s: the copy failed verification, the original is unchanged: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return res, fmt.Errorf("store: compact %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return res, err
	}
	if fi, err := os.Stat(path); err == nil {
		res.After = fi.Size()
	}
	return res, nil
}

// verifyCopy opens the compacted copy read-only, runs bbolt's page check on
// it and compares the number of keys of every top-level bucket with src.
func verifyCopy(src *bolt.DB, path string) error {
	want, err := bucketKeyCounts(src)
	if err != nil {
		return err
	}
	cp, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer cp.Close()
	if err := cp.View(func(btx *bolt.Tx) error {
		for err := range btx.Check() {
			return err
		}
		return nil
	}); err != nil {
		return err
	}
	got, err := bucketKeyCounts(cp)
	if err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d buckets, the original has %d", len(got), len(want))
	}
	for name, n := range want {
		if got[name] != n {
			return fmt.Errorf("bucket %s has %d keys, the original %d", name, got[name], n)
		}
	}
	return nil
}

func bucketKeyCounts(db *bolt.DB) (map[string]int, error) {
	counts := map[string]int{}
	err := db.View(func(btx *bolt.Tx) error {
		return btx.ForEach(func(name []byte, b *bolt.Bucket) error {
			counts[string(name)] = b.Stats().KeyN
			return nil
		})
	})
	return counts, err
}
