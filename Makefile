# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.prefkit-installed

.PHONY: setup demo test test-fast bench system-deps clean

setup: $(STAMP)

# The CPU build of torch goes in first (it lies on this machine's disk); the project's
# torch range is then already satisfied, so no multi-GB CUDA build is pulled.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,ray]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/prefkit demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) bench/dedup.py
	$(PY) bench/annotate_store.py

# System packages some tests need (PostgreSQL server, Debian's chromium). Needs root;
# .ci/run calls it. Without them those tests skip and say why.
system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql chromium >/dev/null

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
