package metrics_test

import (
	"bytes"
	"encoding/json"
	"github.com/hppd/hppd/internal/testutil"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hppd/hppd/internal/daemon"
	"github.com/hppd/hppd/internal/testenv"
	"github.com/hppd/hppd/klarna/klarnasim"
	"github.com/hppd/hppd/metrics"
)

// env is the test environment (internal/testenv) with metrics.
type env struct {
	t     *testing.T
	clock *testutil.Clock
	sim   *klarnasim.Sim
	m     *daemon.Main
	x     *metrics.Metrics
	base  string
	// metricsBase is the HPPD_METRICS_LISTEN listener, apart from base.
	metricsBase string
	token       string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	te := testenv.New(t, testenv.Options{Metrics: true, Vars: map[string]string{"HPPD_STALE_AFTER": ""}})
	return &env{t: t, clock: te.Clock, sim: te.Sim, m: te.Main, x: te.Metrics, base: te.Base,
		metricsBase: te.MetricsBase, token: te.Token("shop-a")}
}

// do sends a storefront API request and returns the status and JSON body.
func (e *env) do(method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			e.t.Fatalf("%s %s: bad JSON %q", method, path, raw)
		}
	}
	out["_raw"] = string(raw)
	return resp.StatusCode, out
}

func sessionBody() map[string]any {
	return map[string]any{
		"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
		"order_amount": 10000, "order_tax_amount": 2000,
		"order_lines": []any{map[string]any{
			"type": "physical", "name": "Espresso cups", "quantity": 2, "unit_price": 5000,
			"tax_rate": 2500, "total_amount": 10000, "total_tax_amount": 2000,
		}},
		"return_urls": map[string]any{
			"success": "https://shop.example/ok", "failure": "https://shop.example/fail",
			"back": "https://shop.example/back", "cancel": "https://shop.example/cancel", "error": "https://shop.example/error",
		},
	}
}

// createSession creates a purchase session through the API and returns it.
func (e *env) createSession() map[string]any {
	e.t.Helper()
	st, out := e.do("POST", "/v1/sessions", sessionBody())
	if st != http.StatusCreated {
		e.t.Fatalf("create session: %d %v", st, out["_raw"])
	}
	return out
}

func (e *env) sessionStatus(id string) string {
	e.t.Helper()
	st, out := e.do("GET", "/v1/sessions/"+id, nil)
	if st != http.StatusOK {
		e.t.Fatalf("get session: %d %v", st, out["_raw"])
	}
	s, _ := out["status"].(string)
	return s
}

func hppID(s map[string]any) string { return s["klarna"].(map[string]any)["hpp_session_id"].(string) }

// scrape fetches /metrics as Prometheus does and parses the text format.
func (e *env) scrape() families {
	e.t.Helper()
	resp, err := http.Get(e.metricsBase + metrics.Path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		e.t.Fatalf("GET /metrics: content type %q", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		e.t.Fatalf("parse /metrics: %v", err)
	}
	return families(fams)
}

// eventually waits (bounded) for cond; it is a wait, not a speed assertion.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	testenv.Eventually(e.t, what, cond)
}

// families are parsed metric families by name.
type families map[string]*dto.MetricFamily

// get returns the value of the series of name whose labels include want: a
// counter's or gauge's value, a histogram's sample count.
func (f families) get(name string, want ...string) (float64, bool) {
	mf, ok := f[name]
	if !ok {
		return 0, false
	}
	if len(want)%2 != 0 {
		panic("get: odd label list")
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		case dto.MetricType_UNTYPED:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// want fails unless the series exists with value v.
func (f families) want(t *testing.T, v float64, name string, labels ...string) {
	t.Helper()
	got, ok := f.get(name, labels...)
	if !ok {
		t.Errorf("%s%v: missing", name, labels)
		return
	}
	if got != v {
		t.Errorf("%s%v = %v, want %v", name, labels, got, v)
	}
}

// labelNames returns the label names the series of a family carry.
func (f families) labelNames(name string) map[string]bool {
	out := map[string]bool{}
	for _, m := range f[name].GetMetric() {
		for _, lp := range m.GetLabel() {
			out[lp.GetName()] = true
		}
	}
	return out
}

func (f families) names() []string {
	out := make([]string, 0, len(f))
	for n := range f {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// gather reads the registry directly (no HTTP), e.g. before Run or after Close.
func gather(t *testing.T, x *metrics.Metrics) families {
	t.Helper()
	fams, err := x.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := families{}
	for _, mf := range fams {
		out[mf.GetName()] = mf
	}
	return out
}
