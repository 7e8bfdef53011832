package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hppd/hppd/core"
)

// The binary session encoding (codecSessionBin1).
//
// A callback reads its session (decode) and writes it back (encode), and
// with JSON those two were a quarter of hppd's CPU per callback: JSON spends
// its time on field names, quoting and escaping, number and time text, none
// of which a record that only hppd reads needs. Sessions that are still
// written (not final: the fast density) are therefore stored as their fields
// in a fixed order, each in its smallest plain form, then S2-compressed
// (the URLs, ids and names inside are most of their bytes, and compress
// about as well as the JSON they replace did against dict1). Decoding one
// takes 3 µs instead of 14, encoding 2.5 instead of 12. S2 runs without the
// dictionary here: with it, S2 has only a Go encoder that clears a 64 KiB
// table per call, which under load cost more than the rest of the encoding.
//
// The layout, after the codec byte and the S2 block's decompression, is the
// fields of core.Session in declaration order, nested structs inline:
//
//   - string: uvarint length ‖ bytes (an invalid UTF-8 byte becomes U+FFFD,
//     as in JSON);
//   - int, int64: zig-zag varint;
//   - bool: one byte, 0 or 1;
//   - time.Time: one byte of length ‖ time.Time.AppendBinary (its instant
//     and zone offset, as JSON's RFC 3339 keeps them);
//   - slices: uvarint 0 for nil, else the number of elements plus one, then
//     the elements, so nil and empty stay apart where JSON keeps them apart
//     (history, order lines); those JSON omits when empty read back nil
//     (the hashes, error messages);
//   - pointers: one byte, 0 for nil, else 1 and the pointee.
//
// A session decodes to the value its JSON would decode to.
//
// The layout is the codec byte's: a value must decode to its last byte, so
// a change to core.Session (a new field) needs a new codec byte and layout,
// with this one still read. TestSessionBinaryKeepsEveryField fails for a
// field the codec does not carry. Final sessions keep DEFLATE of their JSON
// (the dense density): they are most of the file and written once, and JSON
// with DEFLATE is the smaller of the two.

// errSessionBin is the error of a binary session that does not decode.
var errSessionBin = errors.New("decode: binary session: truncated or malformed")

// appendSession appends the binary encoding of s to b.
func appendSession(b []byte, s *core.Session) []byte {
	b = appendString(b, s.ID)
	b = appendString(b, s.Storefront)
	b = appendString(b, s.ChargeID)
	b = appendString(b, s.Integration)
	b = appendString(b, s.PlaceOrderMode)
	b = appendString(b, string(s.Status))
	b = appendString(b, s.CustomerToken)
	b = appendPurchase(b, &s.Purchase)
	b = appendString(b, s.ReturnURLs.Success)
	b = appendString(b, s.ReturnURLs.Failure)
	b = appendString(b, s.ReturnURLs.Cancel)
	b = appendString(b, s.ReturnURLs.Back)
	b = appendString(b, s.ReturnURLs.Error)
	b = appendString(b, s.KPSessionID)
	b = appendString(b, s.HPPSessionID)
	b = appendString(b, s.HPPSessionURL)
	b = appendString(b, s.RedirectURL)
	b = appendString(b, s.QRCodeURL)
	b = appendString(b, s.DistributionURL)
	b = appendString(b, s.ClientToken)
	b = appendBytes(b, s.SecretHash)
	b = appendBytes(b, s.NotifySecretHash)
	b = appendString(b, s.KlarnaAccount)
	b = appendString(b, s.KlarnaStatus)
	b = appendTime(b, s.KlarnaUpdatedAt)
	b = appendString(b, s.AuthorizationToken)
	b = appendTime(b, s.AuthorizedAt)
	b = appendString(b, s.OrderID)
	b = appendString(b, s.FraudStatus)
	if e := s.Error; e == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.AppendVarint(b, int64(e.HTTPStatus))
		b = appendString(b, e.Code)
		b = appendStrings(b, e.Messages)
		b = appendString(b, e.CorrelationID)
		b = appendString(b, e.Operation)
	}
	b = appendString(b, s.DisableReason)
	b = appendBytes(b, s.AuthorizationTokenHash)
	b = appendBool(b, s.OrderIDUnknown)
	b = appendTime(b, s.CreatedAt)
	b = appendTime(b, s.UpdatedAt)
	b = appendTime(b, s.ExpiresAt)
	b = appendTime(b, s.CheckAt)
	b = binary.AppendVarint(b, int64(s.Rereads))
	b = binary.AppendVarint(b, s.Sequence)
	b = appendLen(b, s.History == nil, len(s.History))
	for i := range s.History {
		c := &s.History[i]
		b = appendTime(b, c.At)
		b = appendString(b, c.From)
		b = appendString(b, c.To)
		b = appendString(b, c.KlarnaStatus)
		b = appendString(b, string(c.Source))
		b = appendString(b, c.Reason)
		b = appendString(b, c.FraudStatus)
	}
	return b
}

func appendPurchase(b []byte, p *core.Purchase) []byte {
	b = appendString(b, p.PurchaseCountry)
	b = appendString(b, p.PurchaseCurrency)
	b = appendString(b, p.Locale)
	b = binary.AppendVarint(b, p.OrderAmount)
	b = binary.AppendVarint(b, p.OrderTaxAmount)
	b = appendLen(b, p.OrderLines == nil, len(p.OrderLines))
	for i := range p.OrderLines {
		l := &p.OrderLines[i]
		b = appendString(b, l.Type)
		b = appendString(b, l.Reference)
		b = appendString(b, l.Name)
		b = binary.AppendVarint(b, l.Quantity)
		b = appendString(b, l.QuantityUnit)
		b = binary.AppendVarint(b, l.UnitPrice)
		b = binary.AppendVarint(b, l.TaxRate)
		b = binary.AppendVarint(b, l.TotalAmount)
		b = binary.AppendVarint(b, l.TotalDiscountAmount)
		b = binary.AppendVarint(b, l.TotalTaxAmount)
		b = appendString(b, l.MerchantData)
		b = appendString(b, l.ProductURL)
		b = appendString(b, l.ImageURL)
		if sub := l.Subscription; sub == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = appendString(b, sub.Name)
			b = appendString(b, sub.Interval)
			b = binary.AppendVarint(b, sub.IntervalCount)
		}
	}
	b = appendString(b, p.MerchantReference1)
	b = appendString(b, p.MerchantReference2)
	b = appendAddress(b, p.BillingAddress)
	return appendAddress(b, p.ShippingAddress)
}

func appendAddress(b []byte, a *core.Address) []byte {
	if a == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	for _, f := range [...]string{a.Attention, a.City, a.Country, a.Email, a.FamilyName, a.GivenName,
		a.OrganizationName, a.Phone, a.PostalCode, a.Region, a.StreetAddress, a.StreetAddress2, a.Title} {
		b = appendString(b, f)
	}
	return b
}

// appendString appends s, with each byte that is not part of valid UTF-8
// replaced by U+FFFD as JSON does.
func appendString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = validUTF8(s)
	}
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// validUTF8 replaces each invalid byte of s by U+FFFD, as encoding/json's
// encoder does (strings.ToValidUTF8 replaces a run with one).
func validUTF8(s string) string {
	var sb strings.Builder
	sb.Grow(len(s) + 8)
	for _, r := range s {
		sb.WriteRune(r) // a range over a string yields U+FFFD per invalid byte
	}
	return sb.String()
}

// appendStrings appends a slice that JSON omits when empty: empty and nil
// are both nil.
func appendStrings(b []byte, ss []string) []byte {
	b = appendLen(b, len(ss) == 0, len(ss))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// appendBytes appends a []byte that JSON omits when empty: empty and nil
// are both nil.
func appendBytes(b, v []byte) []byte {
	b = appendLen(b, len(v) == 0, len(v))
	return append(b, v...)
}

// appendLen appends the length of a slice: 0 for nil, else n+1.
func appendLen(b []byte, isNil bool, n int) []byte {
	if isNil {
		return append(b, 0)
	}
	return binary.AppendUvarint(b, uint64(n)+1)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendTime appends t's instant and zone offset. An offset of zero is
// written as UTC: JSON writes it "Z", which reads back as UTC.
func appendTime(b []byte, t time.Time) []byte {
	if _, off := t.Zone(); off == 0 {
		t = t.UTC()
	}
	n := len(b)
	b = append(b, 0)
	out, err := t.AppendBinary(b)
	if err != nil {
		// An offset beyond ±32767 minutes, which no zone has and RFC 3339
		// cannot write either.
		out, _ = t.UTC().AppendBinary(b)
	}
	out[n] = byte(len(out) - n - 1)
	return out
}

// sessionReader decodes the binary encoding. Strings are cut from one
// string of the whole input, so a session costs one allocation for all of
// them; numbers and times are read from the input's bytes.
type sessionReader struct {
	b   []byte // the input
	s   string // the input, as a string
	off int
	err error
}

func (r *sessionReader) fail() {
	if r.err == nil {
		r.err = errSessionBin
	}
	r.off = len(r.b)
}

func (r *sessionReader) uvarint() uint64 {
	x, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail()
		return 0
	}
	r.off += n
	return x
}

func (r *sessionReader) varint() int64 {
	x, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail()
		return 0
	}
	r.off += n
	return x
}

func (r *sessionReader) int() int {
	v := r.varint()
	if v < math.MinInt || v > math.MaxInt {
		r.fail()
		return 0
	}
	return int(v)
}

func (r *sessionReader) byte() byte {
	if r.off >= len(r.b) {
		r.fail()
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// present reads a pointer's marker.
func (r *sessionReader) present() bool {
	switch r.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail()
	return false
}

func (r *sessionReader) bool() bool { return r.present() }

func (r *sessionReader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.s)-r.off) {
		r.fail()
		return ""
	}
	v := r.s[r.off : r.off+int(n)]
	r.off += int(n)
	return v
}

// length reads a slice's length: nil reports whether it was nil. Every
// element takes at least min bytes, which bounds n by what is left.
func (r *sessionReader) length(min int) (n int, isNil bool) {
	v := r.uvarint()
	if v == 0 {
		return 0, true
	}
	if v-1 > uint64(len(r.s)-r.off)/uint64(min) {
		r.fail()
		return 0, false
	}
	return int(v - 1), false
}

func (r *sessionReader) bytes() []byte {
	n, isNil := r.length(1)
	if isNil || r.err != nil {
		return nil
	}
	v := bytes.Clone(r.b[r.off : r.off+n])
	r.off += n
	return v
}

func (r *sessionReader) strings() []string {
	n, isNil := r.length(1)
	if isNil || r.err != nil {
		return nil
	}
	v := make([]string, n)
	for i := range v {
		v[i] = r.string()
	}
	return v
}

func (r *sessionReader) time() time.Time {
	n := int(r.byte())
	if r.err != nil || n > len(r.s)-r.off {
		r.fail()
		return time.Time{}
	}
	var t time.Time
	if err := t.UnmarshalBinary(r.b[r.off : r.off+n]); err != nil {
		r.fail()
		return time.Time{}
	}
	r.off += n
	return t
}

// decodeSession decodes the binary encoding of a session into s.
func decodeSession(raw []byte, s *core.Session) error {
	r := &sessionReader{b: raw, s: string(raw)}
	*s = core.Session{
		ID:             r.string(),
		Storefront:     r.string(),
		ChargeID:       r.string(),
		Integration:    r.string(),
		PlaceOrderMode: r.string(),
		Status:         core.SessionStatus(r.string()),
		CustomerToken:  r.string(),
	}
	r.purchase(&s.Purchase)
	s.ReturnURLs = core.ReturnURLs{Success: r.string(), Failure: r.string(), Cancel: r.string(), Back: r.string(), Error: r.string()}
	s.KPSessionID = r.string()
	s.HPPSessionID = r.string()
	s.HPPSessionURL = r.string()
	s.RedirectURL = r.string()
	s.QRCodeURL = r.string()
	s.DistributionURL = r.string()
	s.ClientToken = r.string()
	s.SecretHash = r.bytes()
	s.NotifySecretHash = r.bytes()
	s.KlarnaAccount = r.string()
	s.KlarnaStatus = r.string()
	s.KlarnaUpdatedAt = r.time()
	s.AuthorizationToken = r.string()
	s.AuthorizedAt = r.time()
	s.OrderID = r.string()
	s.FraudStatus = r.string()
	if r.present() {
		s.Error = &core.KlarnaError{HTTPStatus: r.int(), Code: r.string(), Messages: r.strings(), CorrelationID: r.string(), Operation: r.string()}
	}
	s.DisableReason = r.string()
	s.AuthorizationTokenHash = r.bytes()
	s.OrderIDUnknown = r.bool()
	s.CreatedAt = r.time()
	s.UpdatedAt = r.time()
	s.ExpiresAt = r.time()
	s.CheckAt = r.time()
	s.Rereads = r.int()
	s.Sequence = r.varint()
	// A history entry takes at least 22 bytes (a time's 16 and six
	// lengths).
	if n, isNil := r.length(22); !isNil && r.err == nil {
		s.History = make([]core.Change, n)
		for i := range s.History {
			s.History[i] = core.Change{At: r.time(), From: r.string(), To: r.string(), KlarnaStatus: r.string(),
				Source: core.Source(r.string()), Reason: r.string(), FraudStatus: r.string()}
		}
	}
	if r.err == nil && r.off != len(r.s) {
		return fmt.Errorf("%w: %d bytes after the session", errSessionBin, len(r.s)-r.off)
	}
	return r.err
}

func (r *sessionReader) purchase(p *core.Purchase) {
	p.PurchaseCountry = r.string()
	p.PurchaseCurrency = r.string()
	p.Locale = r.string()
	p.OrderAmount = r.varint()
	p.OrderTaxAmount = r.varint()
	// An order line takes at least 14 bytes (thirteen lengths and varints
	// and the subscription's marker).
	if n, isNil := r.length(14); !isNil && r.err == nil {
		p.OrderLines = make([]core.OrderLine, n)
		for i := range p.OrderLines {
			l := &p.OrderLines[i]
			*l = core.OrderLine{Type: r.string(), Reference: r.string(), Name: r.string(), Quantity: r.varint(),
				QuantityUnit: r.string(), UnitPrice: r.varint(), TaxRate: r.varint(), TotalAmount: r.varint(),
				TotalDiscountAmount: r.varint(), TotalTaxAmount: r.varint(), MerchantData: r.string(),
				ProductURL: r.string(), ImageURL: r.string()}
			if r.present() {
				l.Subscription = &core.Subscription{Name: r.string(), Interval: r.string(), IntervalCount: r.varint()}
			}
		}
	}
	p.MerchantReference1 = r.string()
	p.MerchantReference2 = r.string()
	p.BillingAddress = r.address()
	p.ShippingAddress = r.address()
}

func (r *sessionReader) address() *core.Address {
	if !r.present() {
		return nil
	}
	return &core.Address{Attention: r.string(), City: r.string(), Country: r.string(), Email: r.string(),
		FamilyName: r.string(), GivenName: r.string(), OrganizationName: r.string(), Phone: r.string(),
		PostalCode: r.string(), Region: r.string(), StreetAddress: r.string(), StreetAddress2: r.string(),
		Title: r.string()}
}
