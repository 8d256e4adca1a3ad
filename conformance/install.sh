#!/usr/bin/env bash
# Installs Autobahn|Testsuite's fuzzing client (`wstest`) into conformance/.venv.
#
# Why it looks like this: autobahntestsuite (latest 25.10.1) is still a Python 2.7 program that
# pins autobahn 0.10.9 on Twisted 19.10, so it cannot run on the project's Python 3.11. Debian 12
# (this project's machines) ships no Python 2 any more, and Docker is not available, so the
# script takes CPython 2.7.18 from Debian 11 ("bullseye") packages: it downloads the .debs with
# apt-get under a private apt state directory (the system's apt configuration and dpkg database
# are not touched; nothing is installed system-wide) and unpacks them with `dpkg -x` into
# conformance/.venv/root. pip 20.3.4 (the last pip for Python 2.7) then installs the pinned
# requirements-wstest.txt into that private interpreter.
#
# conformance/.venv is self-contained and relocatable: bin/python and bin/wstest are wrappers
# that point the interpreter at its own prefix and bundled libssl1.1/libffi7.
#
# Idempotent: a stamp records the hash of this script and the requirements; a second run with
# nothing changed returns at once. Use --force to rebuild from scratch.
#
# Needs: bash, apt-get and dpkg (Debian/Ubuntu host), python3 with pip (to fetch pip's wheel),
# network access to Debian's archive and PyPI. A C compiler is optional (it builds `wsaccel`,
# autobahn's C speed-ups for UTF-8 validation and masking; without it wstest is slower).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
ROOT="$VENV/root"
REQS="$HERE/requirements-wstest.txt"
STAMP="$VENV/.installed"
PIP_VERSION="20.3.4"
BOOTSTRAP="setuptools==44.1.1 wheel==0.37.1 pip==$PIP_VERSION"
ACCEL="wsaccel==0.6.6"
DEBIAN_SUITE="bullseye"
DEBS=(python2.7-minimal libpython2.7-minimal libpython2.7-stdlib python2.7
      libpython2.7-dev python2.7-dev libssl1.1 libffi7)

log() { printf 'conformance/install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) die "unknown argument: $arg" ;;
    esac
done

want_stamp="$(cat "$0" "$REQS" | sha256sum | cut -d' ' -f1)"
if [[ $force -eq 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]] \
    && "$VENV/bin/wstest" --help >/dev/null 2>&1; then
    log "up to date ($VENV)"
    exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian-based host"
command -v dpkg >/dev/null || die "dpkg not found: this script needs a Debian-based host"
command -v python3 >/dev/null || die "python3 not found (used only to fetch pip's wheel)"

start=$SECONDS
rm -rf "$VENV"
mkdir -p "$ROOT" "$VENV/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- 1. CPython 2.7 from Debian bullseye, via a private apt configuration ------------------
# The archive URIs are read from the host's own apt sources (so mirrors configured there are
# used, and no host name is written here); CONFORMANCE_DEBIAN_MIRROR and
# CONFORMANCE_DEBIAN_SECURITY_MIRROR override them.
apt_uris() {
    # Prints every URI of a "deb" source found in the host's apt configuration.
    {
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/{for(i=2;i<=NF;i++)print $i}'
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '$1=="deb"{for(i=2;i<=NF;i++)if($i ~ /^[a-z]+:\/\//){print $i; break}}'
    } | sed 's:/*$::'
}
mirror="${CONFORMANCE_DEBIAN_MIRROR:-$(apt_uris | grep -E '/debian$' | head -n1 || true)}"
security="${CONFORMANCE_DEBIAN_SECURITY_MIRROR:-$(apt_uris | grep -E '/debian-security$' | head -n1 || true)}"
[[ -n "$mirror" ]] || die "no Debian archive found in the apt sources; set CONFORMANCE_DEBIAN_MIRROR"

apt_dir="$work/apt"
mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts" \
    "$apt_dir/prefs" "$work/debs"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f "$keyring" ]] || die "$keyring missing (package debian-archive-keyring)"
{
    echo "deb [signed-by=$keyring] $mirror $DEBIAN_SUITE main"
    [[ -z "$security" ]] || echo "deb [signed-by=$keyring] $security $DEBIAN_SUITE-security main"
} >"$apt_dir/sources.list"
apt_opts=(
    -o "Dir::State=$apt_dir/state" -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
    -o "Dir::Etc::Preferences=$apt_dir/prefs/none" -o "Dir::Etc::PreferencesParts=$apt_dir/prefs"
    -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)" -o "Acquire::Retries=3"
)
log "fetching CPython 2.7 packages from Debian $DEBIAN_SUITE"
apt-get "${apt_opts[@]}" -qq update >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; die "apt-get update failed"; }
(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download "${DEBS[@]}") >"$work/apt.log" 2>&1 \
    || { cat "$work/apt.log" >&2; die "apt-get download failed (is $DEBIAN_SUITE still on the mirror?)"; }
for deb in "$work"/debs/*.deb; do
    dpkg -x "$deb" "$ROOT"
done

# --- 2. Wrappers: a private, relocatable interpreter ----------------------------------------
# PYTHONHOME points the interpreter at its unpacked prefix; Debian's site.py then uses
# root/usr/local/lib/python2.7/dist-packages, which is where pip installs (unix_local scheme),
# and .pth files there (zope's namespace package) work. LD_LIBRARY_PATH supplies the bundled
# libssl1.1/libffi7 that Debian 12 no longer has. PYTHONNOUSERSITE keeps ~/.local out.
cat >"$VENV/bin/python" <<'WRAP'
#!/usr/bin/env bash
# Private CPython 2.7 for Autobahn|Testsuite (made by conformance/install.sh).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONHOME="$here/root/usr" PYTHONNOUSERSITE=1 PIP_NO_PYTHON_VERSION_WARNING=1
export LD_LIBRARY_PATH="$here/root/usr/lib/x86_64-linux-gnu:$here/root/usr/lib/aarch64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset PYTHONPATH PYTHONSTARTUP
exec "$here/root/usr/bin/python2.7" "$@"
WRAP
cat >"$VENV/bin/wstest" <<'WRAP'
#!/usr/bin/env bash
# Autobahn|Testsuite's wstest on the private CPython 2.7 (made by conformance/install.sh).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/python" -c 'import sys; sys.argv[0] = "wstest"; from autobahntestsuite.wstest import run; run()' "$@"
WRAP
chmod +x "$VENV/bin/python" "$VENV/bin/wstest"
"$VENV/bin/python" -c 'import ssl, zlib' || die "the unpacked CPython 2.7 does not start"

# --- 3. pip for Python 2.7, then the pinned requirements ------------------------------------
log "installing pip $PIP_VERSION and the pinned wstest requirements"
python3 -m pip download -q --no-deps --only-binary=:all: -d "$work/pip" "pip==$PIP_VERSION" 2>/dev/null \
    || die "could not download pip $PIP_VERSION"
pip_whl="$(ls "$work"/pip/pip-"$PIP_VERSION"-*.whl)"
"$VENV/bin/python" "$pip_whl/pip" install -q --no-cache-dir --no-warn-script-location $BOOTSTRAP 2> >(grep -v 'is ignored' >&2)
"$VENV/bin/python" -m pip install -q --no-cache-dir --no-warn-script-location --no-deps -r "$REQS" 2> >(grep -v 'is ignored' >&2)

# Optional C speed-ups; Debian's sysconfig names /usr/include, so point the compiler at ours.
if command -v cc >/dev/null; then
    CFLAGS="-I$ROOT/usr/include -I$ROOT/usr/include/python2.7" \
        "$VENV/bin/python" -m pip install -q --no-cache-dir --no-warn-script-location --no-deps "$ACCEL" \
        2> >(grep -v 'is ignored' >&2) || log "warning: $ACCEL did not build; wstest will be slower"
else
    log "warning: no C compiler; skipping $ACCEL (wstest will be slower)"
fi

"$VENV/bin/wstest" --help >/dev/null || die "wstest does not start"
echo "$want_stamp" >"$STAMP"
log "done in $((SECONDS - start)) s: $VENV/bin/wstest"
