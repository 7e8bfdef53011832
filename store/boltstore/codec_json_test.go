package boltstore

import (
	"bytes"
	stdjson "encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	json "github.com/go-json-experiment/json/v1"
	"github.com/hppd/hppd/core"
)

// The codec encodes and decodes with github.com/go-json-experiment/json/v1
// (encoding/json's behaviour on the v2 engine) for its speed. The file
// format is what encoding/json writes: every value written before the switch
// must read back the same, and every value written after must be the bytes
// encoding/json would have written. These tests hold both sides to that, for
// every record type the codec stores, on values with every field set. The one
// difference in bytes is a string that is not valid UTF-8 (see sameValue),
// and it decodes to the same value.

// codecRecordTypes are the record types the store encodes.
var codecRecordTypes = []reflect.Type{
	reflect.TypeFor[core.Session](),
	reflect.TypeFor[core.Charge](),
	reflect.TypeFor[core.Job](),
	reflect.TypeFor[core.TokenInfo](),
	reflect.TypeFor[core.IdempotencyRecord](),
}

func TestCodecJSONIsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for _, typ := range codecRecordTypes {
		t.Run(typ.Name(), func(t *testing.T) {
			for i := range 300 {
				v := reflect.New(typ)
				invalid := i%3 == 0
				fillRandom(r, v.Elem(), invalid)
				want, err := stdjson.Marshal(v.Interface())
				if err != nil {
					t.Fatal(err)
				}
				got, err := json.Marshal(v.Interface())
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) && !(invalid && sameValue(t, typ, got, want)) {
					t.Fatalf("value %d encodes differently:\nencoding/json: %s\ncodec:         %s", i, want, got)
				}
				std, fast := reflect.New(typ), reflect.New(typ)
				if err := stdjson.Unmarshal(want, std.Interface()); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(want, fast.Interface()); err != nil {
					t.Fatalf("value %d: codec cannot decode what encoding/json wrote: %v\n%s", i, err, want)
				}
				if !reflect.DeepEqual(std.Interface(), fast.Interface()) {
					t.Fatalf("value %d decodes differently:\nencoding/json: %+v\ncodec:         %+v", i, std.Interface(), fast.Interface())
				}
			}
		})
	}
}

// sameValue reports whether a and b, encodings of a typ, decode to the same
// value with encoding/json. A string that is not valid UTF-8 is the one
// difference in bytes: encoding/json escapes the U+FFFD it puts in place of
// each invalid byte as \ufffd, the codec writes the character itself.
func sameValue(t *testing.T, typ reflect.Type, a, b []byte) bool {
	t.Helper()
	va, vb := reflect.New(typ), reflect.New(typ)
	if err := stdjson.Unmarshal(a, va.Interface()); err != nil {
		t.Fatal(err)
	}
	if err := stdjson.Unmarshal(b, vb.Interface()); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(va.Interface(), vb.Interface())
}

// TestCodecRoundTripsEveryField checks through the codec's own functions,
// both densities, that a value with every field set comes back equal to the
// value encoding/json decodes from encoding/json's bytes.
func TestCodecRoundTripsEveryField(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for _, typ := range codecRecordTypes {
		for _, d := range []density{fast, dense} {
			v := reflect.New(typ)
			fillRandom(r, v.Elem(), false)
			raw, err := encodeValue(v.Interface(), d)
			if err != nil {
				t.Fatal(err)
			}
			got := reflect.New(typ)
			if err := decodeValue(raw, got.Interface()); err != nil {
				t.Fatal(err)
			}
			b, _ := stdjson.Marshal(v.Interface())
			want := reflect.New(typ)
			if err := stdjson.Unmarshal(b, want.Interface()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Interface(), want.Interface()) {
				t.Errorf("%s (dense %v) round trip:\ngot  %+v\nwant %+v", typ.Name(), d, got.Interface(), want.Interface())
			}
		}
	}
}

// FuzzCodecDecodeIsEncodingJSON: whatever JSON encoding/json decodes into a
// session, the codec decodes to the same value, and both encode that value
// to the same bytes.
func FuzzCodecDecodeIsEncodingJSON(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 8 {
		var s core.Session
		fillRandom(r, reflect.ValueOf(&s).Elem(), i%2 == 0)
		b, _ := stdjson.Marshal(&s)
		f.Add(b)
	}
	f.Add([]byte(`{"ID":"case","status":"pending","history":null,"purchase":{"order_lines":[]}}`))
	f.Add([]byte(`{"id":"a","id":"b","created_at":"2025-01-01T12:00:00+02:00","rereads":1e2}`))
	f.Add([]byte("{\"storefront\":\"\xff\xfe\",\"secret_hash\":\"AQ==\"}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var std core.Session
		if stdjson.Unmarshal(b, &std) != nil {
			return
		}
		var fast core.Session
		if err := json.Unmarshal(b, &fast); err != nil {
			t.Fatalf("encoding/json decodes %q, the codec does not: %v", b, err)
		}
		if !reflect.DeepEqual(std, fast) {
			t.Fatalf("%q decodes differently:\nencoding/json: %+v\ncodec:         %+v", b, std, fast)
		}
		want, err1 := stdjson.Marshal(&std)
		got, err2 := json.Marshal(&fast)
		if (err1 == nil) != (err2 == nil) || !bytes.Equal(got, want) {
			t.Fatalf("encodes differently:\nencoding/json: %s (%v)\ncodec:         %s (%v)", want, err1, got, err2)
		}
	})
}

// fillRandom sets every field of v, recursively. Strings mix plain text,
// characters JSON escapes (HTML-sensitive ones included) and, when invalid,
// bytes that are not UTF-8 (encoding/json writes U+FFFD for them); times
// carry nanoseconds and, now and then, a zone other than UTC.
func fillRandom(r *rand.Rand, v reflect.Value, invalid bool) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(randomString(r, invalid))
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int64, reflect.Int32:
		if v.Type() == reflect.TypeFor[time.Duration]() {
			v.SetInt(r.Int64N(int64(48 * time.Hour)))
			return
		}
		v.SetInt(r.Int64N(1<<40) - 1<<39)
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint8:
		v.SetUint(uint64(r.IntN(200)))
	case reflect.Float64:
		v.SetFloat(r.Float64() * 1e6)
	case reflect.Pointer:
		if r.IntN(4) == 0 {
			return
		}
		p := reflect.New(v.Type().Elem())
		fillRandom(r, p.Elem(), invalid)
		v.Set(p)
	case reflect.Slice:
		n := r.IntN(4)
		if n == 0 && r.IntN(2) == 0 {
			return // nil
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fillRandom(r, s.Index(i), invalid)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range r.IntN(3) {
			k := reflect.New(v.Type().Key()).Elem()
			fillRandom(r, k, invalid)
			e := reflect.New(v.Type().Elem()).Elem()
			fillRandom(r, e, invalid)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			at := time.Unix(r.Int64N(4e9), r.Int64N(1e9)).UTC()
			if r.IntN(5) == 0 {
				at = at.In(time.FixedZone("", 3600*(r.IntN(25)-12)))
			}
			if r.IntN(6) == 0 {
				at = time.Time{}
			}
			v.Set(reflect.ValueOf(at))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillRandom(r, v.Field(i), invalid)
			}
		}
	default:
		panic(fmt.Sprintf("fillRandom: %s", v.Type()))
	}
}

func randomString(r *rand.Rand, invalid bool) string {
	pieces := []string{"ses_", "shop", "Stockholm", "Åsa Öberg", "<b>&amp;</b>", `"quoted"`, `back\slash`, "\n\t", "\u2028\u2029", "日本", "\x00\x1f", "€", "https://example.com/?a=1&b=2"}
	if invalid {
		pieces = append(pieces, "\xff", "\xc3", "\xed\xa0\x80")
	}
	if r.IntN(8) == 0 {
		return ""
	}
	var b []byte
	for range 1 + r.IntN(4) {
		b = append(b, pieces[r.IntN(len(pieces))]...)
	}
	return string(b)
}
