#!/bin/bash
# Build dist/burrow_<version>_<arch>.deb with dh-virtualenv, or reuse it when its inputs did not change.
#
# Usage: scripts/build-deb.sh [--force]
#
# Inputs are daemons/, pyproject.toml, README.md, systemd/, packaging/ and this script; their hash is
# kept next to the .deb in dist/burrow_<version>_<arch>.deb.inputs, and an equal hash means the .deb is
# reused as it is. The build runs in a copy under a temporary folder, so the work tree gets no
# debian/, build/ or egg-info droppings; lintian's report is written to dist/ and an error fails.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { printf 'build-deb: %s\n' "$*" >&2; }

# Debian's python3 reads the version, never a pyenv or venv python that happens to be first on PATH.
version=$(/usr/bin/python3 -c 'import tomllib, sys; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' pyproject.toml)
# The venv holds compiled wheels (uvloop, httptools), so the package is built for this architecture.
arch=$(dpkg --print-architecture)
deb="dist/burrow_${version}_${arch}.deb"
stamp="$deb.inputs"

inputs_hash() {
    local paths=(daemons pyproject.toml packaging scripts/build-deb.sh)
    [[ -e README.md ]] && paths+=(README.md)
    [[ -d systemd ]] && paths+=(systemd)
    find "${paths[@]}" -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -name '*.pyc' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

mkdir -p dist
exec 9>dist/.build-deb.lock
flock 9
hash=$(inputs_hash)
if ((!force)) && [[ -f "$deb" && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
    log "inputs unchanged ($hash): reusing $deb"
    printf '%s\n' "$deb"
    exit 0
fi

need=()
for tool in dpkg-buildpackage:dpkg-dev dh:debhelper dh_virtualenv:dh-virtualenv lintian:lintian \
    fakeroot:fakeroot; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
dpkg -s python3-venv python3-dev build-essential >/dev/null 2>&1 || need+=(python3-venv python3-dev build-essential)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${need[@]}" >&2
fi

tmp=$(mktemp -d /tmp/burrow-deb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
src="$tmp/burrow-$version"
mkdir -p "$src"
sources=(daemons pyproject.toml)
[[ -e README.md ]] && sources+=(README.md)
[[ -d systemd ]] && sources+=(systemd)
tar -cf - --exclude=__pycache__ --exclude='*.egg-info' --exclude='*.pyc' "${sources[@]}" | tar -xf - -C "$src"
if [[ ! -e "$src/README.md" ]]; then
    # pyproject.toml names README.md as the long description; until the repository has one, the
    # package's metadata says where to look instead.
    log "README.md is missing: the package's long description is a placeholder"
    printf 'burrow: see https://example.org/burrow\n' >"$src/README.md"
fi
cp -a packaging/debian "$src/debian"
{
    printf 'burrow (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Release %s, built from the repository by scripts/build-deb.sh.\n\n' "$version"
    printf ' -- burrow developers <burrow@example.org>  %s\n' "$(date -R)"
} >"$src/debian/changelog"

start=$(date +%s)
log "building burrow $version in $src"
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-/var/cache/burrow-ci/pip}
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1 || { tail -n 40 "$tmp/build.log" >&2; exit 1; }
built="$tmp/burrow_${version}_${arch}.deb"
log "built in $(($(date +%s) - start)) s: $(du -h "$built" | cut -f1)"

report="dist/burrow_${version}_${arch}.lintian.txt"
status=0
lintian --info --display-info --tag-display-limit 0 "$built" >"$report" 2>&1 || status=$?
grep -E '^[EW]: ' "$report" >&2 || log "lintian: no errors or warnings"
if ((status)); then
    log "lintian found errors (full report: $report)"
    exit 1
fi

mv -f "$built" "$deb"
printf '%s\n' "$hash" >"$stamp"
printf '%s\n' "$deb"
