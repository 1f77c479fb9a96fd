# raptor. `make demo` shows it working on a local container fleet; `make test`
# proves it; `make check` is the quick tier to run after every change (DEVELOPING.md).
# They install what they need (Debian packages, a virtualenv, container images) and
# skip what is already there.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(CURDIR)/molecule/containers.conf
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The collection is resolved from this checkout, whatever ~/.ansible holds.
COLLECTIONS := $(CURDIR)/build/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/velociraptor/raptor
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_NOCOLOR := 1
export NO_COLOR := 1
# The suites need PyPI anyway: a vr.common that cannot be installed fails the name tests
# instead of skipping them.
export RAPTOR_REQUIRE_VR_COMMON := 1
NGINX_DIR := build/nginx
NGINX := $(NGINX_DIR)/usr/sbin/nginx
FREE_PORT = $(shell $(PYTHON) -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

.PHONY: test check venv lint pytest pythons validate molecule demo-test demo demo-down bench bench-compare bench-history bench-web bench-alert screenshots nginx deps doctor images wheelhouse collection clean
# Debian packages the tests and the demo need, each one named: redis-server for the
# tests; podman, runc and debootstrap for the container fleet; the CNI dnsname plugin,
# without which containers cannot resolve each other's names (podman 4 on Debian 12
# does not pull it in); chromium, the browser the web page's tests drive.
DEBIAN_PACKAGES := redis-server podman runc debootstrap golang-github-containernetworking-plugin-dnsname chromium

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

deps:
	scripts/deps.sh $(DEBIAN_PACKAGES)

venv: $(BIN)/.installed

# Can this machine run the demo and the tests? Seconds; each failure says what to do.
doctor:
	scripts/doctor.sh $(DEBIAN_PACKAGES)

collection: $(COLLECTION_LINK)
$(COLLECTION_LINK):
	mkdir -p $(@D)
	ln -sfn $(CURDIR) $@

images: deps
	scripts/images.sh

wheelhouse: $(BIN)/.installed
	PIP=$(BIN)/pip scripts/wheelhouse.sh

lint: $(BIN)/.installed collection
	ruff check .
	ruff format --check .
	mypy
	yamllint -s .
	ansible-lint --nocolor

# Debian's nginx, unpacked (not installed: no service starts), for the reverse-proxy test.
nginx: $(NGINX)
$(NGINX): scripts/nginx.sh
	scripts/nginx.sh $(NGINX_DIR)
	touch $@

# After every change, in about a minute (2.5 from a fresh clone, the virtualenv
# included; the budget is 5): the linters, then the unit and in-process tests of the listener, the CLI,
# the web hub and the alert engine. No container, nox, browser or molecule. Which tests:
# the `check` tier of tests/conftest.py's TIERS table, chosen by measured duration (the
# tier runs in about a minute; each real-parts module left out costs seconds to
# minutes). One process, not xdist: the tier's in-process listener tests include timing
# ones. `make pytest` runs every one of them again, so `make test` proves all of it.
check: deps lint
	pytest -q -m check --ignore=tests/test_demo.py

# Every test but the demo's, in two passes: most of them wait on real processes
# (redis-server, supervisord) on free loopback ports, so they run PYTEST_WORKERS at a
# time (pytest-xdist; a module sharing one scenario stays on one worker); then the
# timing-sensitive ones (tier `serial`: convergence within 2 s, ack times, browsers, the
# fleet-scale runs) alone, where a busy neighbour cannot slow them. Both passes run
# whatever the first's result. The parallel pass's tmp_path is under a short
# --basetemp: xdist's popen-gwN level took a supervisord's socket path past AF_UNIX's
# 107 characters (it is kept after a failure, for its logs).
PYTEST_WORKERS ?= 3
pytest: deps $(BIN)/.installed nginx
	tmp="$$(mktemp -d /tmp/rpt.XXXXXX)"; status=0; \
	pytest -q -n $(PYTEST_WORKERS) --dist loadgroup -m 'not serial' --basetemp="$$tmp" --ignore=tests/test_demo.py \
	  && rm -rf "$$tmp" || { status=$$?; echo "the parallel pass's tmp_path files: $$tmp"; }; \
	pytest -q -m serial --ignore=tests/test_demo.py || status=$$?; \
	exit $$status

# What differs by interpreter, on the other Python 3.9-3.13 this machine has: the
# listener's tests (tier `portable`) on each, its real supervisords on the oldest (with
# redis-py 5.0) and the newest; see noxfile.py.
pythons: deps $(BIN)/.installed
	nox -s oldest newest between

# The validators of PyPI, Galaxy and Automation Hub, on the built artifacts (logs in
# build/validate/logs); the tools live in build/validate-venv, not in .venv.
validate:
	scripts/validate.sh

molecule: images wheelhouse collection doctor
	RAPTOR_MOLECULE_REDIS_PORT=$(FREE_PORT) molecule test -s default
	RAPTOR_MOLECULE_REDIS_PORT_U=$(FREE_PORT) molecule test -s upgrade_absent

demo-test: images wheelhouse doctor
	pytest -q tests/test_demo.py

# Each phase as `make PHASE`, timed: the table at the end (also kept in
# build/phases.tsv) shows where the time went, and which phase failed. The budget:
# 45 minutes in CI (design.md); DEVELOPING.md says how to keep it.
PHASES := deps venv doctor images lint pytest pythons validate molecule demo-test
test:
	@MAKE='$(MAKE) --no-print-directory' scripts/phases.sh run $(PHASES)

demo: deps doctor images wheelhouse
	demo/demo.sh up

demo-down:
	demo/demo.sh down

# The design's targets side by side with the baselines (about 20 minutes).
bench: deps $(BIN)/.installed
	python -m bench.run

# The working tree's listener against BASELINE's, interleaved in one run (about 15
# minutes; bench/results/compare.*): `make bench-compare BASELINE=983ccf2`.
BASELINE ?= HEAD
# The history's Redis memory per million entries, a query over 1,000,000 entries and one
# consumer catching up (a few minutes; bench/results/history.*).
bench-history: deps $(BIN)/.installed
	python -m bench.history

# raptor web: first render of 1,000 hosts x 50 programs, event to screen in Chromium at
# 2,000 transitions/s, the server's cost with 100 followers; then the server stacks' cost
# of fanning events out, Starlette's against aiohttp's (8 minutes; bench/results/web.*,
# sse_servers.*).
bench-web: deps $(BIN)/.installed
	python -m bench.web
	python -m bench.sse_servers

# raptor alert: from a transition in the fleet stream to the notice received, at 1,000
# transitions/s (a minute; bench/results/alert.*).
bench-alert: deps $(BIN)/.installed
	python -m bench.alert

# The README's screenshots of raptor web (docs/web-*.png), from real supervisords.
screenshots: deps $(BIN)/.installed
	python scripts/screenshots.py

bench-compare: deps $(BIN)/.installed
	python -m bench.run --baseline $(BASELINE)

clean: demo-down
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache .hypothesis build .ansible
