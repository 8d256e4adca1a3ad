# Everything a fresh machine needs: `make run` serves the example, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKERD := reference/node_modules/.bin/workerd
LINT_PATHS := $(wildcard src tests examples bench conformance)

.PHONY: run test lint typecheck install workerd clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Cloudflare's real runtime, pinned in reference/package-lock.json, for the parity tests.
$(WORKERD): reference/package.json reference/package-lock.json
	cd reference && npm ci --no-audit --no-fund --loglevel=error
	touch $(WORKERD)

workerd: $(WORKERD)

run: $(STAMP)
	$(BIN)/stateroom dev examples/websocket-server --port 8787

test: $(STAMP) $(WORKERD)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/pytest -q

lint:
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck:
	$(BIN)/mypy

clean:
	rm -rf $(VENV) reference/node_modules
