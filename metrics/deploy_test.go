package metrics_test

// The Deploy tests hold the files in deploy/ to the code: the alert rules and
// the dashboard may only use metrics (and labels) that hppd exports, and the
// systemd unit, the Dockerfile and the Kubernetes manifests must name only
// configuration variables hppd knows, in a configuration config.Load
// accepts. `make deploy-check` runs them with -run Deploy.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/hppd/hppd/internal/config"
)

const deployDir = "../deploy"

// singleNodeExempt is the one secret these single-node deployments (one
// process on a bbolt file) do not set: the PostgreSQL URL of the
// several-replica mode.
const singleNodeExempt = "HPPD_DATABASE_URL"

func readDeploy(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exported starts hppd, makes every kind of series appear (a Klarna call, an
// API request, a rejected callback, a poller run) and returns what /metrics
// then exports.
func exported(t *testing.T) families {
	t.Helper()
	e := newEnv(t)
	s := e.createSession()
	resp, err := http.Post(e.base+"/klarna/hpp/"+s["id"].(string)+"/status?secret=x", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r := e.m.Poller.RunOnce(context.Background()); r.Err != nil {
		t.Fatal(r.Err)
	}
	return e.scrape()
}

var (
	metricName = regexp.MustCompile(`\b(?:hppd|process|go)_[a-z0-9_]+`)
	selector   = regexp.MustCompile(`\b((?:hppd|process|go)_[a-z0-9_]+)\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"`)
	byClause   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	// Labels Prometheus adds at scrape time (pod with Kubernetes discovery,
	// which the alerts aggregate replicas over), and the histogram bucket
	// label.
	targetLabels = map[string]bool{"job": true, "instance": true, "pod": true, "le": true}
)

// family resolves a referenced series name to the exported family: the name
// itself, or a histogram's _bucket/_sum/_count series.
func (f families) family(name string) (string, bool) {
	if _, ok := f[name]; ok {
		return name, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if mf, ok := f[base]; ok && mf.GetType().String() == "HISTOGRAM" {
				return base, true
			}
		}
	}
	return "", false
}

// checkNames fails for every metric name in text that hppd does not export.
func checkNames(t *testing.T, where, text string, f families) {
	t.Helper()
	for _, n := range metricName.FindAllString(text, -1) {
		if _, ok := f.family(n); !ok {
			var hppd []string
			for _, e := range f.names() {
				if strings.HasPrefix(e, "hppd_") {
					hppd = append(hppd, e)
				}
			}
			t.Errorf("%s: %s is not a metric hppd exports (hppd exports %s)", where, n, strings.Join(hppd, ", "))
		}
	}
}

// checkLabels fails for label names in selectors and by() clauses of a
// PromQL expression that the referenced metrics do not carry.
func checkLabels(t *testing.T, where, expr string, f families) {
	t.Helper()
	known := map[string]bool{}
	for _, m := range selector.FindAllStringSubmatch(expr, -1) {
		fam, ok := f.family(m[1])
		if !ok {
			continue // reported by checkNames
		}
		labels := f.labelNames(fam)
		for l := range labels {
			known[l] = true
		}
		for _, mm := range matcher.FindAllStringSubmatch(m[2], -1) {
			if !labels[mm[1]] && !targetLabels[mm[1]] {
				t.Errorf("%s: %s has no label %q (it has %v)", where, m[1], mm[1], labels)
			}
		}
	}
	for _, n := range metricName.FindAllString(expr, -1) {
		if fam, ok := f.family(n); ok {
			for l := range f.labelNames(fam) {
				known[l] = true
			}
		}
	}
	for _, m := range byClause.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !known[l] && !targetLabels[l] {
				t.Errorf("%s: by (%s): no referenced metric has label %q", where, m[1], l)
			}
		}
	}
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlertRules(t *testing.T) []alertRule {
	t.Helper()
	var doc struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(readDeploy(t, "prometheus/alerts.yml"))))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	var rules []alertRule
	for _, g := range doc.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

func TestDeployAlertRules(t *testing.T) {
	rules := loadAlertRules(t)
	f := exported(t)
	severities := map[string][]string{}
	for _, r := range rules {
		where := "alerts.yml " + r.Alert
		if r.Alert == "" || strings.TrimSpace(r.Expr) == "" {
			t.Errorf("%s: rule without alert name or expression", where)
			continue
		}
		sev := r.Labels["severity"]
		if sev != "warning" && sev != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", where, sev)
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: needs a summary and a description", where)
		}
		if r.For != "" {
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", where, r.For, err)
			}
		}
		severities[r.Alert] = append(severities[r.Alert], sev)
		checkNames(t, where, r.Expr, f)
		checkNames(t, where+" annotations", r.Annotations["description"], f)
		checkLabels(t, where, r.Expr, f)
	}
	want := map[string][]string{
		"HppdDown":                        {"critical"},
		"HppdOldestUnplacedAuthorization": {"warning", "critical"},
		"HppdCallbackRejections":          {"warning"},
		"HppdKlarnaErrorRate":             {"warning"},
		"HppdPollerNotRunning":            {"critical"},
	}
	for name, sevs := range want {
		got := severities[name]
		for _, s := range sevs {
			if !slices.Contains(got, s) {
				t.Errorf("alert %s with severity %s missing (have %v)", name, s, got)
			}
		}
	}
	for _, r := range rules {
		if r.Alert == "HppdOldestUnplacedAuthorization" && !strings.Contains(r.Expr, "hppd_oldest_unplaced_authorization_seconds") {
			t.Errorf("HppdOldestUnplacedAuthorization does not use hppd_oldest_unplaced_authorization_seconds: %s", r.Expr)
		}
	}
}

// storeGauges describe the store, not the process that exports them: every
// replica on one PostgreSQL database reports the same values.
var storeGauges = []string{
	"hppd_sessions", "hppd_charges", "hppd_jobs_waiting",
	"hppd_oldest_unplaced_authorization_seconds",
	"hppd_reread_backlog", "hppd_reread_backlog_oldest_seconds",
}

// An alert on the store takes the largest reading over the replicas, so N
// replicas fire it once (alerts_test.yml has the three-replica cases).
func TestDeployStoreAlertsAggregateReplicas(t *testing.T) {
	f := exported(t)
	for _, g := range storeGauges {
		if _, ok := f.family(g); !ok {
			t.Errorf("%s is not exported", g)
		}
	}
	used := 0
	for _, r := range loadAlertRules(t) {
		for _, g := range storeGauges {
			all := regexp.MustCompile(`\b`+g+`\b`).FindAllStringIndex(r.Expr, -1)
			wrapped := regexp.MustCompile(`max without \(instance, pod\) \(`+g+`\b`).FindAllStringIndex(r.Expr, -1)
			if len(all) != len(wrapped) {
				t.Errorf("alerts.yml %s: %s is not taken as max without (instance, pod) (…) everywhere: %s", r.Alert, g, r.Expr)
			}
			used += len(all)
		}
	}
	if used == 0 {
		t.Fatal("no alert uses a store gauge")
	}
}

// Every alert has a promtool unit test that makes it fire.
func TestDeployAlertRulesAreUnitTested(t *testing.T) {
	var doc struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readDeploy(t, "prometheus/alerts_test.yml"), &doc); err != nil {
		t.Fatalf("alerts_test.yml: %v", err)
	}
	if !slices.Contains(doc.RuleFiles, "alerts.yml") {
		t.Errorf("alerts_test.yml does not load alerts.yml: %v", doc.RuleFiles)
	}
	fired := map[string]bool{}
	for _, tc := range doc.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}
	for _, r := range loadAlertRules(t) {
		if !fired[r.Alert] {
			t.Errorf("alert %s has no test in alerts_test.yml that makes it fire", r.Alert)
		}
	}
}

type grafanaPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func TestDeployGrafanaDashboard(t *testing.T) {
	raw := readDeploy(t, "grafana/hppd-dashboard.json")
	if !json.Valid(raw) {
		t.Fatal("hppd-dashboard.json is not valid JSON")
	}
	var d struct {
		UID           string         `json:"uid"`
		Title         string         `json:"title"`
		SchemaVersion int            `json:"schemaVersion"`
		Panels        []grafanaPanel `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 || len(d.Panels) == 0 {
		t.Fatalf("not a dashboard: uid %q title %q schemaVersion %d, %d panels", d.UID, d.Title, d.SchemaVersion, len(d.Panels))
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	f := exported(t)
	ids := map[int]bool{}
	exprs := 0
	for _, p := range d.Panels {
		where := "dashboard panel " + p.Title
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("%s: id %d missing or used twice", where, p.ID)
		}
		ids[p.ID] = true
		if p.Title == "" || p.Type == "" {
			t.Errorf("panel %d: needs a title and a type", p.ID)
		}
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: bad gridPos %+v", where, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if uid, _ := p.Datasource["uid"].(string); uid != "${datasource}" {
			t.Errorf("%s: datasource %v, want the ${datasource} variable", where, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no queries", where)
		}
		for _, q := range p.Targets {
			if q.RefID == "" || strings.TrimSpace(q.Expr) == "" {
				t.Errorf("%s: query without refId or expr", where)
				continue
			}
			exprs++
			checkNames(t, where, q.Expr, f)
			checkLabels(t, where, q.Expr, f)
			for _, m := range regexp.MustCompile(`\$(\w+)`).FindAllStringSubmatch(q.Expr, -1) {
				if !vars[m[1]] && !strings.HasPrefix(m[1], "__") {
					t.Errorf("%s: uses $%s, which is not a dashboard variable", where, m[1])
				}
			}
		}
	}
	// Template queries name metrics too.
	for _, v := range d.Templating.List {
		b, _ := json.Marshal(v.Query)
		checkNames(t, "dashboard variable "+v.Name, string(b), f)
	}
	// The dashboard shows what the alerts watch.
	all := string(raw)
	for _, n := range []string{"hppd_oldest_unplaced_authorization_seconds", "hppd_callbacks_total", "hppd_klarna_requests_total", "hppd_poll_last_run_timestamp_seconds", "hppd_klarna_up", "hppd_jobs_waiting", "hppd_sessions", "hppd_charges"} {
		if !strings.Contains(all, n) {
			t.Errorf("the dashboard has no panel on %s", n)
		}
	}
	if exprs == 0 {
		t.Error("the dashboard has no queries")
	}
}

// knownVar reports whether name is a configuration variable of hppd (or the
// _FILE variant of a secret one).
func knownVar(name string) bool {
	for _, v := range config.Vars {
		if name == v.Name || (v.Secret && name == v.Name+"_FILE") {
			return true
		}
	}
	return false
}

// loadConfig runs config.Load over env, with the _FILE variables' paths
// replaced by temporary files holding the given secret values.
func loadConfig(t *testing.T, env map[string]string, secrets map[string]string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	get := map[string]string{}
	for k, v := range env {
		if !knownVar(k) {
			t.Errorf("%s is not an hppd configuration variable", k)
		}
		if strings.HasSuffix(k, "_FILE") && k != "HPPD_JWT_PUBLIC_KEYS_FILE" && k != "HPPD_EVENTS_FILE" {
			val, ok := secrets[v]
			if !ok {
				t.Errorf("%s=%s: no secret provides that file", k, v)
				continue
			}
			p := filepath.Join(dir, strings.ToLower(k))
			if err := os.WriteFile(p, []byte(val), 0o600); err != nil {
				t.Fatal(err)
			}
			v = p
		}
		get[k] = v
	}
	cfg, err := config.Load(func(k string) string { return get[k] })
	if err != nil {
		t.Fatalf("the configuration does not load:\n%v", err)
	}
	return cfg
}

// unit is a parsed systemd unit: section → key → values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, raw []byte) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				t.Fatalf("hppd.service:%d: cannot parse %q", n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) last(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// parseEnvFile reads KEY=VALUE and KEY="VALUE" lines (the subset of
// systemd's EnvironmentFile syntax the example uses).
func parseEnvFile(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if uq, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
			v = uq
		}
		if !ok || strings.ContainsAny(v, `"'\`) {
			t.Fatalf("hppd.env.example:%d: cannot parse %q", n, line)
		}
		env[k] = v
	}
	return env
}

func TestDeploySystemdUnit(t *testing.T) {
	u := parseUnit(t, readDeploy(t, "systemd/hppd.service"))
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Fatalf("hppd.service has no [%s] section", s)
		}
	}
	want := map[string]string{
		"DynamicUser":     "yes",
		"StateDirectory":  "hppd",
		"ProtectSystem":   "strict",
		"NoNewPrivileges": "yes",
		"PrivateTmp":      "yes",
		"ProtectHome":     "yes",
		"Restart":         "on-failure",
		"KillSignal":      "SIGTERM",
	}
	for k, v := range want {
		if got, _ := u.last("Service", k); got != v {
			t.Errorf("[Service] %s=%q, want %q", k, got, v)
		}
	}
	if got, ok := u.last("Service", "CapabilityBoundingSet"); !ok || got != "" {
		t.Errorf("[Service] CapabilityBoundingSet=%q (set %v), want it empty", got, ok)
	}
	if got, _ := u.last("Service", "RestrictAddressFamilies"); strings.Join(strings.Fields(got), " ") != "AF_INET AF_INET6 AF_UNIX" {
		t.Errorf("[Service] RestrictAddressFamilies=%q", got)
	}
	if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
		t.Errorf("[Service] SystemCallFilter lacks @system-service: %v", u["Service"]["SystemCallFilter"])
	}
	exec, _ := u.last("Service", "ExecStart")
	if f := strings.Fields(exec); len(f) != 2 || !path.IsAbs(f[0]) || f[1] != "serve" {
		t.Errorf("[Service] ExecStart=%q, want /abs/path/hppd serve", exec)
	}

	// The environment the service gets: Environment=, then the
	// EnvironmentFile, which overrides it.
	unitEnv := map[string]string{}
	for _, e := range u["Service"]["Environment"] {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			t.Fatalf("Environment=%q", e)
		}
		unitEnv[k] = v
	}
	fileEnv := parseEnvFile(t, readDeploy(t, "systemd/hppd.env.example"))
	for k := range fileEnv {
		if _, ok := unitEnv[k]; ok {
			t.Errorf("hppd.env.example sets %s, which the unit fixes (the file would override it)", k)
		}
		for _, v := range config.Vars {
			if v.Secret && (k == v.Name || k == v.Name+"_FILE") {
				t.Errorf("hppd.env.example sets the secret %s: secrets are credentials", k)
			}
		}
	}
	if db := unitEnv["HPPD_DB"]; !strings.HasPrefix(db, "/var/lib/hppd/") {
		t.Errorf("HPPD_DB=%q is not in the state directory /var/lib/hppd", db)
	}

	// Every secret comes from a credential: HPPD_X_FILE=%d/name with a
	// LoadCredential=name:... beside it.
	creds := map[string]bool{}
	for _, c := range u["Service"]["LoadCredential"] {
		name, src, ok := strings.Cut(c, ":")
		if !ok || !path.IsAbs(src) {
			t.Errorf("LoadCredential=%q, want name:/absolute/path", c)
		}
		creds[name] = true
	}
	secrets := map[string]string{}
	for _, v := range config.Vars {
		if !v.Secret || v.Name == singleNodeExempt {
			continue
		}
		p, ok := unitEnv[v.Name+"_FILE"]
		name, isCred := strings.CutPrefix(p, "%d/")
		if !ok || !isCred || !creds[name] {
			t.Errorf("%s_FILE=%q: want %%d/<credential> with a LoadCredential= for it", v.Name, p)
		}
		secrets[p] = "credential-" + name + "-0123456789abcdef0123456789"
	}

	env := map[string]string{}
	for k, v := range unitEnv {
		env[k] = v
	}
	for k, v := range fileEnv {
		env[k] = v
	}
	cfg := loadConfig(t, env, secrets)

	stop, _ := u.last("Service", "TimeoutStopSec")
	d, err := time.ParseDuration(stop)
	if err != nil {
		t.Fatalf("TimeoutStopSec=%q: %v", stop, err)
	}
	if d <= cfg.ShutdownTimeout {
		t.Errorf("TimeoutStopSec=%s is not above HPPD_SHUTDOWN_TIMEOUT=%s", d, cfg.ShutdownTimeout)
	}
}

// dockerfile is the instructions of a Dockerfile, continuation lines joined.
type instruction struct{ op, args string }

func parseDockerfile(t *testing.T, raw []byte) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		op, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(op), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

func TestDeployDockerfile(t *testing.T) {
	ins := parseDockerfile(t, readDeploy(t, "docker/Dockerfile"))
	var stages [][]instruction
	for _, in := range ins {
		if in.op == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	build := ""
	for _, in := range ins[:len(ins)-len(stages[len(stages)-1])] {
		build += in.op + " " + in.args + "\n"
	}
	for _, s := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/hppd"} {
		if !strings.Contains(build, s) {
			t.Errorf("the build stage lacks %s", s)
		}
	}
	final := stages[len(stages)-1]
	base := strings.Fields(final[0].args)[0]
	env := map[string]string{}
	var user, volume, expose, entrypoint string
	for _, in := range final {
		switch in.op {
		case "USER":
			user = in.args
		case "VOLUME":
			volume = in.args
		case "EXPOSE":
			expose = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("ENV %q: use KEY=VALUE", in.args)
				}
				env[k] = v
			}
		}
	}
	if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("final stage FROM %s, want distroless/static or scratch", base)
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("final stage USER %q, want a non-root user", user)
	}
	if volume != "/data" {
		t.Errorf("VOLUME %q, want /data", volume)
	}
	if !strings.HasPrefix(env["HPPD_DB"], "/data/") {
		t.Errorf("HPPD_DB=%q is not on the /data volume", env["HPPD_DB"])
	}
	_, port, err := net.SplitHostPort(env["HPPD_LISTEN"])
	if err != nil || strings.HasPrefix(env["HPPD_LISTEN"], "127.") {
		t.Errorf("HPPD_LISTEN=%q, want all interfaces", env["HPPD_LISTEN"])
	}
	_, mport, err := net.SplitHostPort(env["HPPD_METRICS_LISTEN"])
	if err != nil || strings.HasPrefix(env["HPPD_METRICS_LISTEN"], "127.") {
		t.Errorf("HPPD_METRICS_LISTEN=%q, want all interfaces of the container (-p decides who reaches it)", env["HPPD_METRICS_LISTEN"])
	}
	if expose != port+" "+mport {
		t.Errorf("EXPOSE %q, want HPPD_LISTEN's and HPPD_METRICS_LISTEN's ports %q", expose, port+" "+mport)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || !slices.Equal(ep, []string{"/hppd", "serve"}) {
		t.Errorf("ENTRYPOINT %s, want [\"/hppd\", \"serve\"]", entrypoint)
	}
	// With the secrets a deployment adds, the image's environment loads.
	env["HPPD_KLARNA_USERNAME"] = "user"
	env["HPPD_KLARNA_PASSWORD"] = "pass"
	env["HPPD_JWT_HS256_KEY"] = "0123456789abcdef0123456789abcdef"
	loadConfig(t, env, nil)
}

// Typed subsets of the Kubernetes objects, enough for the checks below.
type (
	k8sMeta struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	k8sProbe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port any    `yaml:"port"`
		} `yaml:"httpGet"`
	}
	k8sContainer struct {
		Name  string `yaml:"name"`
		Image string `yaml:"image"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		Env []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
		LivenessProbe   *k8sProbe `yaml:"livenessProbe"`
		ReadinessProbe  *k8sProbe `yaml:"readinessProbe"`
		StartupProbe    *k8sProbe `yaml:"startupProbe"`
		SecurityContext struct {
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		} `yaml:"securityContext"`
	}
	k8sObject struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   k8sMeta           `yaml:"metadata"`
		StringData map[string]string `yaml:"stringData"`
		Spec       struct {
			// StatefulSet
			Replicas    *int   `yaml:"replicas"`
			ServiceName string `yaml:"serviceName"`
			// A StatefulSet's selector holds matchLabels, a Service's is
			// the labels themselves.
			Selector map[string]any `yaml:"selector"`
			Template struct {
				Metadata k8sMeta `yaml:"metadata"`
				Spec     struct {
					TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
					SecurityContext               struct {
						RunAsNonRoot bool `yaml:"runAsNonRoot"`
					} `yaml:"securityContext"`
					Containers []k8sContainer `yaml:"containers"`
					Volumes    []struct {
						Name   string `yaml:"name"`
						Secret *struct {
							SecretName string `yaml:"secretName"`
						} `yaml:"secret"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
			VolumeClaimTemplates []struct {
				Metadata k8sMeta `yaml:"metadata"`
			} `yaml:"volumeClaimTemplates"`
			// Service
			ClusterIP string `yaml:"clusterIP"`
			Ports     []struct {
				TargetPort any `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
)

func loadK8s(t *testing.T, name string) []k8sObject {
	t.Helper()
	raw := readDeploy(t, "kubernetes/"+name)
	var out []k8sObject
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, o)
	}
	return out
}

func TestDeployKubernetes(t *testing.T) {
	sts := loadK8s(t, "statefulset.yaml")
	if len(sts) != 1 || sts[0].Kind != "StatefulSet" || sts[0].APIVersion != "apps/v1" {
		t.Fatalf("statefulset.yaml: want one apps/v1 StatefulSet")
	}
	ss := sts[0].Spec
	if ss.Replicas == nil || *ss.Replicas != 1 {
		t.Errorf("replicas must be 1: one writer per data file")
	}
	pod := ss.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	matchLabels := stringMap(ss.Selector["matchLabels"])
	if len(matchLabels) == 0 {
		t.Error("the StatefulSet has no selector.matchLabels")
	}
	for k, v := range matchLabels {
		if ss.Template.Metadata.Labels[k] != v {
			t.Errorf("the selector %s=%s does not match the pod labels", k, v)
		}
	}
	if !pod.SecurityContext.RunAsNonRoot || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Error("the pod must run as non-root without privilege escalation")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}

	// The data file is on the claim template's volume.
	if len(ss.VolumeClaimTemplates) != 1 {
		t.Fatalf("%d volumeClaimTemplates, want 1", len(ss.VolumeClaimTemplates))
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	dataDir, ok := mounts[ss.VolumeClaimTemplates[0].Metadata.Name]
	if !ok || path.Dir(env["HPPD_DB"]) != dataDir {
		t.Errorf("HPPD_DB=%q is not on the claim's mount %q", env["HPPD_DB"], dataDir)
	}

	// Probes on the container's port.
	_, port, err := net.SplitHostPort(env["HPPD_LISTEN"])
	if err != nil {
		t.Fatalf("HPPD_LISTEN=%q", env["HPPD_LISTEN"])
	}
	portNames := map[string]bool{}
	for _, p := range c.Ports {
		if p.ContainerPort > 0 && strings.TrimLeft(port, "0") == strings.TrimLeft(itoa(p.ContainerPort), "0") {
			portNames[p.Name] = true
		}
	}
	if len(portNames) == 0 {
		t.Errorf("no container port for HPPD_LISTEN=%s", env["HPPD_LISTEN"])
	}
	// The metrics port: HPPD_METRICS_LISTEN's, named in the scrape
	// annotation, and never behind the public Service.
	_, mport, err := net.SplitHostPort(env["HPPD_METRICS_LISTEN"])
	if err != nil {
		t.Fatalf("HPPD_METRICS_LISTEN=%q: /metrics is not on the public listener; set it", env["HPPD_METRICS_LISTEN"])
	}
	metricsPortNames := map[string]bool{}
	for _, p := range c.Ports {
		if p.ContainerPort > 0 && itoa(p.ContainerPort) == mport {
			metricsPortNames[p.Name] = true
		}
	}
	if len(metricsPortNames) == 0 {
		t.Errorf("no container port for HPPD_METRICS_LISTEN=%s", env["HPPD_METRICS_LISTEN"])
	}
	if a := ss.Template.Metadata.Annotations["prometheus.io/port"]; a != mport {
		t.Errorf("prometheus.io/port annotation %q is not HPPD_METRICS_LISTEN's port %s", a, mport)
	}
	probes := []struct {
		name string
		p    *k8sProbe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}, {"startup", c.StartupProbe, "/healthz"}}
	for _, pr := range probes {
		if pr.p == nil {
			t.Errorf("no %s probe", pr.name)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path {
			t.Errorf("%s probe on %q, want %s", pr.name, pr.p.HTTPGet.Path, pr.path)
		}
		if name, _ := pr.p.HTTPGet.Port.(string); !portNames[name] && itoaAny(pr.p.HTTPGet.Port) != port {
			t.Errorf("%s probe port %v is not hppd's port %s", pr.name, pr.p.HTTPGet.Port, port)
		}
	}

	// Credentials: the _FILE variables point into the mounted Secret, at
	// keys the example Secret has.
	secrets := loadK8s(t, "secret.example.yaml")
	if len(secrets) != 1 || secrets[0].Kind != "Secret" {
		t.Fatal("secret.example.yaml: want one Secret")
	}
	secretMount := ""
	for _, v := range pod.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secrets[0].Metadata.Name {
			secretMount = mounts[v.Name]
		}
	}
	if secretMount == "" {
		t.Fatalf("the Secret %s is not mounted", secrets[0].Metadata.Name)
	}
	files := map[string]string{}
	for k, v := range secrets[0].StringData {
		files[path.Join(secretMount, k)] = v
	}
	for _, v := range config.Vars {
		if v.Secret && v.Name != singleNodeExempt && env[v.Name+"_FILE"] == "" {
			t.Errorf("%s_FILE is not set: secrets come from the Secret", v.Name)
		}
		if _, ok := env[v.Name]; ok && v.Secret {
			t.Errorf("%s is set as a plain variable", v.Name)
		}
	}
	cfg := loadConfig(t, env, files)
	if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace <= cfg.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %s is not above HPPD_SHUTDOWN_TIMEOUT %s", grace, cfg.ShutdownTimeout)
	}

	// Services select the pod; the StatefulSet's service is headless.
	svcs := loadK8s(t, "service.yaml")
	headless := false
	for _, s := range svcs {
		if s.Kind != "Service" {
			t.Errorf("service.yaml: unexpected %s", s.Kind)
			continue
		}
		sel := stringMap(s.Spec.Selector)
		if len(sel) == 0 {
			t.Errorf("service %s selects nothing", s.Metadata.Name)
		}
		for k, v := range sel {
			if ss.Template.Metadata.Labels[k] != v {
				t.Errorf("service %s selector %s=%s does not match the pod", s.Metadata.Name, k, v)
			}
		}
		for _, p := range s.Spec.Ports {
			name, _ := p.TargetPort.(string)
			if (metricsPortNames[name] || itoaAny(p.TargetPort) == mport) && s.Spec.ClusterIP != "None" {
				t.Errorf("service %s exposes the metrics port: only the headless Service may", s.Metadata.Name)
				continue
			}
			if !portNames[name] && itoaAny(p.TargetPort) != port && !metricsPortNames[name] && itoaAny(p.TargetPort) != mport {
				t.Errorf("service %s targets port %v, not hppd's", s.Metadata.Name, p.TargetPort)
			}
		}
		if s.Metadata.Name == ss.ServiceName && s.Spec.ClusterIP == "None" {
			headless = true
		}
	}
	if !headless {
		t.Errorf("serviceName %q is not a headless Service in service.yaml", ss.ServiceName)
	}
}

func itoa(n int) string { return itoaAny(n) }

// stringMap returns the string values of a decoded YAML mapping.
func stringMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	out := map[string]string{}
	for k, x := range m {
		if s, ok := x.(string); ok {
			out[k] = s
		}
	}
	return out
}

func itoaAny(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}
