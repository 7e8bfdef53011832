package boltstore

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"sync"

	json "github.com/go-json-experiment/json/v1"
	"github.com/hppd/hppd/core"
	"github.com/klauspost/compress/s2"
)

// Value encodings, told apart by a value's first byte. Both compressors use
// the preset dictionary dict1, which is what makes values of a few KiB
// compress well. Which one a value gets is a trade between the writer's time
// and the disk:
//
//   - fast (codecS2Dict1): S2 (github.com/klauspost/compress/s2, a Snappy
//     extension), a few µs for a session, to about 0.28 of its JSON. Records
//     written on a request's path take this one: a charge, its
//     Idempotency-Key record and its token are each written once or more in
//     each of the fallback's commits. For a charge S2 takes about 4 µs
//     against DEFLATE's 52, and 2 µs against 17 to decode, for about a third
//     more bytes (0.44 of the JSON against 0.33); charges and keys are a
//     small part of the file. A pending session, read and written by every
//     callback, is S2 of its binary encoding instead (codecSessionBin1,
//     sessioncodec.go).
//   - dense (codecDeflateDict1): DEFLATE at level 6 (compress/flate), to
//     about 0.19 of the JSON but some tens of µs (most of it resetting the
//     compressor's tables and priming the dictionary). Final sessions take
//     this one: they are most of the file, and written once. It is what
//     keeps a session under 2 KiB on disk. (zstd with the same dictionary
//     came out about 13% larger at its fastest level, and about five times
//     slower than flate under the race detector, which the module's tests
//     run with.)
//
// Either encoding reads back whatever the record's kind: the codec byte
// says which, so a file written before a record kind changed encodings
// needs no migration.
//
// The JSON inside is encoding/json's, written and read by
// github.com/go-json-experiment/json/v1: encoding/json's API and behaviour
// on the json/v2 engine (the code Go ships as encoding/json under
// GOEXPERIMENT=jsonv2). Decoding a session's JSON takes it 13 µs and 19
// allocations against encoding/json's 27 µs and 67 (the binary encoding:
// 3 µs, S2 included); it writes the same bytes (a string that is not valid
// UTF-8 aside, which both read back to the same value: codec_json_test.go
// holds every record type to that). When encoding/json itself runs on the
// v2 engine, the import can go back to it with no change to the format.
const (
	codecS2Dict1      byte = 0x01 // 0x01 ‖ S2 block of the JSON against dict1
	codecDeflateDict1 byte = 0x02 // 0x02 ‖ raw DEFLATE (RFC 1951) of the JSON, preset dictionary dict1
	codecSessionBin1  byte = 0x05 // 0x05 ‖ S2 block of a session's binary encoding (sessioncodec.go), no dictionary
	// A value whose first byte is '{' is plain JSON: schema 1 wrote every
	// value that way, and schema 2 keeps a value plain when compressing does
	// not make it smaller.
	codecPlainJSON byte = '{'
)

// density picks a value encoding.
type density bool

const (
	fast  density = false
	dense density = true
)

// deflateLevel is the level of dense values: 6 compresses a session about
// 7% better than 2 at a similar cost (most of the time goes to resetting the
// compressor and priming the dictionary).
const deflateLevel = 6

// dict1 is the preset dictionary of both codecs: one JSON value of each
// stored type (the session last: it is the most common record, and S2 copies
// from close by are cheaper), so that field names, statuses, history reasons
// and Klarna URL prefixes cost a few bytes each. It is part of the file
// format: values written with it can only be read with it, so it must never
// change. A better dictionary gets a new codec byte instead.
const dict1 = `{"storefront":"shop","customer_token":"-","last_charge_id":"chg_","last_outcome":"charged","last` +
	`_charge_at":"2025-01-01T12:00:00.1Z","recovered":true,"recovered_at":"2025-01-01T12:00:00.1Z","r` +
	`ecovered_by":"ses_"}{"storefront":"shop","key":"-","request_hash":"AQ==","status":201,"body":"e3` +
	`0=","done":true,"created_at":"2025-01-01T12:00:00.1Z"}{"id":"place_order/ses_","kind":"place_ord` +
	`er","session_id":"ses_","charge_id":"chg_","request":"e30=","idempotency_key":"-","storefront":"` +
	`shop","event_type":"session.","source":"callback","due_at":"2025-01-01T12:00:00.1Z","created_at"` +
	`:"2025-01-01T12:00:00.1Z","attempts":1,"last_error":"-","last_attempt_at":"2025-01-01T12:00:00.1` +
	`Z"}{"id":"chg_","storefront":"shop","customer_token":"-","customer_present":true,"auto_capture":` +
	`true,"status":"charged","order_id":"-","fraud_status":"ACCEPTED","error":{"http_status":403,"err` +
	`or_code":"PAYMENT_METHOD_FAILED","error_messages":["-"],"correlation_id":"-","operation":"place_` +
	`order"},"session_id":"ses_","request":"e30=","try":1,"attempt_key":"chg_","retries":1,"attempts"` +
	`:[{"at":"2025-01-01T12:00:00.1Z","idempotency_key":"chg_","result":"transient","http_status":503` +
	`,"error_code":"SERVICE_UNAVAILABLE","correlation_id":"-"}],"created_at":"2025-01-01T12:00:00.1Z"` +
	`,"updated_at":"2025-01-01T12:00:00.1Z","history":[{"at":"2025-01-01T12:00:00.1Z","from":"pending` +
	`","to":"charged","source":"api"}]}{"id":"ses_","storefront":"shop","charge_id":"chg_","integrati` +
	`on":"hpp","place_order_mode":"NONE","status":"pending","customer_token":"-","client_token":"eyJh` +
	`bGciOiJSUzI1NiIs","klarna_status":"WAITING","error":{"http_status":403,"error_code":"PAYMENT_MET` +
	`HOD_FAILED","error_messages":["-"],"correlation_id":"-","operation":"place_order"},"disable_reas` +
	`on":"expire","check_at":"2025-01-01T12:00:00.1Z"}"https://pay.playground.klarna.com/eu/hpp/payme` +
	`nts/","https://api.playground.klarna.com/hpp/v1/sessions/"{"id":"ses_","storefront":"shop","inte` +
	`gration":"hpp","place_order_mode":"NONE","status":"order_placed","purchase":{"purchase_country":` +
	`"SE","purchase_currency":"SEK","locale":"sv-SE","order_amount":10000,"order_tax_amount":2000,"or` +
	`der_lines":[{"type":"physical","reference":"SKU-","name":"Product","quantity":1,"quantity_unit":` +
	`"pcs","unit_price":10000,"tax_rate":2500,"total_amount":10000,"total_discount_amount":1,"total_t` +
	`ax_amount":2000,"product_url":"https://www.","image_url":"https://"},{"type":"shipping_fee","nam` +
	`e":"Shipping","quantity":1,"unit_price":0,"tax_rate":2500,"total_amount":0,"total_tax_amount":0}` +
	`],"merchant_reference1":"order-","billing_address":{"city":"Stockholm","country":"SE","email":"@` +
	`example.com","family_name":"Andersson","given_name":"Anna","phone":"+46","postal_code":"123 45",` +
	`"street_address":"Storgatan 1"}},"return_urls":{"success":"https://www.","failure":"https://www.` +
	`","cancel":"https://www.","back":"https://www."},"kp_session_id":"-","hpp_session_id":"-","redir` +
	`ect_url":"https://pay.klarna.com/eu/hpp/payments/","qr_code_url":"https://pay.klarna.com/eu/hpp/` +
	`payments/","distribution_url":"https://api.klarna.com/hpp/v1/sessions/-/distribution","secret_ha` +
	`sh":"AQ==","klarna_status":"COMPLETED","klarna_updated_at":"2025-01-01T12:00:00.1Z","authorizati` +
	`on_token":"-","authorized_at":"2025-01-01T12:00:00.1Z","order_id":"-","fraud_status":"ACCEPTED",` +
	`"created_at":"2025-01-01T12:00:00.1Z","updated_at":"2025-01-01T12:00:00.1Z","expires_at":"2025-0` +
	`1-01T12:00:00.1Z","history":[{"at":"2025-01-01T12:00:00.1Z","to":"pending","klarna_status":"WAIT` +
	`ING","source":"api","reason":"created"},{"at":"2025-01-01T12:00:00.1Z","from":"pending","to":"pe` +
	`nding","klarna_status":"IN_PROGRESS","source":"callback"},{"at":"2025-01-01T12:00:00.1Z","from":` +
	`"pending","to":"pending","klarna_status":"COMPLETED","source":"poller"},{"at":"2025-01-01T12:00:` +
	`00.1Z","from":"pending","to":"authorized","klarna_status":"COMPLETED","source":"poller","reason"` +
	`:"klarna authorized the purchase"},{"at":"2025-01-01T12:00:00.1Z","from":"authorized","to":"orde` +
	`r_placed","klarna_status":"COMPLETED","source":"job","reason":"order placed"}]}`

// s2Dict1 is dict1 ready for S2; its first repeat offset points at the start
// of the session template. A *s2.Dict is safe for concurrent use.
var s2Dict1 = s2.MakeDict(dict1Bytes, []byte(`{"id":"ses_"`))

// Pools of DEFLATE writers and readers primed with dict1: a new writer
// allocates over 600 KiB.
var (
	dict1Bytes = []byte(dict1)
	deflaters  = sync.Pool{New: func() any {
		w, err := flate.NewWriterDict(nil, deflateLevel, dict1Bytes)
		if err != nil {
			panic("store: flate.NewWriterDict: " + err.Error()) // only for a bad level
		}
		return w
	}}
	inflaters = sync.Pool{New: func() any { return flate.NewReaderDict(nil, dict1Bytes) }}
)

// encodeValue returns the stored form of v: its JSON, compressed fast or
// dense (see the codec notes above) when that is smaller. The slice is
// freshly allocated and tight: bbolt keeps it until the transaction commits.
func encodeValue(v any, d density) ([]byte, error) {
	if s, ok := v.(*core.Session); ok && d == fast {
		return encodeSessionBin(s), nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if len(raw) == 0 || raw[0] != codecPlainJSON {
		return nil, fmt.Errorf("encode: %T is not a JSON object", v)
	}
	var out []byte
	if d == dense {
		if out, err = deflate(raw); err != nil {
			return nil, err
		}
	} else {
		enc := s2Dict1.Encode(nil, raw)
		out = make([]byte, 1+len(enc))
		out[0] = codecS2Dict1
		copy(out[1:], enc)
	}
	if len(out) >= len(raw) {
		return raw, nil
	}
	return out, nil
}

// encodeSessionBin returns codecSessionBin1 ‖ S2 of the binary encoding of
// s, in a tight slice.
func encodeSessionBin(s *core.Session) []byte {
	buf := binBufs.Get().(*[]byte)
	raw := appendSession((*buf)[:0], s)
	enc := s2.Encode(nil, raw)
	if cap(raw) <= maxPooledBuf {
		*buf = raw
		binBufs.Put(buf)
	}
	out := make([]byte, 1+len(enc))
	out[0] = codecSessionBin1
	copy(out[1:], enc)
	return out
}

// binBufs are the scratch buffers of encodeSessionBin; one that grew past
// maxPooledBuf (a session with hundreds of order lines) is left to the
// collector rather than kept.
var binBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooledBuf = 64 << 10

// deflate returns codecDeflateDict1 ‖ DEFLATE(raw), in a tight slice.
func deflate(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(raw)/4 + 64)
	buf.WriteByte(codecDeflateDict1)
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&buf)
	_, err := w.Write(raw)
	if err == nil {
		err = w.Close()
	}
	deflaters.Put(w)
	if err != nil {
		return nil, fmt.Errorf("encode: deflate: %w", err)
	}
	return bytes.Clone(buf.Bytes()), nil
}

// inflate undoes deflate (without the codec byte).
func inflate(b []byte) ([]byte, error) {
	r := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(b), dict1Bytes); err != nil {
		return nil, fmt.Errorf("decode: inflate: %w", err)
	}
	var out bytes.Buffer
	out.Grow(len(b) * 6)
	if _, err := out.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("decode: inflate: %w", err)
	}
	return out.Bytes(), nil
}

// decodeValue decodes a stored value into v. The result never aliases b
// (which may point into bbolt's memory map): decompressing and encoding/json
// both copy.
func decodeValue(b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("decode: empty value")
	}
	raw := b
	switch b[0] {
	case codecPlainJSON:
	case codecS2Dict1:
		var err error
		if raw, err = s2Dict1.Decode(nil, b[1:]); err != nil {
			return fmt.Errorf("decode: s2: %w", err)
		}
	case codecDeflateDict1:
		var err error
		if raw, err = inflate(b[1:]); err != nil {
			return err
		}
	case codecSessionBin1:
		s, ok := v.(*core.Session)
		if !ok {
			return fmt.Errorf("decode: a binary session read as %T", v)
		}
		raw, err := s2.Decode(nil, b[1:])
		if err != nil {
			return fmt.Errorf("decode: s2: %w", err)
		}
		return decodeSession(raw, s)
	case codecMarks:
		_, body, err := splitMarks(b)
		if err != nil {
			return err
		}
		if len(body) > 0 && body[0] == codecMarks {
			return fmt.Errorf("decode: nested event marks")
		}
		return decodeValue(body, v)
	case codecDue:
		_, value, err := splitDue(b)
		if err != nil {
			return err
		}
		return decodeValue(value, v)
	default:
		return fmt.Errorf("decode: unknown value encoding 0x%02x", b[0])
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}
