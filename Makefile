# Setup is two commands on a fresh machine: `make run` and `make test`.
# Each one creates the virtual environment first if it is missing or out of date.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export GX_ANALYTICS_ENABLED := false
export DAGSTER_DISABLE_TELEMETRY := true
CORPUS ?= python-stdlib-docs

.PHONY: install run test ui browser lint format clean-data

install: $(VENV)/.installed

# Re-run pip only when the dependency files change, so `make` stays idempotent.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: install
	$(BIN)/llm-pipeline corpus add $(CORPUS) --builtin --if-missing
	$(BIN)/llm-pipeline run --corpus $(CORPUS)

test: install browser
	$(BIN)/python -m pytest -q

# The Dagster UI and daemon on http://127.0.0.1:3000, state in .dagster_home/ (git-ignored).
# The daemon runs queued runs, backfills, retrain_schedule and new_corpus_sensor; the schedule
# and the sensor start switched off: turn them on under Automation.
# `dg dev` is Dagster's recommended command; it loads the project from pyproject.toml's
# [tool.dg] (`dagster dev -w workspace.yaml` still works and loads the same definitions).
ui: install
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || $(BIN)/python -c 'from llm_pipeline.cli.common import DAGSTER_YAML; print(DAGSTER_YAML, end="")' > $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg dev -h 127.0.0.1 -p 3000

# Debian's Chromium for the browser test (Playwright drives it; it never downloads a browser).
browser:
	command -v chromium >/dev/null || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
