# t3-supervise. `make demo` and `make test` are what a newcomer runs (README).
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
DESTDIR ?=
# The package's Maintainer field and changelog signature; set it for your fleet.
export T3S_DEB_MAINTAINER ?= t3-supervise maintainers <t3-supervise@example.org>
export T3S_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/t3-supervise

# Debian packages per purpose; test/deps installs the missing ones (prometheus: promtool, for
# test/contrib/check and the VM tier's test/vm/metrics; without Recommends, so no node_exporter
# on the test host).
PKGS_HOST := ca-certificates curl systemd procps groff-base prometheus
PKGS_DEB := lintian groff-base man-db
PKGS_VM := qemu-system-x86 qemu-utils mmdebstrap busybox-static cpio e2fsprogs kmod xz-utils util-linux prometheus

# Guests booted at once by make test-vm (test/vm/e2e --jobs): a guest that shares the cores runs
# on one host thread and keeps 0.6-1 core busy (test/vm/README.md); a third at once saved 46 s of
# a 783 s run and slowed every guest, so two.
VM_JOBS ?= 2
# The guests of make test's VM tier (test/vm/e2e NAMEs); a subset for a quicker check of the
# pipeline itself.
VM_GUESTS ?= all

GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath
# Deferred: computed only when a recipe needs it; empty outside a git checkout.
T3S_VERSION ?= $(shell packaging/version 2>/dev/null)

.PHONY: all build tools deps node vault demo test test-quick test-host test-deb test-vm test-soak fuzz bench deb install verify-unit clean

all: build

# -s -w: no symbol table and no DWARF, as Debian ships binaries (lintian: unstripped-binary-or-object);
# Go's own tables still name every function and line in a panic's stack trace.
# -X main.version: the package version, which t3_supervise_build_info reports (README, Metrics).
build:
	$(GOBUILD) -ldflags '-s -w -X main.version=$(T3S_VERSION)' -o bin/t3-supervise ./cmd/t3-supervise

# Test-only programs: the stand-in t3 (also claude and the balloon tool), the prober and the
# stand-in of the Anthropic API (for the real claude).
tools:
	$(GOBUILD) -o bin/standin ./test/standin
	$(GOBUILD) -o bin/prober ./test/prober
	$(GOBUILD) -o bin/api-standin ./test/apistandin

# Node and npm for the real Claude Code CLI and Agent SDK (test/claude/fetch, test/sdk/install).
# The machines' Node comes with its own npm; Debian's npm is installed only where there is none.
node:
	@command -v node >/dev/null && command -v npm >/dev/null || test/deps nodejs npm

deps:
	@test/deps $(PKGS_HOST)

vault: deps
	@test/vault/build >/dev/null

# A throwaway Vault dev server, a token stored for you, and the stand-in t3 printing what it got.
demo: deps build tools vault
	test/demo

# Everything CI runs: the unit's static checks (verify, and its systemd-analyze security
# exposure), the package, unit and host integration tests (real Vault, real journald, root,
# cgroup v2 plumbing; every tier must run), bounded fuzzing, then the VM tier. test/pipeline
# runs the last three as test-host, fuzz and test-vm would, with fuzzing and the VM payloads
# built in the CPU the host tier leaves idle.
test: verify-unit test-deb deps node build tools vault
	@test/deps $(PKGS_VM)
	VM_JOBS=$(VM_JOBS) VM_GUESTS="$(VM_GUESTS)" test/pipeline

# Unit tests only; tiers that need Vault, journald or root skip with a loud reason.
test-quick:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(GO) -C bench/vm/report vet ./...
	$(GO) -C bench/vm/report test -race -count=1 ./...

test-host: deps node build tools vault
	test/host/run

fuzz:
	test/fuzz

# The package: built, checked by lintian, its contents and control fields asserted.
test-deb: build
	@test/deps $(PKGS_DEB)
	packaging/deb >/dev/null
	test/deb/check bin/t3-supervise.deb

# The guest's own self-tests first, so that a broken guest shows up as that and not as
# scenario failures; then the guest scripts with the real binary and unit, VM_JOBS guests at a
# time (test/vm/e2e; test/vm/README.md has the measured wall times).
# `node`: test/vm/e2e claude fetches the real Claude Code CLI with npm on a fresh machine.
test-vm: build tools node
	@test/deps $(PKGS_VM)
	test/vm/run test/vm/smoke
	test/vm/run --busybox test/vm/busybox-smoke
	test/vm/e2e --jobs $(VM_JOBS) all

# 100 balloons and a fork bomb in the guest (RELIABILITY.md); part of test-vm.
test-soak: build tools
	@test/deps $(PKGS_VM)
	test/vm/e2e soak

# The comparisons of BENCHMARKS.md and the fleet measurement of RELIABILITY.md (200 supervisors,
# one Vault, about 6 minutes); prints the tables. The VM part takes about 20 minutes.
bench: deps build tools vault
	@test/deps $(PKGS_VM)
	$(GO) run ./bench/startup
	$(GO) run ./bench/footprint
	$(GO) run ./bench/fleet
	bench/vm/run

# systemd-analyze verify and security --offline --threshold of the unit (test/host/verify-unit).
verify-unit: build
	test/host/verify-unit

# bin/t3-supervise_VERSION_ARCH.deb, and bin/t3-supervise.deb pointing at it (README, Install).
deb: build
	@packaging/deb

# For developers: the package's files, laid out by the same script (packaging/stage), without
# dpkg. What dpkg's triggers would do is done here.
install: build
	packaging/stage "$(DESTDIR)"
	@if [ -z "$(DESTDIR)" ] && [ -e /etc/systemd/system/t3-supervise@.service ]; then \
		echo "make install: /etc/systemd/system/t3-supervise@.service (an older make install) overrides the unit in /usr/lib/systemd/system; remove it and /usr/local/bin/t3-supervise" >&2; fi
	@if [ -z "$(DESTDIR)" ]; then journalctl --update-catalog; fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

clean:
	rm -rf bin
