// Package yamljson turns a YAML document into JSON, keeping the order of
// mapping keys as written. It exists so that the storefront API's OpenAPI
// document (api/openapi.yaml, written by hand) can be served as JSON without
// converting it at start-up: `go generate ./api` writes api/openapi.json
// with it, the binary embeds that file, and a test in api fails when the two
// drift. It needs only the YAML decoder hppd already links for its
// configuration file; an OpenAPI library is needed only to validate the
// document, which the tests do.
package yamljson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"go.yaml.in/yaml/v4"
)

// Convert returns the one YAML document in src as JSON indented by two
// spaces, with a final newline. Mapping keys keep their order; scalars keep
// their YAML type (a quoted "1" stays a string, 1 a number). Aliases are
// expanded. Merge keys (<<), non-scalar keys, and values JSON cannot hold
// (NaN, infinities, binary, timestamps) are errors, not silent changes.
func Convert(src []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Load(src, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 {
		return nil, errors.New("empty document")
	}
	var b bytes.Buffer
	if err := write(&b, &doc, ""); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("indent: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func write(b *bytes.Buffer, n *yaml.Node, path string) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return fmt.Errorf("a document holds %d nodes, want 1", len(n.Content))
		}
		return write(b, n.Content[0], path)
	case yaml.AliasNode:
		return write(b, n.Alias, path)
	case yaml.MappingNode:
		b.WriteByte('{')
		seen := make(map[string]bool, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("%s: line %d: a key that is not a scalar", where(path), k.Line)
			}
			if k.ShortTag() == "!!merge" {
				return fmt.Errorf("%s: line %d: merge keys (<<) are not supported", where(path), k.Line)
			}
			if seen[k.Value] {
				return fmt.Errorf("%s: line %d: key %q twice", where(path), k.Line, k.Value)
			}
			seen[k.Value] = true
			if i > 0 {
				b.WriteByte(',')
			}
			if err := marshal(b, k.Value); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := write(b, v, path+"/"+k.Value); err != nil {
				return err
			}
		}
		b.WriteByte('}')
		return nil
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := write(b, c, fmt.Sprintf("%s/%d", path, i)); err != nil {
				return err
			}
		}
		b.WriteByte(']')
		return nil
	case yaml.ScalarNode:
		var v any
		switch n.ShortTag() {
		case "!!str", "!!null", "!!bool", "!!int", "!!float":
			if err := n.Decode(&v); err != nil {
				return fmt.Errorf("%s: line %d: %w", where(path), n.Line, err)
			}
		default:
			return fmt.Errorf("%s: line %d: a %s value has no JSON form", where(path), n.Line, n.ShortTag())
		}
		if err := marshal(b, v); err != nil {
			return fmt.Errorf("%s: line %d: %w", where(path), n.Line, err)
		}
		return nil
	}
	return fmt.Errorf("%s: line %d: unknown YAML node kind %d", where(path), n.Line, n.Kind)
}

// marshal writes v as JSON without escaping <, > and & (the document is
// read by people and tools, never pasted into HTML).
func marshal(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

func where(path string) string {
	if path == "" {
		return "/"
	}
	return path
}
