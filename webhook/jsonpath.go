package webhook

import (
	"bytes"
	"encoding"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/hppd/hppd/core"
)

// explainDecode finds where a request body that encoding/json refused
// departs from the Go value v it was decoded into, and says so in the
// client's terms: the JSON path with array indexes ("order_lines[0].quantity")
// and the JSON type expected ("an integer"), never a Go type name. It returns
// nil when it finds nothing (the caller then keeps encoding/json's error).
//
// It walks the body decoded as generic JSON alongside v's type: struct
// fields by their json names (embedded structs flattened, as encoding/json
// does), slices, maps, pointers and the basic kinds. Types with their own
// UnmarshalJSON or UnmarshalText are taken as strings or anything,
// since only they know their form.
func explainDecode(body []byte, v any) *core.Error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if dec.Decode(&doc) != nil {
		return nil
	}
	return walkJSON("", doc, reflect.TypeOf(v))
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func walkJSON(path string, doc any, t reflect.Type) *core.Error {
	for t.Kind() == reflect.Pointer {
		if doc == nil {
			return nil
		}
		t = t.Elem()
	}
	if doc == nil {
		return nil // null leaves any Go value as it is
	}
	name := path
	if name == "" {
		name = "body"
	}
	pt := reflect.PointerTo(t)
	if pt.Implements(jsonUnmarshaler) {
		return nil
	}
	if pt.Implements(textUnmarshaler) {
		if _, ok := doc.(string); !ok {
			return core.Invalid(name, "must be a string")
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := doc.(map[string]any)
		if !ok {
			return core.Invalid(name, "must be an object")
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(obj) {
			if k == "" {
				return core.Invalid(name, "has a field with an empty name")
			}
			f, ok := fields[strings.ToLower(k)]
			if !ok {
				return core.Invalid(join(path, k), "is not a known field")
			}
			if err := walkJSON(join(path, k), obj[k], f); err != nil {
				return err
			}
		}
	case reflect.Map:
		obj, ok := doc.(map[string]any)
		if !ok {
			return core.Invalid(name, "must be an object")
		}
		for _, k := range sortedKeys(obj) {
			if err := walkJSON(join(path, k), obj[k], t.Elem()); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			if _, ok := doc.(string); !ok {
				return core.Invalid(name, "must be a base64 string")
			}
			return nil
		}
		arr, ok := doc.([]any)
		if !ok {
			return core.Invalid(name, "must be an array")
		}
		for i, e := range arr {
			if err := walkJSON(path+"["+strconv.Itoa(i)+"]", e, t.Elem()); err != nil {
				return err
			}
		}
	case reflect.String:
		if _, ok := doc.(string); !ok {
			return core.Invalid(name, "must be a string")
		}
	case reflect.Bool:
		if _, ok := doc.(bool); !ok {
			return core.Invalid(name, "must be true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := doc.(json.Number)
		if !ok {
			return core.Invalid(name, "must be an integer")
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			hi := uint64(1)<<(t.Bits()-1) - 1
			return core.Invalid(name, "must be an integer between -%d and %d", hi+1, hi)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := doc.(json.Number)
		if !ok {
			return core.Invalid(name, "must be an integer")
		}
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			return core.Invalid(name, "must be a non-negative integer of at most %d bits", t.Bits())
		}
	case reflect.Float32, reflect.Float64:
		n, ok := doc.(json.Number)
		if !ok {
			return core.Invalid(name, "must be a number")
		}
		if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			return core.Invalid(name, "is out of range")
		}
	}
	return nil
}

// jsonFields maps the lower-cased JSON names of t's fields (embedded structs
// flattened) to their types; encoding/json matches names case-insensitively.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, taken := out[k]; !taken {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[strings.ToLower(name)] = ft
	}
	return out
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// sortedKeys: sorted so that the field named is the same on every run.
func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
