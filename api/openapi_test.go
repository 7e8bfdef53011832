package api_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/events"
	"github.com/hppd/hppd/internal/yamljson"
)

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPIJSON)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(openapi3.NewLoader().Context); err != nil {
		t.Fatal(err)
	}
	return doc
}

func schema(t *testing.T, doc *openapi3.T, name string) *openapi3.Schema {
	t.Helper()
	ref, ok := doc.Components.Schemas[name]
	if !ok || ref.Value == nil {
		t.Fatalf("no schema %s", name)
	}
	return ref.Value
}

func check(t *testing.T, s *openapi3.Schema, raw string) error {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatal(err)
	}
	return s.VisitJSON(v, openapi3.EnableJSONSchema2020())
}

func TestDocumentIsOpenAPI31WithEverySummary(t *testing.T) {
	doc := loadDoc(t)
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %s, want 3.1", doc.OpenAPI)
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Summary == "" {
				t.Errorf("%s %s has no summary", method, path)
			}
		}
	}
}

// Every storefront event type is a webhook of the document, with a body
// schema whose type is that event type.
func TestEveryStorefrontEventIsAWebhook(t *testing.T) {
	doc := loadDoc(t)
	all := append(append([]string{}, events.SessionTypes...), events.ChargeTypes...)
	for _, typ := range all {
		item, ok := doc.Webhooks[typ]
		if !ok || item.Post == nil {
			t.Errorf("no webhook %s", typ)
			continue
		}
		if item.Post.Summary == "" {
			t.Errorf("webhook %s has no summary", typ)
		}
		s := item.Post.RequestBody.Value.Content.Get("application/json").Schema.Value
		res := `{"id":"s1","status":"order_placed","integration":"hpp","place_order_mode":"NONE","klarna":{},"purchase_country":"SE","purchase_currency":"SEK","order_amount":1,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-01T00:00:00Z","sequence":1,"history":[]}`
		if strings.HasPrefix(typ, "charge.") {
			res = `{"id":"c1","status":"charged","customer_token":"****abcd","customer_present":false,"purchase_currency":"SEK","order_amount":1,"retries":0,"attempts":[],"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","sequence":1,"history":[]}`
		}
		if err := check(t, s, `{"type":"`+typ+`","timestamp":"2026-01-01T00:00:00Z","data":`+res+`}`); err != nil {
			t.Errorf("webhook %s refuses its own event: %v", typ, err)
		}
		other := "session.authorized"
		if typ == other {
			other = "session.failed"
		}
		if check(t, s, `{"type":"`+other+`","timestamp":"2026-01-01T00:00:00Z","data":`+res+`}`) == nil {
			t.Errorf("webhook %s accepts an event of type %s", typ, other)
		}
	}
	if len(doc.Webhooks) != len(all) {
		t.Errorf("%d webhooks for %d event types", len(doc.Webhooks), len(all))
	}
}

// The document holds requests to the rules the server holds them to.
func TestDocumentStatesTheServersConditionalRules(t *testing.T) {
	doc := loadDoc(t)
	const purchase = `"purchase_country":"SE","purchase_currency":"SEK","locale":"sv-SE","order_amount":100,"order_lines":[{"name":"x","quantity":1,"unit_price":100,"total_amount":100}]`
	const urls = `"return_urls":{"success":"https://shop.example/ok","failure":"https://shop.example/no"}`
	cases := []struct {
		name, schema, body string
		ok                 bool
	}{
		{"hpp session with return urls", "SessionCreate", `{` + purchase + `,` + urls + `}`, true},
		{"hpp session without return urls", "SessionCreate", `{` + purchase + `}`, false},
		{"explicit hpp session without return urls", "SessionCreate", `{` + purchase + `,"integration":"hpp"}`, false},
		{"return urls without failure", "SessionCreate", `{` + purchase + `,"return_urls":{"success":"https://shop.example/ok"}}`, false},
		{"return url not http", "SessionCreate", `{` + purchase + `,"return_urls":{"success":"ftp://shop.example/ok","failure":"https://shop.example/no"}}`, false},
		{"sdk session without return urls", "SessionCreate", `{` + purchase + `,"integration":"sdk"}`, true},
		{"sdk session placing the order itself", "SessionCreate", `{` + purchase + `,"integration":"sdk","place_order_mode":"PLACE_ORDER"}`, false},
		{"charge present with return urls", "ChargeCreate", `{` + purchase + `,"customer_token":"t","customer_present":true,` + urls + `}`, true},
		{"charge present without return urls", "ChargeCreate", `{` + purchase + `,"customer_token":"t","customer_present":true}`, false},
		{"charge present sdk without return urls", "ChargeCreate", `{` + purchase + `,"customer_token":"t","customer_present":true,"integration":"sdk"}`, true},
		{"charge absent without return urls", "ChargeCreate", `{` + purchase + `,"customer_token":"t","customer_present":false}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := check(t, schema(t, doc, c.schema), c.body)
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestHistoryEntriesUseTheStatusEnums(t *testing.T) {
	doc := loadDoc(t)
	for _, c := range []struct{ schema, entry string }{
		{"SessionChange", `{"at":"2026-01-01T00:00:00Z","from":"pending","to":"charged","source":"api"}`},
		{"ChargeChange", `{"at":"2026-01-01T00:00:00Z","from":"pending","to":"order_placed","source":"api"}`},
	} {
		if check(t, schema(t, doc, c.schema), c.entry) == nil {
			t.Errorf("%s accepts %s", c.schema, c.entry)
		}
	}
	charge := schema(t, doc, "Charge")
	for _, f := range []string{"retries", "next_retry_at", "sequence"} {
		p, ok := charge.Properties[f]
		if !ok || (p.Value != nil && p.Value.Description == "" && p.Ref == "") {
			t.Errorf("charge.%s is not described", f)
		}
	}
}

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
