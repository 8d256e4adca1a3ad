#!/usr/bin/env bash
# Installs Debian packages for the test suite: tests/apt-install.sh LABEL PACKAGE...
# Shared by install-proxies.sh, install-postgres.sh and install-chromium.sh, which decide
# what is missing. No package service is left running: invoke-rc.d and deb-systemd-invoke
# ask policy-rc.d whether a package may start its service, and 101 says no (a policy of our
# own, only for this install); where a policy already let one start, the daemon this
# install started is stopped by its pid file. A fresh machine's package lists may be stale
# or absent: the install refreshes them once and retries.
set -euo pipefail

label=$1
shift
packages=("$@")

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$label: ${packages[*]} missing and no apt-get here: install them by hand" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "$label: ${packages[*]} missing: run as root or install them" >&2
        exit 1
    fi
    sudo=(sudo)
fi

policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    own_policy=1
fi
cleanup() { if [ "$own_policy" -eq 1 ]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

echo "$label: installing ${packages[*]}"
install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q
    --no-install-recommends -o DPkg::Lock::Timeout=300 "${packages[@]}")
if ! "${install[@]}"; then
    "${sudo[@]}" apt-get update -q -o DPkg::Lock::Timeout=300
    "${install[@]}"
fi

for pkg in "${packages[@]}"; do
    pidfile="/run/$pkg.pid"
    if [ -s "$pidfile" ] && "${sudo[@]}" kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "$label: stopping the service started by the install ($pidfile)"
        "${sudo[@]}" kill -TERM "$(cat "$pidfile")" || true
    fi
done
