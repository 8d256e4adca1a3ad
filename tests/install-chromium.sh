#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser test (tests/test_dashboard_browser.py),
# only where missing. `make test` runs it; `make run` does not. Playwright drives this
# browser through its executable path: no browser build is downloaded.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
have chromium && exit 0
bash "$(dirname "$0")/apt-install.sh" install-chromium chromium fonts-dejavu-core
have chromium
