package boltstore

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/store"
)

// Page sizes of ListSessions and ListCharges.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// storefrontKey is storefront ‖ 0x00 ‖ big-endian created nanos ‖ id.
func storefrontKey(storefront string, created uint64, id string) []byte {
	k := make([]byte, 0, len(storefront)+1+8+len(id))
	k = append(k, storefront...)
	k = append(k, sep)
	k = binary.BigEndian.AppendUint64(k, created)
	return append(k, id...)
}

// encodeCursor makes the opaque cursor that resumes a listing after the
// index entry whose key is k (the part after the storefront prefix).
func encodeCursor(rest []byte) string { return base64.RawURLEncoding.EncodeToString(rest) }

func decodeCursor(c string) ([]byte, error) {
	rest, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(rest) < 9 {
		return nil, core.Invalid("cursor", "is not a cursor returned by a previous page")
	}
	return rest, nil
}

// list walks a by-storefront index newest first and returns the ids of one
// page plus the next page's cursor. The index values are statuses, so a
// status filter decodes no record.
func (tx *Tx) list(name []byte, q core.ListQuery) ([]string, string, error) {
	if err := store.CheckStorefront(q.Storefront); err != nil {
		return nil, "", err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	if limit > MaxListLimit {
		limit = MaxListLimit
	}
	prefix := append([]byte(q.Storefront), sep)
	b, err := tx.bucket(name)
	if err != nil {
		return nil, "", err
	}
	c := b.Cursor()
	var k, v []byte
	if q.Cursor == "" {
		// The first key after every key of this storefront, then one back.
		end := append([]byte(q.Storefront), sep+1)
		if k, _ = c.Seek(end); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	} else {
		rest, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", err
		}
		after := append(bytes.Clone(prefix), rest...)
		if k, _ = c.Seek(after); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	var ids []string
	var last []byte
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
		if q.Status != "" && string(v) != q.Status {
			continue
		}
		if len(ids) == limit {
			// One more match exists: hand out a cursor.
			return ids, encodeCursor(last), nil
		}
		if len(k) < len(prefix)+9 {
			return nil, "", core.Errorf(core.CodeInternal, "store: short index key in %s", name)
		}
		ids = append(ids, string(k[len(prefix)+8:]))
		last = bytes.Clone(k[len(prefix):])
	}
	return ids, "", nil
}
