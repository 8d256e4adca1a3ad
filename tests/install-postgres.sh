#!/usr/bin/env bash
# Installs the PostgreSQL server the commit-log tests start by themselves (tests/postgres.py):
# Debian's `postgresql` package, only where no server binary is present. `make test` runs it;
# `make run` does not. The tests never use the cluster or service the package sets up: each
# run makes its own data folder with initdb and starts the server on a free loopback port.
set -euo pipefail

have_server() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null 2>&1; }
have_server && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-postgres: PostgreSQL missing and no apt-get here: install its server by hand" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-postgres: PostgreSQL missing: run as root or install it" >&2
        exit 1
    fi
    sudo=(sudo)
fi

# invoke-rc.d asks policy-rc.d whether a package may start its service; 101 says no. Only a
# policy of our own is put in place, and only for this install.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    own_policy=1
fi
cleanup() { if [ "$own_policy" -eq 1 ]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

echo "install-postgres: installing postgresql"
install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q
    --no-install-recommends -o DPkg::Lock::Timeout=300 postgresql)
if ! "${install[@]}"; then
    # A fresh machine's package lists may be stale or absent: refresh once, then retry.
    "${sudo[@]}" apt-get update -q -o DPkg::Lock::Timeout=300
    "${install[@]}"
fi
have_server
