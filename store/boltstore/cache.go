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
//   - Sessions: the callback path reads a session in a View (to check the
//     secret and prepare its write, on any core), and again inside its
//     Batch (on the single writer, whose time bounds group-commit
//     throughput) when the session changed in between or the write could
//     not be prepared: with the cache that read is a byte comparison and a
//     deep copy, not a JSON decode.
//     Writes do not fill it: a pending session is written once per
//     callback, and read by the next callback's View first.
//   - Charges: a charge is written and read back several times within one
//     fallback purchase (the answer, the link, the answer to the request,
//     and the index keys of the value being replaced), so writes fill the
//     cache too (PutCharge).
//
// Correctness does not depend on invalidation: an entry is used only when the
// bytes stored under its id right now (for a session, its part of them,
// without the event marks a callback adds: events.go) equal the bytes it was
// decoded from or encoded to (also for writes later rolled back: their bytes
// are simply never found, or found again only for an equal value). Callers
// never see a cached object, only deep copies of it.
type recordCache[T any] struct {
	mu      sync.Mutex
	entries map[string]cacheEntry[T]
	max     int
	body    func(raw []byte) []byte // the bytes an entry is validated by
	keysOf  func(*T) recordKeys
	copy    copier
}

type cacheEntry[T any] struct {
	raw []byte
	v   *T
}

// sessionCacheSize bounds each cache: the records with work in flight. A
// hit is a read that follows another within one flow (the callback's check,
// its View, its Batch), microseconds apart, so a few hundred callbacks in
// flight need far fewer entries than this; each decoded session holds about
// 2.7 KiB of heap, so 4,096 of them were 11 MiB of live heap (twice that at
// the garbage collector's peak) for no more hits.
const sessionCacheSize = 1024

// caches are a DB's record caches; a nil one is off (its type cannot be
// deep-copied, or the transaction runs without them).
type caches struct {
	sessions *recordCache[core.Session]
	charges  *recordCache[core.Charge]
}

func newCaches() caches {
	var c caches
	if sessionCacheable {
		c.sessions = &recordCache[core.Session]{entries: map[string]cacheEntry[core.Session]{}, max: sessionCacheSize,
			body: sessionBody, keysOf: sessionKeys, copy: sessionCopier}
	}
	if chargeCacheable {
		c.charges = &recordCache[core.Charge]{entries: map[string]cacheEntry[core.Charge]{}, max: sessionCacheSize,
			body: func(raw []byte) []byte { return raw }, keysOf: chargeKeys, copy: chargeCopier}
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
	raw = c.body(raw)
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
	raw = c.body(raw)
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

// cloneSession deep-copies a session: every pointer, slice and map is new.
func cloneSession(s *core.Session) *core.Session {
	c := new(core.Session)
	sessionCopier(reflect.ValueOf(c).Elem(), reflect.ValueOf(s).Elem())
	return c
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	sessionCopier = copierFor(reflect.TypeFor[core.Session](), map[reflect.Type]*copier{})
	chargeCopier  = copierFor(reflect.TypeFor[core.Charge](), map[reflect.Type]*copier{})
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

// sessionCacheable is whether core.Session can be cached (and cloned)
// safely: no unexported fields, interfaces, channels or functions. If a
// later core.Session has any, the store decodes every time instead.
var sessionCacheable = cloneable(reflect.TypeFor[core.Session](), map[reflect.Type]bool{})

// chargeCacheable is the same for core.Charge.
var chargeCacheable = cloneable(reflect.TypeFor[core.Charge](), map[reflect.Type]bool{})
