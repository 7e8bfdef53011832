package boltstore

import (
	stdjson "encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/hppd/hppd/core"
)

// jsonRoundTrip is what s read back as when sessions were JSON: the value
// the binary encoding must give back too.
func jsonRoundTrip(t testing.TB, s *core.Session) *core.Session {
	t.Helper()
	b, err := stdjson.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out core.Session
	if err := stdjson.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// TestSessionBinaryKeepsEveryField: a pending session with every field set
// (strings with bytes that are not UTF-8, times in other zones, nil and empty
// slices) is stored in the binary encoding and reads back as the value its
// JSON reads back as. A field of core.Session the codec does not carry fails
// here: fillRandom sets every field.
func TestSessionBinaryKeepsEveryField(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 19))
	for i := range 500 {
		var s core.Session
		fillRandom(r, reflect.ValueOf(&s).Elem(), i%3 == 0)
		if i%7 == 0 {
			s.CreatedAt = time.Unix(r.Int64N(4e9), 0).In(time.FixedZone("", 0))
		}
		val, err := encodeValue(&s, fast)
		if err != nil {
			t.Fatal(err)
		}
		if val[0] != codecSessionBin1 {
			t.Fatalf("value %d stored with codec 0x%02x, want 0x%02x", i, val[0], codecSessionBin1)
		}
		var got core.Session
		if err := decodeValue(val, &got); err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if want := jsonRoundTrip(t, &s); !reflect.DeepEqual(&got, want) {
			g, _ := stdjson.Marshal(&got)
			w, _ := stdjson.Marshal(want)
			t.Fatalf("value %d reads back differently from its JSON:\ngot  %s\nwant %s\n(%#v\n%#v)", i, g, w, got, *want)
		}
	}
}

// TestSessionBinaryRefusesDamage: every truncation of an encoding, trailing
// bytes, and a binary session read as another record type are errors, not
// panics or partial values.
func TestSessionBinaryRefusesDamage(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 29))
	var s core.Session
	fillRandom(r, reflect.ValueOf(&s).Elem(), false)
	s.History = append(s.History, core.Change{At: t0, To: "pending", Source: core.SourceAPI})
	s.Purchase.OrderLines = append(s.Purchase.OrderLines, core.OrderLine{Name: "x", Quantity: 1})
	raw := appendSession(nil, &s)
	var got core.Session
	if err := decodeSession(raw, &got); err != nil {
		t.Fatal(err)
	}
	for n := range len(raw) {
		if err := decodeSession(raw[:n], &got); !errors.Is(err, errSessionBin) {
			t.Fatalf("%d of %d bytes: %v, want errSessionBin", n, len(raw), err)
		}
	}
	if err := decodeSession(append(raw[:len(raw):len(raw)], 0), &got); !errors.Is(err, errSessionBin) {
		t.Errorf("a trailing byte: %v", err)
	}
	val := encodeSessionBin(&s)
	var c core.Charge
	if err := decodeValue(val, &c); err == nil {
		t.Error("a binary session decoded into a charge")
	}
	val[len(val)-1] ^= 0xff
	if err := decodeValue(val, &got); err == nil {
		t.Error("a damaged S2 block decoded")
	}
}

// FuzzSessionBinary: any input decodes to a session or an error, never a
// panic; a session it decodes to encodes and reads back to what JSON reads
// the first as.
func FuzzSessionBinary(f *testing.F) {
	r := rand.New(rand.NewPCG(31, 37))
	for i := range 6 {
		var s core.Session
		fillRandom(r, reflect.ValueOf(&s).Elem(), i%2 == 0)
		raw := appendSession(nil, &s)
		f.Add(raw)
		f.Add(raw[:len(raw)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s core.Session
		if decodeSession(b, &s) != nil {
			return
		}
		var again core.Session
		if err := decodeSession(appendSession(nil, &s), &again); err != nil {
			t.Fatalf("a decoded session does not read back: %v", err)
		}
		// Compared as JSON reads them: the first may hold bytes that are
		// not UTF-8, which the encoding made U+FFFD in the second.
		b1, err1 := stdjson.Marshal(&s)
		b2, err2 := stdjson.Marshal(&again)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("JSON of the first: %v, of the second: %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		var first, second core.Session
		if err := stdjson.Unmarshal(b1, &first); err != nil {
			t.Fatal(err)
		}
		if err := stdjson.Unmarshal(b2, &second); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(first, second) {
			t.Fatalf("reads back differently:\nfirst  %s\nsecond %s", b1, b2)
		}
	})
}
