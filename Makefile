# raptor: `make demo` shows it working, `make test` proves it. Both install what
# they need (Debian packages, a virtualenv) and skip what is already there.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Use-Pty=0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: test lint pytest pythons demo demo-down bench clean deps

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Debian packages the tests and the demo run for real.
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(APT_GET) update && $(APT_GET) install --no-install-recommends $$missing; \
	fi

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: deps $(BIN)/.installed
	$(BIN)/pytest -q

# The same suites on the other Python 3.9-3.13 interpreters this machine has.
pythons: deps $(BIN)/.installed
	$(BIN)/nox -s tests

test: lint pytest pythons

demo: deps $(BIN)/.installed
	$(BIN)/python -m demo.local

demo-down:
	@echo "the local demo cleans up after itself; nothing to remove"

bench: deps $(BIN)/.installed
	@echo "benchmarks: not written yet (issue 5)"

clean:
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache .hypothesis
