# tokend — build, test, bench. `make test` is what CI runs (.ci/run).
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
BIN       := bin/tokend

.PHONY: build test e2e-deps lint bench bench-deps fuzz install deb clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/tokend

# Everything: installs the test peers (oidc-provider, promtool), checks
# formatting, vet and staticcheck, then runs every Go test with -race,
# end-to-end tests against oidc-provider included.
test: e2e-deps lint
	$(GO) test -race -count=1 -timeout 30m ./...

e2e-deps:
	./scripts/test-deps

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting" >&2; exit 1; }
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# Benchmark suite on loopback and unix sockets (about 8 minutes on 2
# cores): builds bench/, runs it, writes the results table to BENCHMARKS.md
# (keeping its hand-written analysis section). It installs what it needs
# beyond Go, oidc-provider for the fleet failover (bench-deps); when that
# fails (no npm, no network), the failover says so before anything runs,
# and the other benchmarks still run and report.
bench: bench-deps
	$(GO) build -o bin/tokend-bench ./bench
	./bin/tokend-bench -go $(GO) -out BENCHMARKS.md

bench-deps:
	@./scripts/test-deps oidc || echo "bench-deps: oidc-provider could not be installed; the failover benchmark will not run" >&2

# Long fuzzing, one target at a time (make test runs their seed corpora).
FUZZTIME ?= 60s
fuzz:
	for t in FuzzTokenResponse FuzzDiscovery FuzzRegistration FuzzParseCallback; do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./oauth/ || exit 1; done
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./config/
	for t in FuzzAPIPath FuzzCallback; do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./daemon/ || exit 1; done

clean:
	rm -rf bin tokend-dev

# The Debian package, bin/tokend_$(DEBVERSION)_amd64.deb, built by nfpm
# from packaging/nfpm.yaml (its maintainer scripts: packaging/deb/). A
# Debian version must start with a digit: a tag v1.2.3 gives 1.2.3, an
# untagged tree 0.0.0~git<commit>. nfpm is pinned: v2.45.2 is known to be
# served by the Go module proxy.
NFPM      ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DEBVERSION ?= $(shell echo '$(VERSION)' | sed -E 's/^v([0-9])/\1/; /^[0-9]/!s/^/0.0.0~git/; s/-/+/g')
DEBDIR    ?= bin

deb: build
	mkdir -p $(DEBDIR)
	sed 's|@BIN@|$(BIN)|' packaging/nfpm.yaml > $(DEBDIR)/nfpm.yaml
	VERSION='$(DEBVERSION)' $(NFPM) package --config $(DEBDIR)/nfpm.yaml --packager deb --target $(DEBDIR)/tokend_$(DEBVERSION)_amd64.deb
	rm -f $(DEBDIR)/nfpm.yaml

# Lays out a built tokend (run `make build` first) for packaging or a host:
#   make install DESTDIR=/tmp/pkg PREFIX=/usr
# Units, sysusers.d and tmpfiles.d snippets go under $(PREFIX)/lib, where
# systemd looks for both /usr and /usr/local; ExecStart follows PREFIX. The
# example config goes to /etc/tokend (never over a real config.yaml);
# ownership of /etc/tokend and /var/lib/tokend is set by the tmpfiles.d
# snippet (systemd-tmpfiles --create), not here, so this works unprivileged.
# /etc/tokend is created 0750 when missing; an existing one keeps its mode
# (the snippet, too, sets the mode only on creation).
PREFIX    ?= /usr/local
DESTDIR   ?=
UNITDIR   := $(PREFIX)/lib/systemd/system
SHAREDIR  := $(PREFIX)/share/tokend

install:
	@test -x $(BIN) || { echo "install: $(BIN) missing; run make build first" >&2; exit 1; }
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/tokend
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|/usr/bin/tokend|$(PREFIX)/bin/tokend|g' systemd/tokend.service > $(DESTDIR)$(UNITDIR)/tokend.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/tokend.service
	install -D -m 0644 systemd/tokend.socket $(DESTDIR)$(UNITDIR)/tokend.socket
	install -D -m 0644 systemd/tokend.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/tokend.conf
	install -D -m 0644 systemd/tokend.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/tokend.conf
	test -d $(DESTDIR)/etc/tokend || install -d -m 0750 $(DESTDIR)/etc/tokend
	install -m 0644 tokend.example.yaml $(DESTDIR)/etc/tokend/config.yaml.example
	install -D -m 0644 deploy/prometheus/tokend.rules.yml $(DESTDIR)$(SHAREDIR)/prometheus/tokend.rules.yml
	install -D -m 0644 deploy/grafana/tokend-dashboard.json $(DESTDIR)$(SHAREDIR)/grafana/tokend-dashboard.json
