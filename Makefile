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

.PHONY: all build test integration bench demo lint fuzz faults clean help js-deps

all: lint test

help:
	@echo "make demo         embedded NATS + vendor simulators + bridge + live event view (Ctrl-C stops)"
	@echo "make test         unit and in-process tests with the race detector (no service needed)"
	@echo "make integration  tests against the real NATS at $(JOBBRIDGE_IT_NATS_URL)"
	@echo "make bench        benchmarks with baselines side by side; report and plots in $(BENCH_OUT)/"
	@echo "make fuzz         every fuzz target for FUZZTIME each ($(FUZZTIME))"
	@echo "make faults       fault suite: real bridge, NATS and simulator processes under faults (FAULTS=full|bounded)"
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

# The fault suite (build tag faults, cmd/jobbridge/faults*_test.go): the
# bridge as a child process against the simulators and nats-server
# processes of its own (never the shared 4222), under crashes, NATS,
# broker, vendor and disk faults; it prints a table of what was lost.
# FAULTS=full: 24 SIGKILLs, 6 NATS restarts (~5 min); .ci/run runs bounded (~2.5 min).
# Needs root for the disk-full row (a tmpfs mount).
FAULTS ?= full
faults:
	JOBBRIDGE_FAULTS=$(FAULTS) $(GO) test -tags faults -count=1 -run '^TestFaults$$' -v -timeout 30m ./cmd/jobbridge

# `make bench` runs the suite one package at a time (-p 1: two benchmark
# binaries at once would measure each other), tees the raw output to
# $(BENCH_OUT)/bench.txt and writes $(BENCH_OUT)/report.md with SVG plots.
# Knobs: BENCH (regexp), BENCH_PKGS, BENCH_PROFILE=0 skips the profiles, and
# the JOBBRIDGE_BENCH_* variables the benchmarks read (README, Performance);
# a quick run: make bench JOBBRIDGE_BENCH_SIZES=1000,10000 JOBBRIDGE_BENCH_INTERVAL=20s
BENCH_OUT     ?= results
BENCH         ?= PollRate|PollPath|PublishPath|PushRate|Startup|WatchedJobMemory
BENCH_PKGS    ?= ./pollers/registry ./bridge ./notifiers/hmc
BENCH_PROFILE ?= 1

bench:
	@mkdir -p $(BENCH_OUT)/prof
	@rm -f $(BENCH_OUT)/profile-*.txt $(BENCH_OUT)/prof/*.pprof
	@{ $(GO) test -p 1 -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -timeout 60m $(BENCH_PKGS); echo $$? > $(BENCH_OUT)/.rc; } 2>&1 | tee $(BENCH_OUT)/bench.txt
	@if [ "$(BENCH_PROFILE)" = 1 ]; then \
	  echo "profiles: poll path (10,000 jobs, saturated) and publish path"; \
	  JOBBRIDGE_BENCH_JOBS=10000 JOBBRIDGE_BENCH_PROFDIR=$(abspath $(BENCH_OUT))/prof $(GO) test -run '^$$' -bench '^BenchmarkPollPath$$' -benchtime 1x \
	    -memprofile $(abspath $(BENCH_OUT))/prof/poll-mem.pprof -o $(BENCH_OUT)/prof/registry.test ./pollers/registry > $(BENCH_OUT)/prof/poll-bench.txt 2>&1 || cat $(BENCH_OUT)/prof/poll-bench.txt; \
	  $(GO) test -run '^$$' -bench '^BenchmarkPublishPath$$' -benchtime 1x -cpuprofile $(abspath $(BENCH_OUT))/prof/publish-cpu.pprof \
	    -memprofile $(abspath $(BENCH_OUT))/prof/publish-mem.pprof -o $(BENCH_OUT)/prof/bridge.test ./bridge > $(BENCH_OUT)/prof/publish-bench.txt 2>&1 || cat $(BENCH_OUT)/prof/publish-bench.txt; \
	  $(GO) tool pprof -top -nodecount=25 $(BENCH_OUT)/prof/registry.test $(BENCH_OUT)/prof/cpu-ours-*.pprof > $(BENCH_OUT)/profile-poll-cpu.txt 2>/dev/null; \
	  $(GO) tool pprof -top -nodecount=25 -sample_index=alloc_space $(BENCH_OUT)/prof/registry.test $(BENCH_OUT)/prof/poll-mem.pprof > $(BENCH_OUT)/profile-poll-alloc.txt 2>/dev/null; \
	  $(GO) tool pprof -top -nodecount=25 $(BENCH_OUT)/prof/bridge.test $(BENCH_OUT)/prof/publish-cpu.pprof > $(BENCH_OUT)/profile-publish-cpu.txt 2>/dev/null; \
	  $(GO) tool pprof -top -nodecount=25 -sample_index=alloc_space $(BENCH_OUT)/prof/bridge.test $(BENCH_OUT)/prof/publish-mem.pprof > $(BENCH_OUT)/profile-publish-alloc.txt 2>/dev/null; \
	  $(GO) tool pprof -top -cum -nodecount=30 -show='jobbridge/jobbridge/(bridge|pollers/(pollkit|tso|helix|arcgis|hmc|huawei))\.' \
	    $(BENCH_OUT)/prof/registry.test $(BENCH_OUT)/prof/cpu-ours-*.pprof > $(BENCH_OUT)/profile-poll-cpu-jobbridge-cum.txt 2>/dev/null; \
	  $(GO) tool pprof -top -cum -nodecount=30 -sample_index=alloc_space -show='jobbridge/jobbridge/(bridge|pollers/(pollkit|tso|helix|arcgis|hmc|huawei))\.' \
	    $(BENCH_OUT)/prof/registry.test $(BENCH_OUT)/prof/poll-mem.pprof > $(BENCH_OUT)/profile-poll-alloc-jobbridge-cum.txt 2>/dev/null; \
	  $(GO) tool pprof -top -cum -nodecount=30 -show='jobbridge/jobbridge/bridge\.' \
	    $(BENCH_OUT)/prof/bridge.test $(BENCH_OUT)/prof/publish-cpu.pprof > $(BENCH_OUT)/profile-publish-cpu-jobbridge-cum.txt 2>/dev/null; \
	fi
	$(GO) run ./cmd/benchreport -in $(BENCH_OUT)/bench.txt -out $(BENCH_OUT) \
	  -cond "GOMAXPROCS $$(nproc) on a shared machine; load average at the end: $$(cut -d' ' -f1-3 /proc/loadavg)" \
	  -cond "knobs: BENCH='$(BENCH)' BENCHTIME=$(BENCHTIME) $$(env | grep '^JOBBRIDGE_BENCH_' | tr '\n' ' ')"
	@exit $$(cat $(BENCH_OUT)/.rc)

# Each fuzz target runs on its own: go test allows one -fuzz target per run.
# The Go fuzzer sometimes ends a time-bounded run with a bare "context
# deadline exceeded" failure and no failing input (a toolchain race when
# -fuzztime runs out); such a run is repeated once. A real finding names
# its input under testdata/fuzz and fails at once.
fuzz:
	@set -e; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for pkg in $$($(GO) list $(PKGS)); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg > $$out 2>&1; then \
	      cat $$out; \
	      if grep -q 'context deadline exceeded' $$out && ! grep -q 'Failing input written' $$out; then \
	        echo "fuzz $$pkg $$t: the fuzzer's own deadline race, no failing input; running it again"; \
	        $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	      else exit 1; fi; \
	    else cat $$out; fi; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags faults ./cmd/jobbridge

clean:
	rm -rf bin data
