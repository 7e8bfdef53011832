# hppd — `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/hppd/hppd/internal/daemon.Version=$(VERSION)
BIN := bin/hppd
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 5s

.PHONY: help build test test-short lint fuzz demo chaos bench sim clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/hppd with the version stamped
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hppd

test: ## every test with the race detector, then lint and short fuzz runs
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) lint
	$(MAKE) fuzz

test-short: ## the unit tests only, no race detector
	$(GO) test -count=1 -short ./...

lint: ## go vet, gofmt and staticcheck
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

fuzz: ## run every fuzz target for FUZZTIME (default 5s)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

demo: build ## run the daemon with its simulator and walk one purchase end to end
	$(GO) run ./cmd/hppd-demo -bin $(BIN)

sim: build ## run the Klarna simulator on 127.0.0.1:8081
	$(BIN) sim

clean: ## remove build output
	rm -rf bin
