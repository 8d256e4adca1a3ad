#!/usr/bin/env bash
# Installs the PostgreSQL server the commit-log tests start by themselves (tests/postgres.py):
# Debian's `postgresql` package, only where no server binary is present. `make test` runs it;
# `make run` does not. The tests never use the cluster or service the package sets up: each
# run makes its own data folder with initdb and starts the server on a free loopback port.
set -euo pipefail

have_server() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null 2>&1; }
have_server && exit 0
bash "$(dirname "$0")/apt-install.sh" install-postgres postgresql
have_server
