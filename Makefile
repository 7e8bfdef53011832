# hppd — `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/hppd/hppd/internal/daemon.Version=$(VERSION)
# nomsgpack leaves gin's MessagePack codec (ugorji/go) out: hppd speaks JSON
# only, and the codec's code and tables were about 5 MiB of the binary and
# 1.7 MiB of the idle RSS.
TAGS := nomsgpack
BIN := bin/hppd
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 5s

.PHONY: help build generate test test-tools test-short lint openapi-lint fuzz demo chaos bench sim clean deploy-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/hppd with the version stamped
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hppd

generate: ## regenerate api/openapi.json (served at /openapi.json) from api/openapi.yaml; a test fails when they drift
	$(GO) generate ./api

test: test-tools ## every test with the race detector, then lint, short fuzz runs and deployment checks
	$(GO) test -race -count=1 -parallel 4 -timeout 15m ./...
	$(MAKE) lint
	$(MAKE) openapi-lint
	$(MAKE) fuzz
	$(MAKE) deploy-check

test-tools: ## install the Debian packages the tests need (chromium, postgresql, promtool, systemd-analyze, jq) when missing
	@bash scripts/install-test-tools.sh

test-short: ## the unit tests only, no race detector
	$(GO) test -count=1 -short ./...

lint: ## go vet, gofmt and staticcheck
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

# openapi-lint installs the pinned Redocly CLI (tools/redocly/package-lock.json)
# into tools/redocly/node_modules with npm ci, once per lock change. Outside CI
# a missing npm skips the check; in CI (CI set) it fails.
openapi-lint: ## lint api/openapi.yaml with Redocly CLI's recommended rules (tools/redocly/redocly.yaml)
	@set -euo pipefail; \
	if ! command -v npm >/dev/null 2>&1; then \
	  if [ -n "$${CI:-}" ]; then echo "openapi-lint: npm is not installed (required in CI)" >&2; exit 1; fi; \
	  echo "openapi-lint: npm is not installed; skipping (CI would fail)" >&2; exit 0; \
	fi; \
	cd tools/redocly; \
	if [ ! -f .installed ] || [ package-lock.json -nt .installed ]; then npm ci --no-audit --no-fund; touch .installed; fi; \
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true node_modules/.bin/redocly lint --config redocly.yaml ../../api/openapi.yaml

# fuzz finds the targets in the packages' test files (gofmt puts every
# "func FuzzX(f *testing.F)" at the start of a line) instead of asking
# "go test -list" of every package, which builds and links every test binary
# once more: three minutes on a cold build cache.
fuzz: ## run every fuzz target for FUZZTIME (default 5s)
	@set -euo pipefail; \
	$(GO) list -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./... | \
	while read -r pkg dir files; do \
	  [ -n "$$files" ] || continue; \
	  for t in $$(cd "$$dir" && sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$files); do \
	    echo "fuzz $$pkg $$t"; bash scripts/fuzz-one.sh $(GO) $$pkg $$t $(FUZZTIME) </dev/null; \
	  done; \
	done

demo: build ## hppd + simulator: walk one purchase step by step, then serve a storefront to click through
	$(GO) run ./cmd/hppd-demo -bin $(BIN)

# chaos runs twice: once with place-order replays answered with the original
# order, once with them answered 403 "already consumed" (FACTS 8.2).
chaos: build ## chaos runs: 2000 purchases, 1000 charges, 20 SIGKILLs under faults, replays identical then consumed (SEED=n replays; REPLICAS=3: replicas on PostgreSQL behind a balancer)
	$(GO) run ./cmd/hppd-chaos -bin $(BIN) -sessions 2000 -charges 1000 -kills 20 -replay identical $(if $(SEED),-seed $(SEED)) $(if $(REPLICAS),-replicas $(REPLICAS))
	$(GO) run ./cmd/hppd-chaos -bin $(BIN) -sessions 2000 -charges 1000 -kills 20 -replay consumed $(if $(SEED),-seed $(SEED)) $(if $(REPLICAS),-replicas $(REPLICAS))

sim: build ## run the Klarna simulator on 127.0.0.1:8081
	$(BIN) sim

# bench is not part of test: it takes minutes and its figures depend on the
# machine (BENCHMARKS.md records which one, and how busy it was).
bench: build ## run the seven benchmarks (callbacks, poller, fallback path, footprint, a simulated month, outsiders, callbacks on PostgreSQL) and rewrite BENCHMARKS.md
	$(GO) build -o bin/hppd-bench ./cmd/hppd-bench
	bin/hppd-bench -bin $(BIN) -out BENCHMARKS.md -go $(GO) -command 'make bench'

clean: ## remove build output
	rm -rf bin

# deploy-check needs promtool (Debian: prometheus), systemd-analyze (systemd)
# and jq; .ci/run installs them. Outside CI a missing tool skips its check; in
# CI (CI set) it fails.
deploy-check: build ## check deploy/: alert rules and their tests, systemd unit, dashboard JSON, drift tests
	@set -euo pipefail; \
	have() { \
	  if command -v "$$1" >/dev/null 2>&1; then return 0; fi; \
	  if [ -n "$${CI:-}" ]; then echo "deploy-check: $$1 is not installed (required in CI)" >&2; exit 1; fi; \
	  echo "deploy-check: $$1 is not installed; skipping its check (CI would fail)" >&2; return 1; \
	}; \
	if have promtool; then \
	  promtool check rules deploy/prometheus/alerts.yml; \
	  promtool test rules deploy/prometheus/alerts_test.yml; \
	fi; \
	if have systemd-analyze; then \
	  tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  sed -E 's#^ExecStart=[^ ]+#ExecStart=$(CURDIR)/$(BIN)#' deploy/systemd/hppd.service > "$$tmp/hppd.service"; \
	  out=$$(systemd-analyze verify "$$tmp/hppd.service" 2>&1) || { echo "$$out" >&2; exit 1; }; \
	  if grep -q 'hppd\.service' <<<"$$out"; then echo "$$out" >&2; exit 1; fi; \
	  systemd-analyze security --offline=yes --threshold=20 --no-pager "$$tmp/hppd.service" >/dev/null \
	    || { systemd-analyze security --offline=yes --no-pager "$$tmp/hppd.service" >&2; echo "deploy-check: hppd.service exposure above 2.0" >&2; exit 1; }; \
	  echo "systemd-analyze: deploy/systemd/hppd.service verified"; \
	fi; \
	if have jq; then jq empty deploy/grafana/hppd-dashboard.json && echo "jq: deploy/grafana/hppd-dashboard.json is valid JSON"; fi; \
	$(GO) test -count=1 -run Deploy ./metrics/
