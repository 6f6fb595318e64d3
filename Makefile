# Every target bootstraps .venv from pyproject.toml on a fresh machine (Python >= 3.11 only).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck check soak bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "scm-worker needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/scm-worker demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The long fault-injection scenarios (200k messages and 6 SIGKILLs, 20 s network cuts, ...);
# their figures go to soak-report.md and soak-report.json.
soak: $(STAMP)
	SCM_WORKER_SOAK=1 SCM_WORKER_REPORT=$(CURDIR)/soak-report $(BIN)/pytest -q -m "kafka" \
		--timeout 3600 tests/test_reliability.py
	SCM_WORKER_SOAK=1 $(BIN)/pytest -q -m "kafka" --ignore tests/test_reliability.py

bench: $(STAMP)
	nice -n 5 $(BIN)/scm-worker bench --json bench.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis soak-report.md soak-report.json
