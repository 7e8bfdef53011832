package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRunWritesJSONAndKeepsTheOldFileOnError(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.yaml"), filepath.Join(dir, "out.json")
	if err := os.WriteFile(in, []byte("b: 1\na: [x]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(in, out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"b\": 1,\n  \"a\": [\n    \"x\"\n  ]\n}\n"
	if string(got) != want {
		t.Fatalf("wrote %q, want %q", got, want)
	}

	if err := os.WriteFile(in, []byte("a: 1\na: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(in, out); err == nil {
		t.Fatal("a duplicate key was converted")
	}
	if again, _ := os.ReadFile(out); string(again) != want {
		t.Fatalf("a failed run changed the output to %q", again)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("files left in the directory: %v", entries)
	}
}
