# `make serve` sets up and starts Llero on SQLite under ./data; `make test` sets up and runs every
# check that CI runs. Both create .venv from the pinned, hashed requirements.lock first.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The PostgreSQL server the second test run uses; trust authentication on loopback.
POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: setup serve test test-sqlite test-postgres lint lock

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

serve: setup
	$(BIN)/llero init
	$(BIN)/llero serve

test: test-sqlite test-postgres lint

test-sqlite: setup
	$(BIN)/pytest -n 2 -q

test-postgres: setup
	LLERO_TEST_DATABASE_URL=$(POSTGRES_URL) $(BIN)/pytest -n 2 -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/bandit --quiet --configfile pyproject.toml -r src
	$(BIN)/mypy

# Refresh requirements.lock after changing dependencies in pyproject.toml (needs uv).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock
