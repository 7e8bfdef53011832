package main

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"os/exec"
	"strings"
	"testing"
)

// goList runs `go list` with args in this module and returns its lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// TestBinaryLinksNoTestLibraries keeps libraries the tests need out of the
// daemon: the OpenAPI document is converted at build time (go generate
// ./api), and the browser driver is for the demo's tests.
func TestBinaryLinksNoTestLibraries(t *testing.T) {
	deps := goList(t, "-deps", ".")
	if !contains(deps, "github.com/hppd/hppd/webhook") {
		t.Fatalf("go list -deps does not list the webhook package: %v", deps)
	}
	for _, p := range deps {
		for _, banned := range []string{"github.com/getkin/kin-openapi", "github.com/chromedp/"} {
			if strings.HasPrefix(p, banned) {
				t.Errorf("cmd/hppd links %s", p)
			}
		}
	}
}

// TestReleaseBuildLeavesMessagePackOut: make build (and the Dockerfile)
// build with the tag nomsgpack, which keeps gin's MessagePack codec, and
// its share of the binary and of the idle RSS, out of the daemon.
func TestReleaseBuildLeavesMessagePackOut(t *testing.T) {
	deps := goList(t, "-tags", "nomsgpack", "-deps", ".")
	if !contains(deps, "github.com/gin-gonic/gin") {
		t.Fatalf("go list -deps does not list gin: %v", deps)
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "github.com/ugorji/go/") {
			t.Errorf("cmd/hppd built with nomsgpack links %s", p)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// wiringImporters are the only packages that may import the wiring
// (internal/daemon): the binaries and the benchmarks under cmd/ (which
// measure the daemon as hppd serve wires it), and the test environment,
// which only tests import (TestWiringPointsOneWay checks that too). The
// adapters (metrics, admin, webhook, ...) take small interfaces or values
// instead.
var wiringImporters = []string{
	"github.com/hppd/hppd/cmd/",
	testenvPkg,
}

const testenvPkg = "github.com/hppd/hppd/internal/testenv"

// TestWiringPointsOneWay fails when a package other than those imports the
// wiring.
func TestWiringPointsOneWay(t *testing.T) {
	const wiring = "github.com/hppd/hppd/internal/daemon"
	lines := goList(t, "-f", "{{.ImportPath}}:{{join .Imports \",\"}}", "github.com/hppd/hppd/...")
	if len(lines) < 10 {
		t.Fatalf("go list found only %d packages", len(lines))
	}
	for _, l := range lines {
		pkg, imports, _ := strings.Cut(l, ":")
		if pkg == wiring || !contains(strings.Split(imports, ","), wiring) {
			continue
		}
		allowed := false
		for _, p := range wiringImporters {
			allowed = allowed || pkg == p || strings.HasPrefix(pkg, p)
		}
		if !allowed {
			t.Errorf("%s imports the wiring (%s)", pkg, wiring)
		}
	}
	// The test environment builds the wiring for tests only: no package's
	// own code imports it, so it never reaches a binary.
	for _, l := range lines {
		pkg, imports, _ := strings.Cut(l, ":")
		if contains(strings.Split(imports, ","), testenvPkg) {
			t.Errorf("%s imports the test environment outside its tests", pkg)
		}
	}
}

// TestNoInitRegistration keeps hppd free of init functions outside tests:
// what a binary is made of is declared where it is built (newMain, commands),
// not assembled by files registering themselves in an order nobody sees.
func TestNoInitRegistration(t *testing.T) {
	files := goList(t, "-f", "{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}} {{end}}", "github.com/hppd/hppd/...")
	if len(files) < 50 {
		t.Fatalf("go list found only %d files", len(files))
	}
	fset := gotoken.NewFileSet()
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.Name == "init" {
				t.Errorf("%s: func init", fset.Position(fn.Pos()))
			}
		}
	}
}
