package store

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"io"
	"sync"
)

// Value encodings, told apart by a value's first byte.
const (
	// codecDeflate1: raw DEFLATE (RFC 1951) of the JSON, compressed with the
	// preset dictionary dict1.
	codecDeflate1 byte = 0x01
	// A value whose first byte is '{' is plain JSON: schema 1 wrote every value
	// that way, and schema 2 keeps a value plain when deflating does not make
	// it smaller.
	codecPlainJSON byte = '{'
)

// compressLevel trades speed for size. Level 2 is the fastest level that uses
// the preset dictionary (level 1 ignores it); higher levels save little on
// values of a few KiB and cost more time inside the single writer.
const compressLevel = 2

// dict1 is the preset dictionary of codecDeflate1: one JSON value of each
// stored type, so field names, statuses and Klarna URL prefixes compress to a
// few bits. It is part of the file format: values written with it can only be
// read with it, so it must never change. A better dictionary gets a new codec
// byte instead.
const dict1 = `{"storefront":"shop","customer_token":"-","last_charge_id":"-","last_outcome":"charged","last_ch` +
	`arge_at":"2025-01-01T12:00:00Z","recovered":true,"recovered_at":"2025-01-01T12:00:00Z","recovere` +
	`d_by":"-"}{"storefront":"shop","key":"-","request_hash":"AQ==","status":201,"body":"e30=","done"` +
	`:true,"created_at":"2025-01-01T12:00:00Z"}{"id":"place_order/","kind":"place_order","session_id"` +
	`:"-","charge_id":"-","request":"e30=","idempotency_key":"-","storefront":"shop","event_type":"se` +
	`ssion.authorized","source":"callback","due_at":"2025-01-01T12:00:00Z","created_at":"2025-01-01T1` +
	`2:00:00Z","attempts":1,"last_error":"-","last_attempt_at":"2025-01-01T12:00:00Z"}{"id":"-","stor` +
	`efront":"shop","customer_token":"-","customer_present":true,"auto_capture":true,"status":"charge` +
	`d","order_id":"-","fraud_status":"ACCEPTED","session_id":"-","request":"e30=","try":1,"attempt_k` +
	`ey":"-","retries":1,"attempts":[{"at":"2025-01-01T12:00:00Z","idempotency_key":"-","result":"tra` +
	`nsient","http_status":503,"error_code":"SERVICE_UNAVAILABLE","correlation_id":"-"}],"created_at"` +
	`:"2025-01-01T12:00:00Z","updated_at":"2025-01-01T12:00:00Z","history":[{"at":"2025-01-01T12:00:0` +
	`0Z","from":"pending","to":"charged","source":"api"}]}{"id":"-","storefront":"shop","charge_id":"` +
	`-","integration":"hpp","place_order_mode":"NONE","status":"pending","customer_token":"-","purcha` +
	`se":{"purchase_country":"SE","purchase_currency":"SEK","locale":"sv-SE","order_amount":10000,"or` +
	`der_tax_amount":2000,"order_lines":[{"type":"physical","reference":"SKU-","name":"Product","quan` +
	`tity":1,"quantity_unit":"pcs","unit_price":10000,"tax_rate":2500,"total_amount":10000,"total_dis` +
	`count_amount":1,"total_tax_amount":2000,"product_url":"https://www.","image_url":"https://"},{"t` +
	`ype":"shipping_fee","name":"Shipping","quantity":1,"unit_price":0,"tax_rate":2500,"total_amount"` +
	`:0,"total_tax_amount":0}],"merchant_reference1":"order-","billing_address":{"city":"Stockholm","` +
	`country":"SE","email":"@example.com","family_name":"Andersson","given_name":"Anna","phone":"+46"` +
	`,"postal_code":"12345","street_address":"gatan 1"}},"return_urls":{"success":"https://www.exampl` +
	`e.com/checkout/success","failure":"https://www.example.com/checkout/failure","cancel":"https://w` +
	`ww.example.com/checkout/cancel","back":"https://www.example.com/checkout/back","error":"https://` +
	`www.example.com/checkout/error"},"kp_session_id":"-","hpp_session_id":"-","redirect_url":"https:` +
	`//pay.klarna.com/eu/hpp/payments/","qr_code_url":"https://pay.klarna.com/eu/hpp/payments/","dist` +
	`ribution_url":"https://api.klarna.com/hpp/v1/sessions/-/distribution","client_token":"eyJhbGciOi` +
	`","secret_hash":"AQ==","klarna_status":"IN_PROGRESS","klarna_updated_at":"2025-01-01T12:00:00Z",` +
	`"authorization_token":"-","authorized_at":"2025-01-01T12:00:00Z","order_id":"-","fraud_status":"` +
	`ACCEPTED","error":{"http_status":403,"error_code":"PAYMENT_METHOD_FAILED","error_messages":["x"]` +
	`,"correlation_id":"-","operation":"place_order"},"disable_reason":"expire","created_at":"2025-01` +
	`-01T12:00:00Z","updated_at":"2025-01-01T12:00:00Z","expires_at":"2025-01-01T12:00:00Z","check_at` +
	`":"2025-01-01T12:00:00Z","history":[{"at":"2025-01-01T12:00:00Z","to":"pending","source":"api","` +
	`reason":"created"},{"at":"2025-01-01T12:00:00Z","from":"pending","to":"pending","klarna_status":` +
	`"IN_PROGRESS","source":"callback"},{"at":"2025-01-01T12:00:00Z","from":"pending","to":"authorize` +
	`d","klarna_status":"COMPLETED","source":"poller","reason":"klarna authorized the purchase"},{"at` +
	`":"2025-01-01T12:00:00Z","from":"authorized","to":"order_placed","klarna_status":"COMPLETED","so` +
	`urce":"job","reason":"order placed"}]}`

var (
	dict1Bytes = []byte(dict1)
	writerPool = sync.Pool{New: func() any { w, _ := flate.NewWriterDict(nil, compressLevel, dict1Bytes); return w }}
	readerPool = sync.Pool{New: func() any { return flate.NewReaderDict(nil, dict1Bytes) }}
)

// encodeValue returns the stored form of v: its JSON, deflated with dict1 when
// that is smaller. The slice is freshly allocated: bbolt keeps a reference to
// it until the transaction commits.
func encodeValue(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if len(raw) == 0 || raw[0] != codecPlainJSON {
		return nil, fmt.Errorf("encode: %T is not a JSON object", v)
	}
	var buf bytes.Buffer
	buf.Grow(len(raw)/2 + 64)
	buf.WriteByte(codecDeflate1)
	w := writerPool.Get().(*flate.Writer)
	w.Reset(&buf)
	_, err = w.Write(raw)
	if err == nil {
		err = w.Close()
	}
	w.Reset(io.Discard)
	writerPool.Put(w)
	if err != nil {
		return nil, fmt.Errorf("deflate: %w", err)
	}
	if buf.Len() >= len(raw) {
		return raw, nil
	}
	return buf.Bytes(), nil
}

// decodeValue decodes a stored value into v. The result never aliases b
// (which may point into bbolt's memory map): both inflating and
// encoding/json copy.
func decodeValue(b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("decode: empty value")
	}
	switch b[0] {
	case codecPlainJSON:
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		return nil
	case codecDeflate1:
		raw, err := inflate(b[1:])
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		return nil
	}
	return fmt.Errorf("decode: unknown value encoding 0x%02x", b[0])
}

// inflate undoes codecDeflate1.
func inflate(b []byte) ([]byte, error) {
	r := readerPool.Get().(io.ReadCloser)
	defer readerPool.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(b), dict1Bytes); err != nil {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	var out bytes.Buffer
	out.Grow(len(b) * 4)
	if _, err := out.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	return out.Bytes(), nil
}
