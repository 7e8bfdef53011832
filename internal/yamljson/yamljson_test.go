package yamljson

import (
	"strings"
	"testing"
)

func TestConvert(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"key order kept", "b: 1\na: 2\n", `{"b":1,"a":2}`},
		{"types kept", "s: \"1\"\ni: 1\nf: 1.5\nt: true\nn: null\nq: '200'\nplain: hello world\n",
			`{"s":"1","i":1,"f":1.5,"t":true,"n":null,"q":"200","plain":"hello world"}`},
		{"numeric keys become strings", "200:\n  ok: yes\n", `{"200":{"ok":"yes"}}`},
		{"flow and block sequences", "a: [1, {x: y}]\nb:\n  - c\n", `{"a":[1,{"x":"y"}],"b":["c"]}`},
		{"folded text", "d: >-\n  one\n  two\n", `{"d":"one two"}`},
		{"aliases expanded", "a: &x {k: v}\nb: *x\n", `{"a":{"k":"v"},"b":{"k":"v"}}`},
		{"escapes", "s: \"<a href='x'>&\\\"\"\n", `{"s":"<a href='x'>&\""}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Convert([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if compact(string(got)) != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
			if !strings.HasSuffix(string(got), "\n") {
				t.Error("no final newline")
			}
		})
	}
}

func TestConvertRefuses(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", "no documents"},
		{"duplicate key", "a: 1\na: 2\n", "a"},
		{"merge key", "a: &x {k: v}\nb:\n  <<: *x\n", "merge"},
		{"complex key", "? [1, 2]\n: x\n", "not a scalar"},
		{"NaN", "a: .nan\n", "/a"},
		{"timestamp", "a: !!timestamp 2001-12-14\n", "no JSON form"},
		{"broken", "a: [1\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Convert([]byte(c.in))
			if err == nil {
				t.Fatalf("converted to %s", got)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// compact removes the indentation Convert adds.
func compact(s string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' && (i == 0 || s[i-1] != '\\') {
			in = !in
		}
		if !in && (c == ' ' || c == '\n') {
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
