# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.run-deps-stamp
# `make test` runs the suite in this many processes (pytest-xdist; `auto`: one per core).
TEST_PROCESSES ?= auto
DEV_STAMP := $(VENV)/.dev-deps-stamp

.PHONY: setup run test lint format bench screenshots clean

# `make run` needs only the runtime dependencies; tests add the dev extras (Playwright, Schemathesis...).
$(RUN_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

setup: $(DEV_STAMP)

## Serve the demo program on http://127.0.0.1:8000 with a real Celery worker and beat (no Redis needed).
run: $(RUN_STAMP)
	bash scripts/run_local.sh

## Lint and run the whole test suite (SQLite by default; PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set).
test: lint
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest -n $(TEST_PROCESSES)

## ruff, the direction of imports between apps (import-linter, pyproject.toml), and types (mypy).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## Benchmarks on PostgreSQL (DATABASE_URL must point at it); prints figures, see docs/benchmarks.md.
bench: setup
	$(PY) -m bench.kpis
	$(PY) -m bench.api
	$(PY) -m bench.imports
	$(PY) -m bench.pages

## Screenshots of the main pages into docs/screenshots/ (Debian's chromium; seed_demo + recompute_kpis + compute_forecast first).
screenshots: setup
	$(PY) manage.py screenshots --mobile

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
