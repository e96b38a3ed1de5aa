# The one build command: the Dockerfile and the tests use it too.
GO       ?= go
BIN      ?= bin/invalidator
GOBIN    ?= $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION ?= v0.8.2

.PHONY: build deps test unit lint tools demo bench deploy-check clean

# COMMIT is stamped into the binary (`invalidator version`), so the version
# names its commit even where the Go install sets GOFLAGS=-buildvcs=false.
COMMIT   ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w -X main.buildCommit=$(COMMIT)' -o $(BIN) ./cmd/invalidator

## deps: install the servers and tools the tests need (.ci/deps: Debian
## packages, PostgreSQL 14/16/17/18 binaries, staticcheck); quick when present.
deps:
	./.ci/deps

## test: everything CI runs — lint, unit and integration tests against real
## PostgreSQL (14 to 18)/Redis/NATS, the deploy manifests, and the README's demo.
## Each step says what it does and how long it usually takes (2 cores, warm
## build cache; the first run also downloads modules and builds everything).
step = @printf '\n== make test: %s\n' "$(1)"

test:
	$(call step,about 5 minutes in all: install what is missing; lint; unit and integration tests; the router under -race; deploy manifests; the demo)
	$(call step,install what the tests need (.ci/deps) - a second when present; a minute or two the first time)
	@$(MAKE) --no-print-directory deps
	$(call step,lint: gofmt / go vet / staticcheck - up to a minute)
	@$(MAKE) --no-print-directory lint
	$(call step,unit and integration tests against real PostgreSQL 14-18 / Redis / Redis Cluster / NATS on loopback - most of the total; silent until each package ends)
	$(GO) test -count=1 -timeout 30m ./...
	$(call step,the router again under -race - seconds (minutes the first time: the race runtime is built))
	$(GO) test -race -count=1 ./router/
	$(call step,deploy manifests and the Dockerfile - seconds)
	@$(MAKE) --no-print-directory deploy-check
	$(call step,the README's demo - about 15 seconds)
	./demo/demo.sh --once
	$(call step,passed)

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
## the pg_recvlogical floor, then every sink (core NATS, JetStream, a 3-master
## Redis Cluster) against a bare client of it, then namespace versions and the
## wide form among 0, 1M and 10M unrelated keys (namespace, scale), then the Go
## micro-benchmarks: 8 minutes in all on the development machine (2026-12-08;
## BENCHFLAGS=-sinks-duration=10s sets each of the sinks' 12 steady runs).
## BENCHFLAGS=-json for machine-readable output. Not part of `make test`.
bench:
	@$(GO) run ./bench $(BENCHFLAGS)
	@$(GO) test -run '^$$' -bench . -benchmem ./cdc/ ./router/ ./publisher/ >&2

demo:
	./demo/demo.sh

clean:
	rm -rf bin .demo
