#!/usr/bin/env bash
# Installs the reverse proxies the proxy tests run stateroom behind (tests/test_proxy.py):
# Debian's nginx and haproxy, only where missing. `make test` runs it; `make run` does not.
# No service is started by the install: the tests run their own nginx and HAProxy on
# ephemeral loopback ports, and a system nginx left on port 80 is nothing they may rely on.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
missing=()
have nginx || missing+=(nginx)
have haproxy || missing+=(haproxy)
[ ${#missing[@]} -eq 0 ] && exit 0
bash "$(dirname "$0")/apt-install.sh" install-proxies "${missing[@]}"
have nginx && have haproxy
