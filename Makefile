# Meridian build. Every target builds with -tags slicelabels (see internal/buildtag).
SHELL := /bin/bash
export GOTOOLCHAIN := local
# Every build but the race detector's is static and path-free, as the image's binary has to be, so
# that one compile of each package serves vet, the tests, bin/meridian and the image, and the
# dependencies Thanos, the kube-apiserver and the chart tests share: with cgo and paths the image
# and the kube-apiserver each compiled their dependencies apart (a cold make test took 32.5 min).
export CGO_ENABLED := 0
export GOFLAGS := $(strip $(GOFLAGS) -trimpath)

GO       ?= go
TAGS     := slicelabels
GOTAGS   := -tags $(TAGS)
BIN      := bin/meridian
THANOS   := bin/thanos
KUBE_APISERVER := bin/kube-apiserver
KUBE_VERSION = $(shell sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$$/\1/p' tools/kube-apiserver/go.mod)
KPKG     := k8s.io/component-base/version
THANOS_VERSION = $(shell sed -n 's/^require github.com\/thanos-io\/thanos v//p' tools/thanos/go.mod)
# VERSION is the release (the file VERSION, as Prometheus keeps it): the binary's --version, the
# image's tag and version label, and the chart's appVersion, which a test holds equal to it, so
# that the chart's default image is the one `make image` builds. The commit is the revision.
VERSION  ?= $(shell cat VERSION)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH   ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
VPKG     := github.com/prometheus/common/version
LDFLAGS  := -X $(VPKG).Version=$(VERSION) -X $(VPKG).Revision=$(REVISION) -X $(VPKG).Branch=$(BRANCH)
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Packages whose code runs concurrently are tested with the race detector. dev/ runs
# the whole product in one process: its tests take minutes under -race, so they run without it
# (every component it wires is race-tested in its own package).
RACE_PKGS := ./ingest/... ./query/... ./internal/storeapi/... ./internal/labelindex/... ./internal/faultproxy/... ./internal/simulate/... ./slo/... ./rules/...

.PHONY: all build thanos kube-apiserver prebuild-chart test vet unit e2e run bench lint fuzz deps clean image chart-test chart-dashboards

all: build

build:
	$(GO) build $(GOTAGS) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/meridian

# thanos builds the Thanos release pinned in tools/thanos (its own module, so that Thanos's
# dependencies stay out of Meridian's build): the e2e suite and the benchmarks run it as a real
# peer. The first build downloads and compiles Thanos's dependencies (about 3 minutes on 2 cores).
thanos: $(THANOS)

$(THANOS): tools/thanos/go.mod tools/thanos/go.sum
	cd tools/thanos && $(GO) build $(GOTAGS) -ldflags '-X $(VPKG).Version=$(THANOS_VERSION)' \
		-o $(CURDIR)/$(THANOS) github.com/thanos-io/thanos/cmd/thanos

# kube-apiserver builds the Kubernetes API server of the release the chart is checked against
# (tools/kube-apiserver, a module of its own like tools/thanos): the chart tests install the chart
# into it, over Debian's etcd. The first build compiles Kubernetes (about 11 minutes on 2 cores).
kube-apiserver: $(KUBE_APISERVER)

$(KUBE_APISERVER): tools/kube-apiserver/go.mod tools/kube-apiserver/go.sum
	cd tools/kube-apiserver && $(GO) build -trimpath -o $(CURDIR)/$(KUBE_APISERVER) \
		-ldflags '-X $(KPKG).gitVersion=$(KUBE_VERSION) -X $(KPKG).gitMajor=$(word 1,$(subst ., ,$(KUBE_VERSION:v%=%))) -X $(KPKG).gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION:v%=%))) -X $(KPKG).gitTreeState=clean' \
		k8s.io/kubernetes/cmd/kube-apiserver

# deps installs what the tests use as real peers: Debian's Prometheus and Alertmanager, and the
# etcd the chart tests' kube-apiserver stores in.
deps:
	@if ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null || ! command -v etcd >/dev/null; then \
		echo "installing prometheus, prometheus-alertmanager and etcd-server (Debian packages)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus prometheus-alertmanager etcd-server; \
	fi

# stdmethods is off: chunkenc.Iterator.Seek(int64) ValueType is not io.Seeker, and vet cannot tell.
vet:
	$(GO) vet $(GOTAGS) -stdmethods=false ./...

unit:
	CGO_ENABLED=1 $(GO) test $(GOTAGS) -race -timeout 20m $(RACE_PKGS)
	$(GO) test $(GOTAGS) -timeout 20m $$($(GO) list $(GOTAGS) ./... | grep -v -e /ingest -e /query -e /internal/storeapi -e /internal/labelindex -e /internal/faultproxy -e /internal/simulate -e /slo -e /rules -e /e2e)

e2e: deps build thanos
	MERIDIAN_BINARY=$(CURDIR)/$(BIN) THANOS_BINARY=$(CURDIR)/$(THANOS) $(GO) test $(GOTAGS) -timeout 20m -count=1 ./e2e/...

# test runs every suite. Meanwhile, what only later steps need (the Thanos binary for e2e; the
# kube-apiserver and the chart tests' compiled dependencies) is built in the background
# at idle CPU priority (SCHED_IDLE: it runs only when the tests leave a core free, as during apt,
# downloads and the e2e suite's waits), so that a cold run does not pay for those builds one after
# the other; warm, they are up to date and this changes nothing. When a step fails, make test
# ends at once and a build still running finishes on its own.
IDLE := $(shell chrt --idle 0 true 2>/dev/null && echo chrt --idle 0 || echo nice -n 19)

test:
	@mkdir -p bin; \
	$(IDLE) $(MAKE) --no-print-directory thanos >bin/prebuild-thanos.log 2>&1 & thanos=$$!; \
	$(IDLE) $(MAKE) --no-print-directory prebuild-chart >bin/prebuild-chart.log 2>&1 & chart=$$!; \
	built() { wait $$1 || { cat bin/prebuild-$$2.log; echo "background build of $$2 failed"; return 1; }; }; \
	$(MAKE) --no-print-directory deps vet unit && built $$thanos thanos && $(MAKE) --no-print-directory e2e \
		&& built $$chart chart && $(MAKE) --no-print-directory chart-test

# prebuild-chart builds what chart-test needs besides bin/meridian: the kube-apiserver and the
# deploy module's dependencies (go vet compiles them, test files' and the image tool's included;
# the image's binary is bin/meridian's packages linked again).
prebuild-chart: kube-apiserver
	cd deploy && $(GO) vet $(GOTAGS) ./...

# image builds the OCI image without a container engine (deploy/image, go-containerregistry): an
# empty base with one layer holding the static binary and a CA bundle, user 65532, entrypoint
# meridian, OCI labels with version and revision. It writes an OCI layout (bin/image/oci, for
# `skopeo copy oci:bin/image/oci:TAG docker://...` or `crane push`) and a tarball for `docker load`.
# The Dockerfile builds the same image where a container engine exists.
IMAGE_REPO   ?= ghcr.io/meridian-obs/meridian
IMAGE_TAG    ?= $(subst +,_,$(VERSION))
STATIC_BIN   := bin/meridian-static
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

image:
	CGO_ENABLED=0 $(GO) build $(GOTAGS) -trimpath -ldflags '$(LDFLAGS)' -o $(STATIC_BIN) ./cmd/meridian
	cd deploy && SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run $(GOTAGS) ./cmd/meridian-image --binary $(CURDIR)/$(STATIC_BIN) \
		--version $(VERSION) --revision $(REVISION) --ref $(IMAGE_REPO):$(IMAGE_TAG) \
		--oci-layout $(CURDIR)/bin/image/oci --tarball $(CURDIR)/bin/image/meridian.tar

# chart-dashboards writes the dashboard ConfigMaps the chart ships into its dashboards/ (for the
# default configuration: region label "region", default readiness expressions). They are kept in
# git, so that the chart installs from a checkout or a packaged .tgz without a build; chart-test
# fails when they differ from what the binary of the same commit generates: run this and commit.
chart-dashboards: build
	rm -f deploy/helm/meridian/dashboards/*.yaml
	./$(BIN) dashboards generate --format configmap --out deploy/helm/meridian/dashboards

# chart-test lints and renders the Helm chart (deploy/helm/meridian) with Helm's Go SDK and checks
# every object against the Kubernetes 1.34 API and the Prometheus Operator CRDs; runs the rules
# the chart generates through promtool; installs every values file with Helm into a real
# kube-apiserver over etcd; and opens the image of `make image`, checks its config and runs
# meridian --version from its unpacked layer. deploy/ is a Go module of its own (Helm's
# and Kubernetes's dependencies stay out of Meridian's build).
chart-test: deps build image kube-apiserver
	cd deploy && MERIDIAN_BINARY=$(CURDIR)/$(BIN) MERIDIAN_IMAGE=$(CURDIR)/bin/image/oci MERIDIAN_IMAGE_TAG=$(IMAGE_TAG) \
		KUBE_APISERVER_BINARY=$(CURDIR)/$(KUBE_APISERVER) \
		$(GO) test $(GOTAGS) -count=1 -timeout 15m ./...
	cd deploy && $(GO) vet $(GOTAGS) ./...

run: build
	./$(BIN) dev

# bench runs meridian side by side with Debian's Prometheus (ingest, query latency, a slow region,
# querier memory) and with Thanos Query on the same stores (query latency) on this machine, and
# prints one table at the end; it takes about 11 minutes on 2 cores.
bench: deps build thanos
	MERIDIAN_BINARY=$(CURDIR)/$(BIN) THANOS_BINARY=$(CURDIR)/$(THANOS) $(GO) test $(GOTAGS) -run '^$$' -bench . -benchtime 1x -timeout 60m ./e2e/...

# SA1019 is off: Prometheus 3 deprecates labels.MetricName, which its own code still uses throughout.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: vet
	@gofmt -l . | tee /dev/stderr | (! read)
	$(GO) run $(STATICCHECK) -tags $(TAGS) -checks 'all,-SA1019' ./...

fuzz:
	$(GO) test $(GOTAGS) -run '^$$' -fuzz FuzzDecodeWriteRequest -fuzztime 30s ./ingest/
	$(GO) test $(GOTAGS) -run '^$$' -fuzz FuzzDecodeV1MatchesPrometheus -fuzztime 30s ./ingest/
	$(GO) test $(GOTAGS) -run '^$$' -fuzz FuzzDecodeV2MatchesPrometheus -fuzztime 30s ./ingest/
	$(GO) test $(GOTAGS) -run '^$$' -fuzz FuzzDecodeWatchMessages -fuzztime 30s ./internal/labelindex/
	$(GO) test $(GOTAGS) -run '^$$' -fuzz FuzzGrafanaErrorAnswer -fuzztime 30s ./dashboards/

clean:
	rm -rf bin
