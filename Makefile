# The test suite needs nginx and haproxy (the renderer's end-to-end tests run
# against the real programs), chromium (the dashboard's and status page's
# browser tests) and systemd-analyze (the example units' test); `make test`
# installs them from Debian packages when they are missing. Without them
# those tests skip, saying so, unless CI is set (.ci/run sets it): then they
# fail. The server's conformance suite runs on
# both stores in the one `go test` run, each test as the subtests bolt and
# etcd (the etcd store over a real etcd member, a process of its own that
# internal/etcdtest builds without -race); SVCREG_TEST_STORE=bolt
# or =etcd narrows it to one, and =etcd runs every package's test servers on
# the etcd store (it builds the tests with -tags etcd).
GO ?= go

.PHONY: test deps build

# The longest packages come first, longest first: go test builds and runs
# packages in the order given, PARALLEL at a time, so they start at
# once instead of after every other package's build, and the suite does not
# end on one long package that started late.
SLOW = ./cmd/svcreg ./server/store/etcdstore ./server ./watcher ./registry ./wrapper ./render

# Packages run at once: one more than the CPUs. The three longest spend a
# good part of their time waiting (on etcd's elections and leases, on child
# processes), so a third package keeps two cores busy where go test's
# default, one per CPU, left them idle. PARALLEL=N of your own wins.
PARALLEL ?= $(shell n=$$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2); echo $$((n + 1)))
# nproc counts the CPUs this process may run on, not a container's CPU
# quota: where a quota is far below that, give PARALLEL yourself.

# SVCREG_TEST_STORE=etcd: every package's test servers on the etcd store.
TAGS = $(if $(filter etcd,$(SVCREG_TEST_STORE)),-tags etcd)

# A program built with -race sleeps a second before it exits (the race
# detector's atexit_sleep_ms, 1000 by default): every test binary, and every
# svcreg, wrapper and helper process the tests start from one: a second of
# idle wall time per test binary, some of it on the suite's critical path.
# A GORACE of your own wins.
export GORACE ?= atexit_sleep_ms=0

# Debian installs nginx and haproxy into /usr/sbin, which only root's PATH
# holds: without it, deps ran apt-get (and failed, as a user) though they
# were installed, and the tests' commands (the nginx example's check script
# runs nginx by name) did not find them. The tests look there too.
export PATH := $(PATH):/usr/local/sbin:/usr/sbin:/sbin

# The packages whose tests reach the etcd store only with -tags etcd: vet
# compiles them with it, so that a run without SVCREG_TEST_STORE=etcd still
# checks those files.
ETCD_TAGGED = ./registry ./render ./watcher ./wrapper ./cmd/service-registry-wrapper

# The etcd members the tests start: built here, without -race, before the
# tests, so that on a cold build cache etcd's server is not compiled while
# timing-sensitive tests run (internal/etcdtest builds it on first use
# otherwise). An SVCREG_ETCD_MEMBER of your own (an absolute path) wins.
ETCD_MEMBER = $(CURDIR)/bin/test/etcdmember
export SVCREG_ETCD_MEMBER ?= $(ETCD_MEMBER)

test: deps
	$(GO) vet -tags etcd $(ETCD_TAGGED)
	$(if $(filter $(ETCD_MEMBER),$(SVCREG_ETCD_MEMBER)),$(GO) build -o $(ETCD_MEMBER) ./internal/etcdtest/etcdmember)
	$(GO) test -race -p $(PARALLEL) $(TAGS) -timeout 30m $(SLOW) ./...

deps:
	@command -v nginx >/dev/null 2>&1 && command -v haproxy >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 && \
		command -v systemd-analyze >/dev/null 2>&1 || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx haproxy chromium systemd; }

build:
	$(GO) build -o bin/ ./cmd/...
