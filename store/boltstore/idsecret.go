package boltstore

import (
	"crypto/rand"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// keyIDSecret is meta's "id_secret": 32 random bytes made once, the HMAC
// key of the ids hppd derives from a storefront's Idempotency-Key (so no one
// outside can compute them). It never leaves the file.
var keyIDSecret = []byte("id_secret")

// IDSecret returns the file's id secret, making it with crypto/rand the
// first time. The same file always gives the same secret (a backup carries
// it), so a retry after a restart derives the same ids.
func (db *DB) IDSecret() ([]byte, error) {
	var out []byte
	read := func(btx *bolt.Tx) {
		if v := btx.Bucket(bucketMeta).Get(keyIDSecret); len(v) == 32 {
			out = append([]byte(nil), v...)
		}
	}
	if err := db.bolt.View(func(btx *bolt.Tx) error { read(btx); return nil }); err != nil {
		return nil, err
	}
	if out != nil {
		return out, nil
	}
	err := db.rw(1, func(btx *bolt.Tx) error {
		if read(btx); out != nil {
			return nil // made by a concurrent call
		}
		if v := btx.Bucket(bucketMeta).Get(keyIDSecret); v != nil {
			return errors.New("meta/id_secret is not 32 bytes")
		}
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("crypto/rand: %w", err)
		}
		out = b
		return btx.Bucket(bucketMeta).Put(keyIDSecret, b)
	})
	if err != nil {
		return nil, fmt.Errorf("store: id secret: %w", err)
	}
	return out, nil
}
