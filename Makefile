# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.prefkit-installed

.PHONY: setup demo test test-fast test-par lint docs bench system-deps clean

setup: $(STAMP)

# torch goes in first, so the project's torch range is already satisfied after. Which build
# `torch==2.13.0` gets depends on where pip looks: a local CPU wheel (as on the CI machines) if
# pip finds one first; from the public index alone (PyPI) on Linux x86_64, the CUDA build with its
# nvidia-* packages (several GB). TORCH_INDEX picks the index, e.g. the CPU build:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e '.[dev,ray]'
	touch $(STAMP)

# `make demo PORT=8600` when 8501 is taken.
demo: setup
	$(VENV)/bin/prefkit demo $(if $(PORT),--port $(PORT))

# The 20 slowest tests (setup and call) are listed at the end of every run, CI's included.
PYTEST := $(PY) -m pytest -q --durations=20

test: setup
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not slow"

# Opt-in: the same tests on PAR worker processes (pytest-xdist; default one per core), a test file
# at a time per worker so a module's fixtures (a Streamlit app, a served model) are built once.
# Each worker starts its own PostgreSQL server and builds its own tiny models. Not `make test`'s
# way: on a shared 2-core machine it was not reliably faster than one process (x0.69 to x1.25 of
# its time over four alternating runs of 114 tests; slower under the heaviest load).
PAR ?= auto
test-par: setup
	$(PYTEST) -n $(PAR) --dist loadfile

# The docs site (docs/, mkdocs.yml) into site/; --strict: a broken link, anchor or nav entry fails.
# The dev extra (installed by setup) holds mkdocs; the CLI and config references are generated from
# the code by docs/_hooks/reference.py while building.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The gates CI runs before the tests: lint rules, formatting, types (strict on data/), import direction.
# `make lint` runs all four even when one fails, then fails if any did. The config is in pyproject.toml.
lint: setup
	@rc=0; \
	echo "== ruff check"; $(VENV)/bin/ruff check . || rc=1; \
	echo "== ruff format --check (fix: ruff format)"; $(VENV)/bin/ruff format --check --output-format concise . || rc=1; \
	echo "== mypy"; $(VENV)/bin/mypy || rc=1; \
	echo "== lint-imports"; $(VENV)/bin/lint-imports || rc=1; \
	exit $$rc

bench: setup
	$(PY) bench/dedup.py
	$(PY) bench/annotate_store.py

# System packages some tests need (PostgreSQL server, Debian's chromium, nginx for the team
# set-up of the admin guide). Needs root; .ci/run calls it. Without them those tests skip and say why.
system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql chromium nginx >/dev/null

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
