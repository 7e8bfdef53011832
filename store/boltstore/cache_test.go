package boltstore

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
)

// fill sets every field reachable from v to a non-zero value, making every
// slice and map non-empty and every pointer non-nil.
func fill(t *testing.T, v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := 0; i < 2; i++ {
			fill(t, v.Index(i), n)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k := reflect.New(v.Type().Key()).Elem()
		fill(t, k, n)
		e := reflect.New(v.Type().Elem()).Elem()
		fill(t, e, n)
		v.SetMapIndex(k, e)
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(t0.Add(time.Duration(*n))))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			fill(t, v.Field(i), n)
		}
	case reflect.String:
		v.SetString("s" + string(rune('a'+*n%26)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(*n))
	default:
		t.Fatalf("fill: unhandled kind %s", v.Kind())
	}
}

// mutate changes every value reachable through a reference in v.
func mutate(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			mutate(v.Elem())
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			mutate(v.Index(i))
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(it.Value())
			mutate(e)
			v.SetMapIndex(it.Key(), e)
		}
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(time.Time{}))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			mutate(v.Field(i))
		}
	case reflect.String:
		v.SetString(v.String() + "!")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 1)
	}
}

// A cached charge's copies share nothing with it, whatever fields
// core.Charge has: this fails when core gains a field the copier cannot
// handle.
func TestCloneChargeSharesNothing(t *testing.T) {
	if !chargeCacheable {
		t.Fatal("core.Charge is not cacheable: the copier cannot copy it")
	}
	var c core.Charge
	n := 0
	fill(t, reflect.ValueOf(&c).Elem(), &n)
	before, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	var cache recordCache[core.Charge]
	cache.copy = chargeCopier
	d := cache.clone(&c)
	if !reflect.DeepEqual(d, &c) {
		t.Fatal("clone differs from the original")
	}
	mutate(reflect.ValueOf(d).Elem())
	after, _ := json.Marshal(&c)
	if string(before) != string(after) {
		t.Errorf("mutating the clone changed the original:\nbefore %s\nafter  %s", before, after)
	}
}

func TestCloneableRefusesWhatItCannotCopy(t *testing.T) {
	//lint:ignore U1000 the unexported field is what the copier must refuse
	type hidden struct{ p *int }
	type withIface struct{ V any }
	type ok struct {
		A []string
		B map[string]*int
		T time.Time
	}
	for name, c := range map[string]struct {
		typ  reflect.Type
		want bool
	}{
		"unexported field": {reflect.TypeFor[hidden](), false},
		"interface":        {reflect.TypeFor[withIface](), false},
		"plain":            {reflect.TypeFor[ok](), true},
	} {
		if got := cloneable(c.typ, map[reflect.Type]bool{}); got != c.want {
			t.Errorf("%s: cloneable %v", name, got)
		}
	}
}

// A charge write fills the cache: the next read of those bytes is served
// from it, as a copy equal to what decoding the stored bytes gives; a charge
// changed behind the cache, or a rolled-back write, is never served.
func TestChargeCacheServesWhatTheFileHolds(t *testing.T) {
	db := openTest(t)
	r := rand.New(rand.NewPCG(5, 5))
	s := realisticSession(r, "shop", t0)
	c := simpleCharge("chg_1", "shop", t0)
	c.Purchase, c.ReturnURLs, c.History = s.Purchase, s.ReturnURLs, s.History
	c.Request = []byte(`{"order_amount":100}`)
	c.Attempts = []core.Attempt{{At: t0, IdempotencyKey: "chg_1-1", Result: core.AttemptUnavailable, HTTPStatus: 403, ErrorCode: "UNAVAILABLE_PAYMENT_METHOD"}}
	c.Error = &core.KlarnaError{HTTPStatus: 403, Code: "UNAVAILABLE_PAYMENT_METHOD", Messages: []string{"m"}}
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutCharge(c) })
	var raw []byte
	mustView(t, db, func(tx *Tx) error {
		b, _ := tx.bucket(bucketCharges)
		raw = bytes.Clone(b.Get([]byte(c.ID)))
		return nil
	})
	cached, ok := db.cache.charges.get(c.ID, raw)
	if !ok {
		t.Fatal("the write did not fill the cache")
	}
	var decoded core.Charge
	if err := decodeValue(raw, &decoded); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cached, &decoded) {
		t.Fatalf("cached %+v\ndecoded %+v", cached, &decoded)
	}
	again, _ := db.cache.charges.get(c.ID, raw)
	if cached == again || &cached.History[0] == &again.History[0] || &cached.Request[0] == &again.Request[0] {
		t.Error("cache hits are not independent copies of the charge")
	}

	// Written behind the cache's back: decoded afresh.
	behind := *c
	behind.Status = core.ChargeFallback
	mustUpdate(t, db, func(tx *Tx) error {
		tx.cache = caches{}
		return tx.PutCharge(&behind)
	})
	// Rolled back: never visible.
	_ = db.update(func(tx *Tx) error {
		rb := behind
		rb.Status = core.ChargeFailed
		if err := tx.PutCharge(&rb); err != nil {
			return err
		}
		return core.ErrNotFound
	})
	mustView(t, db, func(tx *Tx) error {
		got, err := tx.Charge(c.ID)
		if err != nil {
			return err
		}
		if got.Status != core.ChargeFallback {
			t.Errorf("read status %s, want %s", got.Status, core.ChargeFallback)
		}
		return nil
	})
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}
