#!/bin/bash
# Build (or reuse) the Debian 12 package of an earlier revision of this repository; print its path.
#
# Usage: scripts/build-previous-deb.sh REVISION [PIN...]
#
# The upgrade test installs the previous release's package and upgrades it to this tree's
# (tests/system/test_upgrade_release.py names the revision). That package is built from git as its
# own revision built it: `git archive REVISION` into a temporary folder, then that revision's
# scripts/build-deb.sh there, with the version a clean checkout of it derives,
# <pyproject.toml's version>~git<commit time, UTC>.<7-digit commit> (given with --version, because an
# archive has no git to derive it from). Revisions from before Debian 13 support build for the
# machine's own release only, so this runs on Debian 12 "bookworm", the machine `make test` runs on.
#
# The package is cached in $BURROW_CI_CACHE/previous-debs/<key>/ (default /var/cache/burrow-ci; like
# the nspawn roots, one copy for every checkout), with its lintian report and build log; <key>
# hashes the full commit id, the pins and this script, so each revision is built once (3 to 5
# minutes on a busy 2-core machine), then reused. Concurrent callers take a lock per key; the build
# runs in a temporary folder beside its final place and is renamed into it only when complete, so a
# crashed build never leaves half a package behind.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf 'build-previous-deb: %s\n' "$*" >&2; }

if (($# < 1)); then
    printf 'usage: %s REVISION [PIN...]\n' "$0" >&2
    exit 2
fi
if ! commit=$(git -C "$repo" rev-parse --verify -q "$1^{commit}"); then
    log "no commit '$1' in $repo (a shallow clone? fetch the history first: git fetch --unshallow)"
    exit 2
fi
host_dist=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
if [[ "$host_dist" != bookworm ]]; then
    log "revision ${commit:0:7} builds for the machine's own release: run this on Debian 12 (bookworm), not '${host_dist:-?}'"
    exit 2
fi

base_version=$(git -C "$repo" show "$commit:pyproject.toml" \
    | /usr/bin/python3 -c 'import sys, tomllib; print(tomllib.load(sys.stdin.buffer)["project"]["version"])')
stamp=$(TZ=UTC git -C "$repo" log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S "$commit")
version="$base_version~git$stamp.${commit:0:7}"

cache=${BURROW_CI_CACHE:-/var/cache/burrow-ci}/previous-debs
pins=("${@:2}")
key=$( { printf '%s\n' "$commit" "${pins[@]}"; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-16)
final="$cache/$key"
found() { compgen -G "$final/burrow_*.deb" | head -n 1; }

if [[ -d "$final" ]] && deb=$(found); then
    printf '%s\n' "$deb"
    exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.$key.lock"
log "waiting for the lock on $key (revision ${commit:0:7})"
flock 9
if [[ -d "$final" ]] && deb=$(found); then
    # Another process built it while we waited for the lock.
    printf '%s\n' "$deb"
    exit 0
fi

work=$(mktemp -d "$cache/.build-$key.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/tree" "$work/out"
git -C "$repo" archive --format=tar "$commit" | tar -xf - -C "$work/tree"
printf '%s\n' "${pins[@]}" >"$work/out/constraints.txt"
start=$(date +%s)
log "building burrow $version from revision ${commit:0:7} (log: $work/out/build.log while it runs)"
if ! built=$(cd "$work/tree" && PIP_CONSTRAINT="$work/out/constraints.txt" \
        scripts/build-deb.sh --version "$version" 2>"$work/out/build.log" | tail -n 1); then
    tail -n 40 "$work/out/build.log" >&2
    exit 1
fi
mv "$work/tree/$built" "$work/out/"
mv "$work/tree/${built%.deb}.lintian.txt" "$work/out/"
printf '%s\n' "$commit" >"$work/out/revision"
mv "$work/out" "$final"
log "built $(basename "$built") in $(($(date +%s) - start)) s"
printf '%s\n' "$final/$(basename "$built")"
