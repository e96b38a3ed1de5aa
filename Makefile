# The one build command: the Dockerfile and the tests use it too.
GO       ?= go
BIN      ?= bin/invalidator
GOBIN    ?= $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION ?= v0.8.2

.PHONY: build test unit lint tools demo bench deploy-check clean

# COMMIT is stamped into the binary (`invalidator version`), so the version
# names its commit even where the Go install sets GOFLAGS=-buildvcs=false.
COMMIT   ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w -X main.buildCommit=$(COMMIT)' -o $(BIN) ./cmd/invalidator

## test: everything CI runs — lint, unit and integration tests against real
## PostgreSQL/Redis/NATS, the deploy manifests, and the README's demo.
test: lint
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
