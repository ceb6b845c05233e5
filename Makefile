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

## The whole test suite (PostgreSQL tests run when 127.0.0.1:5432 answers). The real-Ceph
## tier (marker `ceph`, skipped without the lab of scripts/ceph-lab.sh) spends its time waiting
## on rbd-mirror's 30 s rhythm, so it runs beside the rest: the suite takes as long as the
## longer half. JUNIT=FILE writes FILE (the rest) and FILE.ceph.xml (the Ceph tier); a -k that
## leaves the Ceph tier nothing to run (pytest exit 5) is fine.
test: install
	@set -u; ceph_log=$$(mktemp); \
	$(BIN)/pytest -q -m ceph -p no:cacheprovider $(if $(JUNIT),--junitxml=$(JUNIT).ceph.xml) \
		>"$$ceph_log" 2>&1 & ceph_pid=$$!; \
	$(BIN)/pytest -m "not ceph" $(if $(JUNIT),--junitxml=$(JUNIT)); rest=$$?; \
	wait $$ceph_pid; ceph=$$?; \
	echo "---- the Ceph tier (pytest -m ceph) ----"; cat "$$ceph_log"; rm -f "$$ceph_log"; \
	test $$rest -eq 0 && { test $$ceph -eq 0 || test $$ceph -eq 5; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: lint test

clean:
	rm -rf $(VENV) auditd-data .pytest_cache .mypy_cache .ruff_cache
