package webhook

import (
	"regexp"
	"strings"
	"testing"
)

// The hand-written name checks accept exactly what their regexps did.
func TestNameChecksMatchTheirPatterns(t *testing.T) {
	issuer := regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	kid := regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	cases := []string{"", "a", "shop-a", "Shop_1.x", "a:b", "a b", "a/b", "å", "a\n", "\x00", "a$", strings.Repeat("a", 64),
		strings.Repeat("b", 65), strings.Repeat("c", 128), strings.Repeat("d", 129), "key:2026-12", "-", ".", "_", ":"}
	for c := 0; c < 256; c++ {
		cases = append(cases, string(rune(c)), "x"+string([]byte{byte(c)}))
	}
	for _, s := range cases {
		if issuerOK(s) != issuer.MatchString(s) {
			t.Errorf("issuerOK(%q) = %v", s, issuerOK(s))
		}
		if kidOK(s) != kid.MatchString(s) {
			t.Errorf("kidOK(%q) = %v", s, kidOK(s))
		}
	}
}
