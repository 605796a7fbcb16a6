# jobbridge: everything a fresh machine needs goes through these targets.
GO        ?= go
PKGS      ?= ./...
BIN       ?= bin/jobbridge
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# Real servers for `make integration` (this machine kind runs both).
JOBBRIDGE_IT_NATS_URL ?= nats://127.0.0.1:4222
FUZZTIME  ?= 10s
BENCHTIME ?= 1x

export JOBBRIDGE_IT_NATS_URL

.PHONY: all build test integration bench demo lint fuzz clean help js-deps

all: lint test

help:
	@echo "make demo         embedded NATS + vendor simulators + bridge + live event view (Ctrl-C stops)"
	@echo "make test         unit and in-process tests with the race detector (no service needed)"
	@echo "make integration  tests against the real NATS at $(JOBBRIDGE_IT_NATS_URL)"
	@echo "make bench        benchmarks with baselines side by side; prints ratios"
	@echo "make fuzz         every fuzz target for FUZZTIME each ($(FUZZTIME))"
	@echo "make lint         gofmt check and go vet"
	@echo "make build        $(BIN)"

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/jobbridge

demo:
	$(GO) run ./cmd/jobbridge demo

# The JavaScript consumer example is tested in `make test`; its packages come
# from the npm registry, pinned by its package-lock.json.
js-deps:
	cd deploy/examples/js-consumer && npm ci --no-audit --no-fund

test: js-deps
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

integration: js-deps
	$(GO) test -race -count=1 -timeout 15m -tags integration -run Integration $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 30m $(PKGS)

# Each fuzz target runs on its own: go test allows one -fuzz target per run.
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf bin data
