package core

import "strings"

// Prefixes of the ids hppd makes.
const (
	SessionIDPrefix = "ses_"
	ChargeIDPrefix  = "chg_"
)

// idChars is the length of an id after its prefix: 128 bits in unpadded
// base32 (random, or derived from an Idempotency-Key).
const idChars = 26

// ValidID reports whether id is prefix followed by 26 characters of
// lower-case base32 (a-z, 2-7), the form of every session and charge id
// hppd makes. Handlers check it before any lookup or log line, so an id from
// outside that hppd cannot have made costs nothing and is never logged.
func ValidID(prefix, id string) bool {
	if len(id) != len(prefix)+idChars || id[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ValidPathSegment reports whether v, an id from outside that hppd puts into
// a Klarna URL path, is one segment that names itself: not empty, not "."
// or ".." (which url.PathEscape leaves as they are), and without '/'.
func ValidPathSegment(v string) bool {
	return v != "" && v != "." && v != ".." && !strings.Contains(v, "/")
}

// maxPlausibleID bounds PlausibleID.
const maxPlausibleID = 64

// PlausibleID reports whether id could name a record: 1 to 64 bytes of
// letters, digits, '_' and '-'. The storefront API checks it before any
// lookup or log line; it is looser than ValidID so that records whose ids
// hppd did not make (imported into, or migrated with, a data file) stay
// reachable by their storefront.
func PlausibleID(id string) bool {
	if id == "" || len(id) > maxPlausibleID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
