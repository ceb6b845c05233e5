# The two commands of the README, plus lint. Each sets up .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test lint check install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## Run the whole pipeline on SQLite against two simulated clusters.
demo: install
	$(BIN)/auditd demo

## The whole test suite (PostgreSQL tests run when 127.0.0.1:5432 answers). Two workers: the
## real-Ceph tier runs in one of them, in turn (tests/conftest.py), the rest beside it.
test: install
	$(BIN)/pytest -n 2 --dist loadgroup

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: lint test

clean:
	rm -rf $(VENV) auditd-data .pytest_cache .mypy_cache .ruff_cache
