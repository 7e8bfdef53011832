package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func base() map[string]string {
	return map[string]string{
		"HPPD_KLARNA_USERNAME": "user",
		"HPPD_KLARNA_PASSWORD": "s3cret-password",
		"HPPD_JWT_HS256_KEY":   strings.Repeat("k", 32),
	}
}

func load(m map[string]string) (*Config, error) { return Load(func(k string) string { return m[k] }) }

func TestDefaults(t *testing.T) {
	c, err := load(base())
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.PublicURL != "http://127.0.0.1:8080" || c.DB != "data/hppd.db" ||
		c.PollSchedule != "@every 30s" || c.StaleAfter != time.Minute || c.PlaceOrderMode != "NONE" ||
		c.JWTAudience != "hppd" || len(c.ChargeRetrySchedule) != 3 || c.AdminSocket != "data/hppd.db.sock" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestRateDefaultsFollowTheEnvironment(t *testing.T) {
	cases := []struct {
		env                       string
		create, other, tokenOrder float64
	}{
		{"", 5, 50, 5},
		{"playground", 5, 50, 5},
		{"production", 40, 200, 40},
	}
	for _, tc := range cases {
		t.Run("env "+tc.env, func(t *testing.T) {
			m := base()
			if tc.env != "" {
				m["HPPD_KLARNA_ENV"] = tc.env
			}
			m["HPPD_PUBLIC_URL"] = "https://hppd.shop.example"
			c, err := load(m)
			if err != nil {
				t.Fatal(err)
			}
			if c.KlarnaCreateRate != tc.create || c.KlarnaOtherRate != tc.other || c.KlarnaTokenOrderRate != tc.tokenOrder {
				t.Fatalf("rates %v/%v/%v, want %v/%v/%v", c.KlarnaCreateRate, c.KlarnaOtherRate, c.KlarnaTokenOrderRate, tc.create, tc.other, tc.tokenOrder)
			}
		})
	}
	t.Run("set values win", func(t *testing.T) {
		m := base()
		m["HPPD_KLARNA_ENV"] = "production"
		m["HPPD_PUBLIC_URL"] = "https://hppd.shop.example"
		m["HPPD_KLARNA_CREATE_RATE"] = "12"
		m["HPPD_KLARNA_OTHER_RATE"] = "100.5"
		m["HPPD_KLARNA_TOKEN_ORDER_RATE"] = "7"
		c, err := load(m)
		if err != nil {
			t.Fatal(err)
		}
		if c.KlarnaCreateRate != 12 || c.KlarnaOtherRate != 100.5 || c.KlarnaTokenOrderRate != 7 {
			t.Fatalf("rates %v/%v/%v", c.KlarnaCreateRate, c.KlarnaOtherRate, c.KlarnaTokenOrderRate)
		}
		if got := c.Redacted()["HPPD_KLARNA_TOKEN_ORDER_RATE"]; got != "7" {
			t.Fatalf("Redacted shows %q", got)
		}
	})
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	cases := map[string][2]string{
		"listen":           {"HPPD_LISTEN", "no-port"},
		"public url":       {"HPPD_PUBLIC_URL", "ftp://x"},
		"public query":     {"HPPD_PUBLIC_URL", "https://x/?a=b"},
		"public fragment":  {"HPPD_PUBLIC_URL", "http://0#"}, // found by FuzzMerchantURLs
		"region":           {"HPPD_KLARNA_REGION", "mars"},
		"env":              {"HPPD_KLARNA_ENV", "staging"},
		"base url":         {"HPPD_KLARNA_BASE_URL", "not a url"},
		"short jwt key":    {"HPPD_JWT_HS256_KEY", "short"},
		"schedule":         {"HPPD_POLL_SCHEDULE", "every now and then"},
		"stale":            {"HPPD_STALE_AFTER", "-1s"},
		"stale list":       {"HPPD_STALE_AFTER", "1m,,5m"},
		"stale list item":  {"HPPD_STALE_AFTER", "1m,0s"},
		"reread share 0":   {"HPPD_REREAD_SHARE", "0"},
		"reread share >1":  {"HPPD_REREAD_SHARE", "1.5"},
		"reread share nan": {"HPPD_REREAD_SHARE", "NaN"},
		"reread share txt": {"HPPD_REREAD_SHARE", "half"},
		"jwt lifetime 0":   {"HPPD_JWT_MAX_LIFETIME", "0"},
		"jwt lifetime txt": {"HPPD_JWT_MAX_LIFETIME", "a day"},
		"mode":             {"HPPD_PLACE_ORDER_MODE", "MAYBE"},
		"retry schedule":   {"HPPD_CHARGE_RETRY_SCHEDULE", "1h,soon"},
		"log level":        {"HPPD_LOG_LEVEL", "loud"},
		"rate":             {"HPPD_KLARNA_CREATE_RATE", "0"},
		"other rate":       {"HPPD_KLARNA_OTHER_RATE", "fast"},
		"token rate":       {"HPPD_KLARNA_TOKEN_ORDER_RATE", "-2"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			m := base()
			m[c[0]] = c[1]
			_, err := load(m)
			if err == nil || !strings.Contains(err.Error(), c[0]+":") {
				t.Fatalf("err %v, want one naming %s", err, c[0])
			}
		})
	}
}

func TestProductionNeedsAnHTTPSPublicURL(t *testing.T) {
	for _, public := range []string{"", "http://hppd.shop.example", "HTTP://hppd.shop.example"} {
		m := base()
		m["HPPD_KLARNA_ENV"] = "production"
		m["HPPD_PUBLIC_URL"] = public
		if _, err := load(m); err == nil || !strings.Contains(err.Error(), "HPPD_PUBLIC_URL:") || !strings.Contains(err.Error(), "https") {
			t.Errorf("public URL %q in production: err %v, want one naming HPPD_PUBLIC_URL", public, err)
		}
	}
	m := base()
	m["HPPD_KLARNA_ENV"] = "production"
	m["HPPD_PUBLIC_URL"] = "https://hppd.shop.example"
	if _, err := load(m); err != nil {
		t.Fatalf("https public URL in production: %v", err)
	}
	m["HPPD_KLARNA_ENV"] = "playground"
	m["HPPD_PUBLIC_URL"] = "http://127.0.0.1:8080"
	if _, err := load(m); err != nil {
		t.Fatalf("http public URL in the playground: %v", err)
	}
}

func TestSecretsNeverInErrorsOrRedacted(t *testing.T) {
	m := base()
	m["HPPD_LISTEN"] = "bad"
	_, err := load(m)
	if err == nil || strings.Contains(err.Error(), "s3cret-password") {
		t.Fatalf("err %v", err)
	}
	c, err := load(base())
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.Redacted() {
		if strings.Contains(v, "s3cret") || strings.Contains(v, "kkkk") {
			t.Fatalf("%s shows a secret: %q", k, v)
		}
	}
	if c.Redacted()["HPPD_KLARNA_PASSWORD"] != "<redacted>" {
		t.Fatal("password not shown as <redacted>")
	}
}

func TestFileVariantsAndConflicts(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	if err := os.WriteFile(f, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := base()
	delete(m, "HPPD_KLARNA_PASSWORD")
	m["HPPD_KLARNA_PASSWORD_FILE"] = f
	c, err := load(m)
	if err != nil || c.KlarnaPassword != "from-file" {
		t.Fatalf("file variant: %v %q", err, c.KlarnaPassword)
	}
	m["HPPD_KLARNA_PASSWORD"] = "x"
	if _, err := load(m); err == nil || !strings.Contains(err.Error(), "HPPD_KLARNA_PASSWORD") {
		t.Fatalf("both set: %v", err)
	}
	m = base()
	delete(m, "HPPD_JWT_HS256_KEY")
	if _, err := load(m); err == nil || !strings.Contains(err.Error(), "HPPD_JWT_HS256_KEY") {
		t.Fatalf("no JWT key: %v", err)
	}
}

func TestStaleScheduleAndRereadShare(t *testing.T) {
	c, err := load(base())
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 20 * time.Minute}
	if fmt.Sprint(c.StaleSchedule) != fmt.Sprint(want) || c.RereadShare != 0.5 {
		t.Fatalf("defaults: schedule %v share %v", c.StaleSchedule, c.RereadShare)
	}
	if got := c.Redacted()["HPPD_STALE_AFTER"]; got != "1m0s,2m0s,5m0s,10m0s,20m0s" {
		t.Fatalf("Redacted HPPD_STALE_AFTER = %q", got)
	}
	m := base()
	m["HPPD_STALE_AFTER"] = "2m" // today's meaning: every 2 minutes
	m["HPPD_REREAD_SHARE"] = "1"
	if c, err = load(m); err != nil {
		t.Fatal(err)
	}
	if len(c.StaleSchedule) != 1 || c.StaleSchedule[0] != 2*time.Minute || c.StaleAfter != 2*time.Minute || c.RereadShare != 1 {
		t.Fatalf("single value: schedule %v stale %v share %v", c.StaleSchedule, c.StaleAfter, c.RereadShare)
	}
	m["HPPD_STALE_AFTER"] = " 30s, 90s ,15m"
	if c, err = load(m); err != nil {
		t.Fatal(err)
	}
	if got := c.Redacted()["HPPD_STALE_AFTER"]; got != "30s,1m30s,15m0s" || c.StaleAfter != 30*time.Second {
		t.Fatalf("list: Redacted %q, StaleAfter %v", got, c.StaleAfter)
	}
}
