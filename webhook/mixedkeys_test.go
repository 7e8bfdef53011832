package webhook_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hppd/hppd/webhook"
)

// With the global HS256 key and public keys both configured, a token signed
// with a wrong HS256 key is refused as a bad signature: the reason a
// storefront engineer needs, not "algorithm does not match the key".
func TestWrongHS256KeyInAMixedSetupSaysSignatureIsInvalid(t *testing.T) {
	k := testKeys(t)
	a, err := webhook.NewAuthenticator([]byte(hsKey), k.pem, "hppd", func() time.Time { return jwtNow })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, token string }{
		{"wrong key", sign(t, jwt.SigningMethodHS256, []byte("another key that is long enough!!"), claims(nil))},
		{"the key base64-encoded", sign(t, jwt.SigningMethodHS256, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYtaG9zdGlsZS1rZXk="), claims(nil))},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := a.Verify(c.token)
			if err == nil || !strings.Contains(err.Error(), "signature is invalid") {
				t.Fatalf("refused with %v, want \"signature is invalid\"", err)
			}
		})
	}
	if sf, err := a.Verify(sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(nil))); err != nil || sf != "shop-a" {
		t.Fatalf("the right key: %q %v", sf, err)
	}
}
