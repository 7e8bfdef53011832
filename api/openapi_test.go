package api_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/internal/yamljson"
)

// TestOpenAPIJSONIsGenerated fails when openapi.json (embedded and served)
// is not what `go generate ./api` makes of openapi.yaml.
func TestOpenAPIJSONIsGenerated(t *testing.T) {
	src, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := yamljson.Convert(src)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !bytes.Equal(api.OpenAPIJSON, want) {
		t.Fatal("api/openapi.json is not generated from api/openapi.yaml as it stands: run go generate ./api and commit both")
	}
}

// TestOpenAPIDocumentIsValid loads the served document as an OpenAPI
// client would and checks it is the same document as the YAML, read by the
// OpenAPI library itself rather than by our converter.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	fromJSON, err := openapi3.NewLoader().LoadFromData(api.OpenAPIJSON)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := fromJSON.Validate(openapi3.NewLoader().Context); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	fromYAML, err := openapi3.NewLoader().LoadFromFile("openapi.yaml")
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	a, err := json.Marshal(fromJSON)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(fromYAML)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("openapi.json and openapi.yaml describe different documents")
	}
	if fromJSON.Paths.Find("/v1/charges") == nil {
		t.Fatal("no /v1/charges in the document")
	}
}
