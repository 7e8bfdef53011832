package boltstore

import (
	"math/rand/v2"
	"testing"

	"github.com/hppd/hppd/core"
	bolt "go.etcd.io/bbolt"
)

// The records a request writes take the fast codec; final sessions, most of
// the file and written once, the dense one (codec.go).
func TestCodecOfEachRecordKind(t *testing.T) {
	db := openTest(t)
	r := rand.New(rand.NewPCG(7, 7))
	pending := realisticSession(r, "shop", t0)
	final := realisticSession(r, "shop", t0)
	final.Status = core.SessionOrderPlaced
	charge := simpleCharge("chg_1", "shop", t0)
	charge.Purchase = pending.Purchase
	charge.History = pending.History
	mustUpdate(t, db, func(tx *Tx) error {
		for _, s := range []*core.Session{pending, final} {
			if err := tx.PutSession(s); err != nil {
				return err
			}
		}
		if err := tx.PutCharge(charge); err != nil {
			return err
		}
		if err := tx.PutIdempotency(&core.IdempotencyRecord{Storefront: "shop", Key: "k1", Status: 201, Body: []byte(jsonOf(t, charge)), Done: true, CreatedAt: t0}); err != nil {
			return err
		}
		return tx.PutToken(&core.TokenInfo{Storefront: "shop", CustomerToken: "tok-1", LastChargeID: "chg_1", LastOutcome: core.ChargeCharged, LastChargeAt: t0})
	})
	want := []struct {
		what        string
		bucket, key []byte
		codec       byte
	}{
		{"pending session", bucketSessions, []byte(pending.ID), codecSessionBin1},
		{"final session", bucketSessions, []byte(final.ID), codecDeflateDict1},
		{"charge", bucketCharges, []byte(charge.ID), codecS2Dict1},
		{"idempotency record", bucketIdempotency, pairKey("shop", "k1"), codecS2Dict1},
		{"token", bucketTokens, pairKey("shop", "tok-1"), codecS2Dict1},
	}
	if err := db.bolt.View(func(btx *bolt.Tx) error {
		for _, w := range want {
			v := btx.Bucket(w.bucket).Get(w.key)
			if len(v) == 0 {
				t.Errorf("%s: not stored", w.what)
				continue
			}
			if v[0] != w.codec {
				t.Errorf("%s stored with codec 0x%02x, want 0x%02x", w.what, v[0], w.codec)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A charge written by an older hppd (DEFLATE) reads back, and is rewritten
// with the fast codec.
func TestDenseChargeOfAnOlderFileReads(t *testing.T) {
	db := openTest(t)
	charge := simpleCharge("chg_old", "shop", t0)
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutCharge(charge) })
	old, err := encodeValue(charge, dense)
	if err != nil || old[0] != codecDeflateDict1 {
		t.Fatalf("dense encoding: %x %v", old[:1], err)
	}
	if err := db.bolt.Update(func(btx *bolt.Tx) error {
		return btx.Bucket(bucketCharges).Put([]byte(charge.ID), old)
	}); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, db, func(tx *Tx) error {
		c, err := tx.Charge(charge.ID)
		if err != nil {
			return err
		}
		if jsonOf(t, c) != jsonOf(t, charge) {
			t.Errorf("read back %s, want %s", jsonOf(t, c), jsonOf(t, charge))
		}
		c.SetStatus(core.ChargeCharged, core.SourceAPI, "", t0)
		return tx.PutCharge(c)
	})
	if err := db.bolt.View(func(btx *bolt.Tx) error {
		if v := btx.Bucket(bucketCharges).Get([]byte(charge.ID)); v[0] != codecS2Dict1 {
			t.Errorf("rewritten with codec 0x%02x", v[0])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}
