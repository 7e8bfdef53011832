package metrics_test

import (
	"testing"

	"github.com/hppd/hppd/internal/config"
)

// deploy/kubernetes/ha.yaml: three replicas on PostgreSQL, every secret
// (the database URL included) a file, readiness on /readyz (which follows
// the database), and a PodDisruptionBudget over the same pods that keeps two.
func TestDeployKubernetesHA(t *testing.T) {
	objs := loadK8s(t, "ha.yaml")
	if len(objs) != 2 || objs[0].Kind != "Deployment" || objs[1].Kind != "PodDisruptionBudget" {
		t.Fatalf("ha.yaml: want a Deployment and a PodDisruptionBudget")
	}
	d := objs[0].Spec
	if d.Replicas == nil || *d.Replicas != 3 {
		t.Errorf("replicas: want 3")
	}
	if len(d.Template.Spec.Containers) != 1 {
		t.Fatal("want one container")
	}
	c := d.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for _, v := range config.Vars {
		if !v.Secret {
			continue
		}
		if _, ok := env[v.Name]; ok {
			t.Errorf("%s is set as a plain variable", v.Name)
		}
		if env[v.Name+"_FILE"] == "" {
			t.Errorf("%s_FILE is not set: secrets come from Secrets", v.Name)
		}
	}
	if _, ok := env["HPPD_DB"]; ok {
		t.Error("HPPD_DB is set: the replicas keep nothing of their own")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("readiness must be /readyz: a replica that cannot reach the database gets no traffic")
	}
	pdbSel, _ := objs[1].Spec.Selector["matchLabels"].(map[string]any)
	depSel, _ := d.Selector["matchLabels"].(map[string]any)
	if len(pdbSel) == 0 || len(pdbSel) != len(depSel) {
		t.Fatalf("the budget's selector %v is not the Deployment's %v", pdbSel, depSel)
	}
	for k, v := range depSel {
		if pdbSel[k] != v {
			t.Errorf("the budget's selector %v is not the Deployment's %v", pdbSel, depSel)
		}
	}
	secrets := map[string]string{
		env["HPPD_DATABASE_URL_FILE"]:    "postgres://hppd:pw@db.example/hppd",
		env["HPPD_KLARNA_USERNAME_FILE"]: "user",
		env["HPPD_KLARNA_PASSWORD_FILE"]: "password",
		env["HPPD_JWT_HS256_KEY_FILE"]:   "0123456789abcdef0123456789abcdef-key",
	}
	cfg := loadConfig(t, env, secrets)
	if cfg.Database == "" || cfg.DatabaseMaxConns <= 0 {
		t.Fatalf("the configuration does not select PostgreSQL: %+v", cfg.Database != "")
	}
}
