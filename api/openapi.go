package api

import _ "embed"

// The storefront API's OpenAPI 3 document is written by hand in
// openapi.yaml and served as JSON at GET /openapi.json. The JSON is made at
// build time, not at start-up, so the daemon links no OpenAPI library and
// spends nothing converting it; TestOpenAPIJSONIsGenerated fails when the
// two files drift. After editing openapi.yaml, run:
//
//	go generate ./api
//
//go:generate go run github.com/hppd/hppd/internal/yamljson/yaml2json -o openapi.json openapi.yaml

// OpenAPIJSON is the OpenAPI document of the storefront API as JSON, for GET
// /openapi.json. The end-to-end tests validate every request and answer
// against it, so it stays true.
//
//go:embed openapi.json
var OpenAPIJSON []byte
