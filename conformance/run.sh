#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client against a WebSocket echo server on 127.0.0.1.
#
#   conformance/run.sh [--fast] [--server stateroom|websockets|deflate] [--port N] [--cases LIST]
#
#   --fast        skip the slow cases: all of 9.* and the larger payloads of 12.*/13.*
#                 (see FAST_EXCLUDE in autobahn.py); a couple of minutes instead of many.
#   --server      stateroom (default): `stateroom serve examples/echo --port N`;
#                 websockets: conformance/echo_server.py, the reference testee;
#                 deflate: the same, with stateroom.protocol.deflate doing permessage-deflate.
#   --port N      port to listen on (default: a free one).
#   --cases LIST  comma-separated Autobahn case patterns, e.g. '1.*,2.*,12.1.1'.
#
# Installs wstest first if needed (conformance/install.sh). Reports go to
# conformance/reports/<server>/ (index.html for people, index.json for the summary). Exits
# non-zero if any case is FAILED or NON-STRICT, or if the server or wstest fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PY="$REPO/.venv/bin/python"
[[ -x "$PY" ]] || PY="$(command -v python3)"

fast=0
server=stateroom
port=""
cases=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --fast) fast=1 ;;
        --server) server="${2:?--server needs a value}"; shift ;;
        --port) port="${2:?--port needs a value}"; shift ;;
        --cases) cases="${2:?--cases needs a value}"; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

"$HERE/install.sh"

if [[ -z "$port" ]]; then
    port="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi

case "$server" in
    stateroom) server_cmd=("$REPO/.venv/bin/stateroom" serve "$REPO/examples/echo" --port "$port") ;;
    websockets) server_cmd=("$PY" "$HERE/echo_server.py" --port "$port") ;;
    deflate) server_cmd=("$PY" "$HERE/echo_server.py" --port "$port" --deflate stateroom) ;;
    *) echo "run.sh: unknown server: $server (stateroom, websockets or deflate)" >&2; exit 2 ;;
esac

outdir="$HERE/reports/$server"
work="$(mktemp -d)"
rm -rf "$outdir"
mkdir -p "$outdir"

server_pid=""
cleanup() {
    # Stop only the server this script started, by its PID; wait so the port is free again.
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "run.sh: starting $server on 127.0.0.1:$port: ${server_cmd[*]}"
"${server_cmd[@]}" >"$outdir/server.log" 2>&1 &
server_pid=$!

# Wait (bounded: 20 s) until the port accepts connections.
ready=0
for _ in $(seq 200); do
    if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
    if "$PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' "$port" 2>/dev/null; then
        ready=1; break
    fi
    sleep 0.1
done
if [[ $ready -ne 1 ]]; then
    echo "run.sh: server did not start listening on port $port; its log:" >&2
    cat "$outdir/server.log" >&2
    exit 1
fi

spec_args=(spec --url "ws://127.0.0.1:$port" --outdir "$outdir" --agent "$server")
[[ $fast -eq 1 ]] && spec_args+=(--fast)
[[ -n "$cases" ]] && spec_args+=(--cases "$cases")
"$PY" "$HERE/autobahn.py" "${spec_args[@]}" >"$work/fuzzingclient.json"
cp "$work/fuzzingclient.json" "$outdir/fuzzingclient.json"

echo "run.sh: running wstest -m fuzzingclient (log: $outdir/wstest.log)"
start=$SECONDS
# wstest writes its own log; run it from the work dir so nothing lands in the source tree.
# The timeout bounds a hung run: 15 min for --fast, 60 min for everything.
limit=$(( fast == 1 ? 900 : 3600 ))
(cd "$work" && timeout "$limit" "$HERE/.venv/bin/wstest" -m fuzzingclient -s "$work/fuzzingclient.json") \
    >"$outdir/wstest.log" 2>&1 || {
        rc=$?
        echo "run.sh: wstest exited with status $rc; last lines of its log:" >&2
        tail -n 20 "$outdir/wstest.log" >&2
        exit 1
    }
echo "run.sh: wstest finished in $((SECONDS - start)) s"

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run.sh: the server exited during the run; its log:" >&2
    tail -n 40 "$outdir/server.log" >&2
    "$PY" "$HERE/autobahn.py" report "$outdir/index.json" || true
    exit 1
fi

"$PY" "$HERE/autobahn.py" report "$outdir/index.json"
