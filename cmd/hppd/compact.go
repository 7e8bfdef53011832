// hppd compact: give the data file's free pages back to the file system.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hppd/hppd/store/boltstore"
)

// compactCmd compacts the data file (HPPD_DB) with bbolt's compaction. The
// daemon must be stopped: a file it holds is refused, and nothing is changed.
func compactCmd(_ context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("compact", stderr)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("compact: unexpected argument %q", pos[0])
	}
	cfg, err := storeConfig(getenv)
	if err != nil {
		return err
	}
	if cfg.Database != "" {
		return errors.New("compact: the store is PostgreSQL (HPPD_DATABASE_URL), which reclaims space itself (autovacuum); compact rewrites a bbolt data file")
	}
	path := cfg.DB
	res, err := boltstore.CompactFile(path, 0)
	var le *boltstore.LockedError
	if errors.As(err, &le) {
		return fmt.Errorf("compact: %s is in use by a running hppd (or another process): stop hppd first, then run hppd compact again; nothing was changed", path)
	}
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	fmt.Fprintf(stdout, "compacted %s: %s -> %s\n", path, sizeText(res.Before), sizeText(res.After))
	return nil
}

// sizeText shows a byte count with its binary unit.
func sizeText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}
