#!/usr/bin/env bash
# Install what `make demo` and `make test` need on a fresh Debian 12 machine, then print the path
# of a Python virtualenv that has burrow (editable, from this checkout) and its test extras.
#
# The venv is cached under $BURROW_CI_CACHE (default /var/cache/burrow-ci) keyed by a hash of
# pyproject.toml, the interpreter and this checkout's path: the editable install points at one
# checkout, so two checkouts on one machine (a CI clone beside a working tree, git worktrees) each
# get their own venv instead of re-pointing a shared one under each other's running tests. A venv
# not used for 7 days is removed; pip's own cache keeps a rebuild short.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${BURROW_CI_CACHE:-/var/cache/burrow-ci}
# git: the package version comes from it (scripts/build-deb.sh), and tests check that derivation.
apt_packages=(rabbitmq-server python3-venv python3-dev build-essential git)
# Node.js: the interop tests run examples/node (the npm packages come from scripts/node-deps.sh).
# Debian's nodejs (18 on Debian 12) and npm, unless some node and npm are installed already.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_packages+=(nodejs npm)
fi

missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "bootstrap: apt-get install ${missing[*]}" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq >&2
    # Without recommends, like every install script here: what the suite needs is named above, and
    # a machine with recommends disabled must pass too.
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

key=$( { cat "$here/pyproject.toml" /usr/bin/python3; echo "$here"; } 2>/dev/null | sha256sum | cut -c1-16)
venv="$cache/venv-$key"
log="$cache/bootstrap.log"
mkdir -p "$cache"
exec 9>"$cache/venv.lock"
flock 9
if [ ! -e "$venv/.complete" ]; then
    echo "bootstrap: building $venv (log: $log)" >&2
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    if ! { "$venv/bin/pip" install --upgrade pip && "$venv/bin/pip" install -e "${here}[test,bench,docs]"; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        exit 1
    fi
fi
touch "$venv/.complete"  # its time is this venv's last use
for old in "$cache"/venv-*/.complete; do
    [ -n "$(find "$old" -mtime +7)" ] && rm -rf "$(dirname "$old")"
done
echo "$venv"
