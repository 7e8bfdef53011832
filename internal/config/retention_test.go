package config

import (
	"strings"
	"testing"
	"time"
)

func TestRetentionDefaults(t *testing.T) {
	c, err := load(base())
	if err != nil {
		t.Fatal(err)
	}
	if c.IdempotencyTTL != 24*time.Hour || c.Retention != 180*24*time.Hour {
		t.Fatalf("idempotency TTL %v, retention %v", c.IdempotencyTTL, c.Retention)
	}
	red := c.Redacted()
	if red["HPPD_IDEMPOTENCY_TTL"] != "24h" || red["HPPD_RETENTION"] != "180d" {
		t.Fatalf("shown as %q and %q", red["HPPD_IDEMPOTENCY_TTL"], red["HPPD_RETENTION"])
	}
	for d, want := range map[time.Duration]string{36 * time.Hour: "36h", 90 * time.Minute: "1h30m", 48 * time.Hour: "2d", 90 * time.Second: "1m30s"} {
		if got := FormatDays(d); got != want {
			t.Errorf("FormatDays(%v) = %q, want %q", d, got, want)
		}
	}
	listed := map[string]bool{}
	for _, v := range Vars {
		listed[v.Name] = true
	}
	if !listed["HPPD_IDEMPOTENCY_TTL"] || !listed["HPPD_RETENTION"] {
		t.Fatal("the retention variables are not in Vars")
	}
}

func TestRetentionValues(t *testing.T) {
	for _, tc := range []struct{ ttl, retention string }{{"36h", "4320h"}, {"2d", "30d"}, {"90m", "1d"}} {
		m := base()
		m["HPPD_IDEMPOTENCY_TTL"], m["HPPD_RETENTION"] = tc.ttl, tc.retention
		c, err := load(m)
		if err != nil {
			t.Fatalf("%v: %v", tc, err)
		}
		want, _ := ParseDays(tc.retention)
		if c.Retention != want || FormatDays(c.Retention) != FormatDays(want) {
			t.Fatalf("%v: retention %v", tc, c.Retention)
		}
	}
}

func TestInvalidRetentionNamesTheVariable(t *testing.T) {
	cases := map[string]struct{ name, value string }{
		"ttl zero":           {"HPPD_IDEMPOTENCY_TTL", "0s"},
		"ttl negative":       {"HPPD_IDEMPOTENCY_TTL", "-1h"},
		"ttl garbage":        {"HPPD_IDEMPOTENCY_TTL", "a day"},
		"retention garbage":  {"HPPD_RETENTION", "half a year"},
		"retention days":     {"HPPD_RETENTION", "1.5d"},
		"retention zero":     {"HPPD_RETENTION", "0d"},
		"ttl over retention": {"HPPD_IDEMPOTENCY_TTL", "200d"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			m := base()
			m[c.name] = c.value
			_, err := load(m)
			if err == nil || !strings.Contains(err.Error(), c.name+":") {
				t.Fatalf("err %v, want one naming %s", err, c.name)
			}
		})
	}
}
