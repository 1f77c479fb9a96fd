# raptor. `make demo` shows it working on a local container fleet; `make test`
# proves it. Both install what they need (Debian packages, a virtualenv, container
# images) and skip what is already there.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Use-Pty=0
export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(CURDIR)/molecule/containers.conf
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export ANSIBLE_NOCOLOR := 1
export NO_COLOR := 1
FREE_PORT = $(shell $(PYTHON) -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

.PHONY: test lint pytest pythons molecule demo-test demo demo-down bench deps images wheelhouse clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Debian packages: redis-server for the tests; podman, runc and debootstrap for the
# container fleet (molecule and the demo).
deps:
	@missing=""; \
	for pair in redis-server:redis-server podman:podman runc:runc debootstrap:debootstrap; do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(APT_GET) update && $(APT_GET) install --no-install-recommends $$missing; \
	fi

images: deps
	scripts/images.sh

wheelhouse: $(BIN)/.installed
	PIP=$(BIN)/pip scripts/wheelhouse.sh

lint: $(BIN)/.installed
	ruff check .
	ruff format --check .
	mypy
	yamllint -s .
	ansible-lint --nocolor

pytest: deps $(BIN)/.installed
	pytest -q --ignore=tests/test_demo.py

# The same suites on the other Python 3.9-3.13 interpreters this machine has.
pythons: deps $(BIN)/.installed
	nox -s tests oldest_redis -- --ignore=tests/test_demo.py --ignore=tests/test_bench_smoke.py

molecule: images wheelhouse
	RAPTOR_MOLECULE_REDIS_PORT=$(FREE_PORT) molecule test -s default
	RAPTOR_MOLECULE_REDIS_PORT_U=$(FREE_PORT) molecule test -s upgrade_absent

demo-test: images wheelhouse
	pytest -q tests/test_demo.py

test: lint pytest pythons molecule demo-test

demo: images wheelhouse
	demo/demo.sh up

demo-down:
	demo/demo.sh down

# The design's targets side by side with the baselines (about 20 minutes).
bench: deps $(BIN)/.installed
	python -m bench.run

clean: demo-down
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache .hypothesis build .ansible
