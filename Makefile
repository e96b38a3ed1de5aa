# The one build command: the Dockerfile and the tests use it too.
GO       ?= go
BIN      ?= bin/invalidator
GOBIN    ?= $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION ?= v0.8.2

.PHONY: build deps test unit lint tools demo bench deploy-check clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN) ./cmd/invalidator

## deps: install the servers and tools the tests need (.ci/deps: Debian
## packages, PostgreSQL 14/16/17/18 binaries, staticcheck); quick when present.
deps:
	./.ci/deps

## test: everything CI runs — lint, unit and integration tests against real
## PostgreSQL (14 to 18)/Redis/NATS, the deploy manifests, and the README's demo.
test: deps
	$(MAKE) lint
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -race -count=1 ./router/
	$(MAKE) deploy-check
	./demo/demo.sh --once

## unit: the tests that need no servers.
unit:
	INVALIDATOR_SKIP_INTEGRATION=1 $(GO) test -count=1 ./cdc/... ./router/... ./config/... ./publisher/...

lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...

tools:
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

deploy-check:
	@if [ -d deploy/validate ]; then cd deploy/validate && $(GO) test -count=1 ./...; fi

## bench: throughput, latency, memory and CPU against real PostgreSQL/Redis and
## the pg_recvlogical floor (about 4 minutes on the development machine), then the Go micro-benchmarks.
## BENCHFLAGS=-json for machine-readable output. Not part of `make test`.
bench:
	@$(GO) run ./bench $(BENCHFLAGS)
	@$(GO) test -run '^$$' -bench . -benchmem ./cdc/ ./router/ ./publisher/ >&2

demo:
	./demo/demo.sh

clean:
	rm -rf bin .demo
