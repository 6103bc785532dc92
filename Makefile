# Setup is two commands on a fresh machine: `make run` and `make test`.
# Each one creates the virtual environment first if it is missing or out of date.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export GX_ANALYTICS_ENABLED := false
export DAGSTER_DISABLE_TELEMETRY := true
CORPUS ?= python-stdlib-docs
# MLflow tracking is on when MLFLOW_TRACKING_URI is set; `make run TRACKING=1` (and `ui`) sets
# it to this local store, the one `make mlflow` shows unless MLFLOW_TRACKING_URI says otherwise.
MLFLOW_DIR := $(CURDIR)/.mlflow
MLFLOW_STORE := sqlite:///$(MLFLOW_DIR)/mlflow.db
ifdef TRACKING
export MLFLOW_TRACKING_URI ?= $(MLFLOW_STORE)
endif
MLFLOW_VENV := $(MLFLOW_DIR)/venv
MLFLOW_UI_WORKERS ?= 1

.PHONY: install run test ui mlflow browser lint format docs docs-build clean-data

install: $(VENV)/.installed

# Re-run pip only when the dependency files change, so `make` stays idempotent.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: install
	$(if $(MLFLOW_TRACKING_URI),mkdir -p $(MLFLOW_DIR))
	$(BIN)/llm-pipeline corpus add $(CORPUS) --builtin --if-missing
	$(BIN)/llm-pipeline run --corpus $(CORPUS)

test: install browser
	$(BIN)/python -m pytest -q

# The Dagster UI and daemon on http://127.0.0.1:3000, state in .dagster_home/ (git-ignored).
# The daemon runs queued runs, backfills, retrain_schedule and new_corpus_sensor; the schedule
# and the sensor start switched off: turn them on under Automation.
# `llm-pipeline ui` runs the same webserver and daemon as `dg dev` (which still works and loads
# the same definitions), with the webserver behind a loopback guard (llm_pipeline/ui_guard.py):
# GraphQL mutations over GET and requests whose Host or Origin is not this address are refused,
# so a web page open in the browser cannot launch runs.
ui: install
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || $(BIN)/python -c 'from llm_pipeline.cli.common import DAGSTER_YAML; print(DAGSTER_YAML, end="")' > $(DAGSTER_HOME)/dagster.yaml
	$(if $(MLFLOW_TRACKING_URI),mkdir -p $(MLFLOW_DIR))
	$(BIN)/llm-pipeline ui --host 127.0.0.1 -p 3000

# The MLflow UI on http://127.0.0.1:5000 over the store runs log to (.mlflow/, git-ignored).
# The UI is the full `mlflow` package, in its own venv at the client's pinned version (same
# database schema): it caps pyarrow below the project's pin, and the pipeline needs only the
# client (mlflow-skinny).
mlflow:
	mkdir -p $(MLFLOW_DIR)
	test -x $(MLFLOW_VENV)/bin/mlflow || { $(PYTHON) -m venv $(MLFLOW_VENV) && \
	  $(MLFLOW_VENV)/bin/python -m pip install --quiet \
	  "mlflow==$$(sed -n 's/^mlflow-skinny==//p' constraints.txt)"; }
	$(MLFLOW_VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 --workers $(MLFLOW_UI_WORKERS) \
	  --backend-store-uri "$(or $(MLFLOW_TRACKING_URI),$(MLFLOW_STORE))" \
	  --default-artifact-root "$(MLFLOW_DIR)/artifacts"

# Debian's Chromium for the browser test (Playwright drives it; it never downloads a browser).
browser:
	command -v chromium >/dev/null || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

# The docs site (MkDocs Material) on http://127.0.0.1:8000, rebuilt on every edit. Loopback only,
# like `make ui`. The configuration page's reference is rendered from the settings at build time
# (docs/hooks/), so it describes this checkout's code.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8000

# The site as CI builds it: --strict turns a broken link, a missing anchor or a page left out of
# the nav into a failure. Written to site/ (git-ignored), which can be published as it is.
# NO_MKDOCS_2_WARNING: Material's end-of-life banner on every build would bury the build's own
# warnings.
docs-build: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
