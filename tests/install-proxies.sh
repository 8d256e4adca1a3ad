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

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-proxies: ${missing[*]} missing and no apt-get here: install them by hand" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-proxies: ${missing[*]} missing: run as root or install them" >&2
        exit 1
    fi
    sudo=(sudo)
fi

# invoke-rc.d and deb-systemd-invoke ask policy-rc.d whether a package may start its
# service; 101 says no. Only a policy of our own is put in place, and only for this install.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    own_policy=1
fi
cleanup() { if [ "$own_policy" -eq 1 ]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

echo "install-proxies: installing ${missing[*]}"
install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q
    --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}")
if ! "${install[@]}"; then
    # A fresh machine's package lists may be stale or absent: refresh once, then retry.
    "${sudo[@]}" apt-get update -q -o DPkg::Lock::Timeout=300
    "${install[@]}"
fi

# Belt and braces where a policy was already there and let services start: stop the
# daemons this install started (the packages' own pid files, for the packages installed
# now only, so nothing else is touched).
for pkg in "${missing[@]}"; do
    pidfile="/run/$pkg.pid"
    if [ -s "$pidfile" ] && "${sudo[@]}" kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "install-proxies: stopping the service started by the install ($pidfile)"
        "${sudo[@]}" kill -TERM "$(cat "$pidfile")" || true
    fi
done
have nginx && have haproxy
