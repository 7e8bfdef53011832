package boltstore

import (
	"bytes"
	"reflect"
	"sync"
	"time"

	"github.com/hppd/hppd/core"
)

// sessionCache keeps recently decoded sessions, keyed by id and validated by
// the exact stored bytes, so that the writer does not decode JSON again for a
// session a reader has just decoded. The callback path reads a session in a
// View (to check the secret, on any core), then again inside its Batch (on
// the single writer, whose time bounds group-commit throughput): with the
// cache the second read is a byte comparison and a deep copy, not a JSON
// decode.
//
// Correctness does not depend on invalidation: an entry is used only when the
// bytes stored under its id right now (the session's part of them, without
// the event marks a callback adds: events.go) equal the bytes it was decoded from
// (also for writes later rolled back: their bytes are simply never found).
// Callers never see a cached object, only deep copies of it.
type sessionCache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
	max     int
}

type cacheEntry struct {
	raw []byte
	s   *core.Session
}

// sessionCacheSize bounds the cache: the sessions with callbacks in flight.
const sessionCacheSize = 4096

func newSessionCache(max int) *sessionCache {
	return &sessionCache{entries: make(map[string]cacheEntry, max), max: max}
}

// get returns a deep copy of the cached session decoded from raw.
func (c *sessionCache) get(id string, raw []byte) (*core.Session, bool) {
	if c == nil {
		return nil, false
	}
	raw = sessionBody(raw)
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.raw, raw) {
		return nil, false
	}
	return cloneSession(e.s), true
}

// keys returns the index keys of the cached session decoded from raw.
func (c *sessionCache) keys(id string, raw []byte) (recordKeys, bool) {
	if c == nil {
		return recordKeys{}, false
	}
	raw = sessionBody(raw)
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.raw, raw) {
		return recordKeys{}, false
	}
	return sessionKeys(e.s), true
}

// put remembers s as the decoding of raw; it keeps its own copies of both.
func (c *sessionCache) put(id string, raw []byte, s *core.Session) {
	if c == nil {
		return
	}
	raw = sessionBody(raw)
	e := cacheEntry{raw: bytes.Clone(raw), s: cloneSession(s)}
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
