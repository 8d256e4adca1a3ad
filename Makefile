# Everything a fresh machine needs: `make run` serves the example, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKERD := reference/node_modules/.bin/workerd
LINT_PATHS := $(wildcard src tests examples bench conformance) setup.py

.PHONY: run test test-pure lint typecheck install workerd proxies postgres chromium clean bench bench-smoke bench-report \
	profile conformance conformance-full

# The hot modules are compiled by mypyc at install (setup.py): editing one reinstalls.
# Their list is stateroom.compiled.HOT_MODULES (a stdlib-only file, as setup.py reads it).
HOT_SOURCES := src/stateroom/compiled.py $(shell $(PYTHON) -c "import runpy; \
	print(*('src/' + m.replace('.', '/') + '.py' \
	for m in runpy.run_path('src/stateroom/compiled.py')['HOT_MODULES']))")
PURE := build/pure

$(STAMP): pyproject.toml setup.py $(HOT_SOURCES) src/stateroom/protocol/_unmask.c \
		src/stateroom/storage/_logwriter.c
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

# Debian's nginx and haproxy, for the tests that run stateroom behind them (tests/test_proxy.py):
# apt-get installs them where missing, starting no service. `make run` needs neither.
proxies:
	bash tests/install-proxies.sh

# Debian's postgresql, for the PostgreSQL commit log's tests (tests/postgres.py starts a
# throw-away server of its own): apt-get installs it where missing.
postgres:
	bash tests/install-postgres.sh

# Debian's chromium, for the dashboard's browser test (tests/test_dashboard_browser.py, driven
# by Playwright through its executable path): apt-get installs it where missing.
chromium:
	bash tests/install-chromium.sh

run: $(STAMP)
	$(BIN)/stateroom dev examples/websocket-server --port 8787

# The suite runs twice: on the compiled build, then on the same source as pure Python
# (what an install without a C compiler runs).
test: $(STAMP) $(WORKERD) proxies postgres chromium
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-pure

test-pure: $(STAMP) $(WORKERD) proxies postgres chromium
	rm -rf $(PURE) && mkdir -p $(PURE) && cp -r src $(PURE)/
	find $(PURE) -name '*.so' -delete
	STATEROOM_PURE_PYTHON=1 PYTHONPATH=$(CURDIR)/$(PURE)/src $(BIN)/pytest -q -p no:cacheprovider

lint:
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck:
	$(BIN)/mypy

# Autobahn|Testsuite against `stateroom serve examples/echo` (installs wstest on first use):
# the fast profile (319 cases, about a minute) and every case (517; 9.* and 12.*/13.* are long).
conformance: $(STAMP)
	conformance/run.sh --fast

conformance-full: $(STAMP)
	conformance/run.sh

BENCH_STAMP := $(VENV)/.bench-installed
BENCH_NODE := bench/node/node_modules/.package-lock.json

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# Node's ws, pinned in bench/node/package-lock.json: one of the bench peers.
$(BENCH_NODE): bench/node/package.json bench/node/package-lock.json
	cd bench/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(BENCH_NODE)

# Benchmark suite (~15 min, on a quiet machine): JSON in bench/results/, tables in bench/README.md.
bench: $(BENCH_STAMP) $(WORKERD) $(BENCH_NODE)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.report

# One-second runs of every server and scenario: proves the harness, writes no results.
bench-smoke: $(BENCH_STAMP) $(WORKERD) $(BENCH_NODE)
	$(BIN)/python -m bench.run --smoke

bench-report:
	$(BIN)/python -m bench.report

# py-spy profile of stateroom under echo load, into bench/results/profiles/.
profile: $(BENCH_STAMP)
	$(BIN)/python -m bench.profile

clean:
	rm -rf $(VENV) build src/*.so src/stateroom/*/*.so reference/node_modules bench/build bench/node/node_modules conformance/.venv
