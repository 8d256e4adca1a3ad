#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser test (tests/test_dashboard_browser.py),
# only where missing. `make test` runs it; `make run` does not. Playwright drives this
# browser through its executable path: no browser build is downloaded.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
have chromium && exit 0

if ! have apt-get; then
    echo "install-chromium: chromium missing and no apt-get here: install it by hand" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! have sudo; then
        echo "install-chromium: chromium missing: run as root or install it" >&2
        exit 1
    fi
    sudo=(sudo)
fi

echo "install-chromium: installing chromium"
install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q
    --no-install-recommends -o DPkg::Lock::Timeout=300 chromium fonts-dejavu-core)
if ! "${install[@]}"; then
    # A fresh machine's package lists may be stale or absent: refresh once, then retry.
    "${sudo[@]}" apt-get update -q -o DPkg::Lock::Timeout=300
    "${install[@]}"
fi
have chromium
