package boltstore

import (
	"bytes"
	"reflect"
	"sync"
	"time"

	"github.com/hppd/hppd/core"
)

// recordCache keeps recently decoded records of one type, keyed by id and
// validated by the exact stored bytes, so that a transaction does not decode
// JSON again for a record just decoded or written.
//
// Only charges are cached: a charge is written and read back several times
// within one fallback purchase (the answer, the link, the answer to the
// request, and the index keys of the value being replaced), so writes fill
// the cache too (PutCharge). Sessions are not: their binary decoding
// (sessioncodec.go) costs about what a cache entry's deep copy does, and the
// callback path, which reads most sessions, writes them prepared, with the
// index keys it read, so its Batch reads only the stored bytes.
//
// Correctness does not depend on invalidation: an entry is used only when the
// bytes stored under its id right now equal the bytes it was decoded from or
// encoded to (also for writes later rolled back: their bytes are simply never
// found, or found again only for an equal value). Callers never see a cached
// object, only deep copies of it.
type recordCache[T any] struct {
	mu      sync.Mutex
	entries map[string]cacheEntry[T]
	max     int
	keysOf  func(*T) recordKeys
	copy    copier
}

type cacheEntry[T any] struct {
	raw []byte
	v   *T
}

// chargeCacheSize bounds the cache: the charges with work in flight. A hit
// is a read that follows another within one fallback purchase, so a few
// hundred purchases in flight need far fewer entries than this.
const chargeCacheSize = 1024

// caches are a DB's record caches; a nil one is off (its type cannot be
// deep-copied, or the transaction runs without them).
type caches struct {
	charges *recordCache[core.Charge]
}

func newCaches() caches {
	var c caches
	if chargeCacheable {
		c.charges = &recordCache[core.Charge]{entries: map[string]cacheEntry[core.Charge]{}, max: chargeCacheSize,
			keysOf: chargeKeys, copy: chargeCopier}
	}
	return c
}

func (c *recordCache[T]) clone(v *T) *T {
	out := new(T)
	c.copy(reflect.ValueOf(out).Elem(), reflect.ValueOf(v).Elem())
	return out
}

// lookup returns the entry decoded from raw.
func (c *recordCache[T]) lookup(id string, raw []byte) (*T, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.raw, raw) {
		return nil, false
	}
	return e.v, true
}

// get returns a deep copy of the cached record decoded from raw.
func (c *recordCache[T]) get(id string, raw []byte) (*T, bool) {
	v, ok := c.lookup(id, raw)
	if !ok {
		return nil, false
	}
	return c.clone(v), true
}

// keys returns the index keys of the cached record decoded from raw.
func (c *recordCache[T]) keys(id string, raw []byte) (recordKeys, bool) {
	v, ok := c.lookup(id, raw)
	if !ok {
		return recordKeys{}, false
	}
	return c.keysOf(v), true
}

// put remembers v as the decoding of raw; it keeps its own copies of both.
func (c *recordCache[T]) put(id string, raw []byte, v *T) {
	if c == nil {
		return
	}
	e := cacheEntry[T]{raw: bytes.Clone(raw), v: c.clone(v)}
	c.mu.Lock()
	if _, ok := c.entries[id]; !ok && len(c.entries) >= c.max {
		for k := range c.entries { // an arbitrary victim
			delete(c.entries, k)
			break
		}
	}
	c.entries[id] = e
	c.mu.Unlock()
}

var (
	timeType     = reflect.TypeFor[time.Time]()
	chargeCopier = copierFor(reflect.TypeFor[core.Charge](), map[reflect.Type]*copier{})
)

// copier sets dst to a deep copy of src, both of the type it was built for.
// Copiers are built once per type by reflection, so that a copy does no
// type inspection: structs are assigned whole and then only their reference
// fields are replaced. Strings and scalars are immutable or copied by value;
// time.Time is a value (its *Location is immutable).
type copier func(dst, src reflect.Value)

// copierFor builds the copier of t; memo breaks recursive types.
func copierFor(t reflect.Type, memo map[reflect.Type]*copier) copier {
	if c, ok := memo[t]; ok {
		return func(dst, src reflect.Value) { (*c)(dst, src) }
	}
	var c copier
	memo[t] = &c
	set := func(dst, src reflect.Value) { dst.Set(src) }
	switch {
	case !hasRefs(t, map[reflect.Type]bool{}):
		c = set
	case t.Kind() == reflect.Pointer:
		elem, ec := t.Elem(), copierFor(t.Elem(), memo)
		c = func(dst, src reflect.Value) {
			if src.IsNil() {
				dst.SetZero()
				return
			}
			p := reflect.New(elem)
			ec(p.Elem(), src.Elem())
			dst.Set(p)
		}
	case t.Kind() == reflect.Slice:
		ec := copierFor(t.Elem(), memo)
		shallow := !hasRefs(t.Elem(), map[reflect.Type]bool{})
		c = func(dst, src reflect.Value) {
			if src.IsNil() {
				dst.SetZero()
				return
			}
			n := src.Len()
			s := reflect.MakeSlice(t, n, n)
			if shallow {
				reflect.Copy(s, src)
			} else {
				for i := 0; i < n; i++ {
					ec(s.Index(i), src.Index(i))
				}
			}
			dst.Set(s)
		}
	case t.Kind() == reflect.Map:
		ec := copierFor(t.Elem(), memo)
		c = func(dst, src reflect.Value) {
			if src.IsNil() {
				dst.SetZero()
				return
			}
			m := reflect.MakeMapWithSize(t, src.Len())
			for it := src.MapRange(); it.Next(); {
				v := reflect.New(t.Elem()).Elem()
				ec(v, it.Value())
				m.SetMapIndex(it.Key(), v)
			}
			dst.Set(m)
		}
	case t.Kind() == reflect.Array:
		ec := copierFor(t.Elem(), memo)
		c = func(dst, src reflect.Value) {
			for i := 0; i < src.Len(); i++ {
				ec(dst.Index(i), src.Index(i))
			}
		}
	case t.Kind() == reflect.Struct:
		var idx []int
		var subs []copier
		for i := 0; i < t.NumField(); i++ {
			if hasRefs(t.Field(i).Type, map[reflect.Type]bool{}) {
				idx = append(idx, i)
				subs = append(subs, copierFor(t.Field(i).Type, memo))
			}
		}
		c = func(dst, src reflect.Value) {
			dst.Set(src)
			for j, i := range idx {
				subs[j](dst.Field(i), src.Field(i))
			}
		}
	default:
		// Interfaces, channels, functions: cloneable rejects types with
		// them, so the cache is off and this is never used for copying.
		c = set
	}
	return c
}

// hasRefs reports whether values of t reach memory that a shallow copy would
// share (pointers, slices, maps, interfaces, channels, functions). Strings are
// immutable and time.Time is treated as a value.
func hasRefs(t reflect.Type, visiting map[reflect.Type]bool) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	case reflect.Array:
		return hasRefs(t.Elem(), visiting)
	case reflect.Struct:
		if t == timeType {
			return false
		}
		if visiting[t] {
			return true
		}
		visiting[t] = true
		for i := 0; i < t.NumField(); i++ {
			if hasRefs(t.Field(i).Type, visiting) {
				return true
			}
		}
		return false
	}
	return false
}

// cloneable reports whether a copier can deep-copy t: no interfaces, channels or
// functions anywhere, and no unexported field (which reflect cannot set) on a
// struct other than time.Time.
func cloneable(t reflect.Type, visiting map[reflect.Type]bool) bool {
	if visiting[t] {
		return true
	}
	visiting[t] = true
	switch t.Kind() {
	case reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return false
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return cloneable(t.Elem(), visiting)
	case reflect.Map:
		return cloneable(t.Key(), visiting) && cloneable(t.Elem(), visiting)
	case reflect.Struct:
		if t == timeType {
			return true
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || !cloneable(f.Type, visiting) {
				return false
			}
		}
	}
	return true
}

// chargeCacheable is whether core.Charge can be cached (and cloned) safely:
// no unexported fields, interfaces, channels or functions. If a later
// core.Charge has any, the store decodes every time instead.
var chargeCacheable = cloneable(reflect.TypeFor[core.Charge](), map[reflect.Type]bool{})
