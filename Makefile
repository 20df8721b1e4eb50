# dq_pipeline — every command a user needs. Python 3.11 required.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export DAGSTER_TELEMETRY_DISABLED := 1
export GX_ANALYTICS_ENABLED := False

.PHONY: install browser demo test ui review bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# torch is pinned first: 2.13.0 is the CPU build (an unpinned torch pulls a multi-GB CUDA build).
$(VENV)/.installed: pyproject.toml $(BIN)/python
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## Debian's chromium for the browser tests (Playwright drives it; it cannot download its own browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  echo "installing Debian's chromium for the browser tests (apt-get)"; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || { $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; }

## Set up, then audit every bundled demo dataset under data/ and print a summary per dataset.
demo: install
	$(BIN)/dq-pipeline demo --data-dir data

## Set up (venv + chromium), then run the test suite (what CI runs).
test: install browser
	$(BIN)/pytest -q -p no:cacheprovider

## Start the Dagster UI on http://127.0.0.1:3000 (telemetry off, instance in .dagster_home/).
ui: install
	mkdir -p .dagster_home && cp .dagster/dagster.yaml .dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## Review flagged examples in the browser: http://127.0.0.1:8765 over data/curated.duckdb (after `make demo`).
review: install
	$(BIN)/dq-pipeline review

## Benchmarks (quality and speed vs cleanlab); results land in bench/results/.
bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .dagster_home .cache data/curated.duckdb*
