#!/bin/bash
# Build dist/burrow_<version>_<arch>.deb with dh-virtualenv, or reuse it when its inputs did not change.
#
# Usage: scripts/build-deb.sh [--force] [--dist SUITE] [--version VERSION] [--print-version]
#
# One package per Debian release: the venv inside runs the release's own python3 (3.11 on Debian 12
# "bookworm", 3.13 on Debian 13 "trixie"), so Depends pin that minor version and the package refuses
# to install on the other release. --dist (or the environment variable BURROW_DEB_DIST; `make deb
# DIST=trixie`) names the release by codename; the default is the machine's own, built here. Another
# release is built inside a cached nspawn root of it with the build tools (scripts/build-root.sh,
# under /var/cache/burrow-ci/roots, keyed like the test roots), where lintian of that release checks
# it too.
#
# The package version is the project's (pyproject.toml) plus where the tree comes from, so that each
# build sorts after the one before it and apt upgrades to it instead of answering "already the newest
# version"; the "~" keeps these builds below a release of the same version (0.2.0~... < 0.2.0). The
# release comes last, Debian's way (~deb12u1, ~deb13u1), so that the two packages of one tree have
# distinct versions and file names and can sit in one apt repository:
#   a clean git checkout      0.2.0~git<commit time>.<commit>~deb<N>u1         e.g. 0.2.0~git20261129061500.1a2b3c4~deb13u1
#   uncommitted changes       0.2.0~git<newest change>.<commit>.dirty~deb<N>u1  (the changed files' newest mtime)
#   no git (e.g. a tarball)   0.2.0~git<newest input file's mtime>.nogit~deb<N>u1
# Times are UTC, YYYYMMDDHHMMSS; "changes" count only in the package's inputs (below). --version (or
# the environment variable BURROW_DEB_VERSION) sets the version outright: the upgrade test builds its
# older package from the same tree that way (repacked in seconds from a package of the same inputs
# and release when there is one); --print-version prints the version and builds nothing.
# dist/burrow_latest_deb<N>.deb links to the last package of a derived version for Debian N (the
# Ansible roles' default burrow_common_deb_path on a host of that release), never to such an
# override; dist/burrow_latest.deb does the same for the machine's own release.
#
# Inputs are daemons/, pyproject.toml, README.md, systemd/, packaging/ and this script; their hash and
# the release are kept next to the .deb in dist/burrow_<version>_<arch>.deb.inputs, and an equal pair
# means the .deb is reused as it is. Packages of the same tree and release with other versions are
# kept; those of other inputs for the same release are deleted. The build runs in a copy under a
# temporary folder, so the work tree gets no debian/, build/ or egg-info droppings; lintian's report
# is written to dist/ and an error fails.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
force=0
print_only=0
version=${BURROW_DEB_VERSION:-}
dist=${BURROW_DEB_DIST:-}
while (($#)); do
    case "$1" in
        --force) force=1 ;;
        --dist) dist=${2:?--dist needs a Debian codename}; shift ;;
        --version) version=${2:?--version needs a value}; shift ;;
        --print-version) print_only=1 ;;
        *) printf 'usage: %s [--force] [--dist SUITE] [--version VERSION] [--print-version]\n' "$0" >&2; exit 2 ;;
    esac
    shift
done

log() { printf 'build-deb: %s\n' "$*" >&2; }

# The releases a package can be built for, by codename: Debian's major version, which names the
# package's release in its version (~deb<N>u1) and in the dist/burrow_latest_deb<N>.deb link.
declare -A RELEASES=([bookworm]=12 [trixie]=13)
# What a root of another release needs to build and check the package (the host's own list is in
# scripts/install-system-test-deps.sh).
BUILD_PACKAGES=(dh-virtualenv debhelper dpkg-dev python3-venv python3-dev build-essential fakeroot lintian)

host_dist=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
dist=${dist:-$host_dist}
if [[ -z "${RELEASES[$dist]:-}" ]]; then
    log "cannot build for '$dist': --dist takes one of ${!RELEASES[*]}"
    exit 2
fi
release="deb${RELEASES[$dist]}"

input_paths() {
    local paths=(daemons pyproject.toml packaging scripts/build-deb.sh)
    [[ -e README.md ]] && paths+=(README.md)
    [[ -d systemd ]] && paths+=(systemd)
    printf '%s\n' "${paths[@]}"
}
mapfile -t inputs < <(input_paths)

inputs_hash() {
    find "${inputs[@]}" -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -name '*.pyc' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

# UTC YYYYMMDDHHMMSS of the newest mtime among the given paths (a deleted file's folder stands in).
newest_mtime() {
    local path stamps=()
    for path in "$@"; do
        while [[ ! -e "$path" ]]; do path=$(dirname "$path"); done
        stamps+=("$(find "$path" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -printf '%T@\n' | sort -n | tail -n 1)")
        [[ -d "$path" && -z "${stamps[-1]}" ]] && stamps[-1]=$(stat -c %Y "$path")
    done
    date -u -d "@$(printf '%s\n' "${stamps[@]}" | sort -n | tail -n 1 | cut -d. -f1)" +%Y%m%d%H%M%S
}

derive_version() {
    local base=$1 commit stamp changed
    if ! command -v git >/dev/null || ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
        printf '%s~git%s.nogit~%su1\n' "$base" "$(newest_mtime "${inputs[@]}")" "$release"
        return
    fi
    commit=$(git rev-parse --short=7 HEAD)
    stamp=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)
    mapfile -t changed < <(git status --porcelain=v1 --untracked-files=all -- "${inputs[@]}" | cut -c4- | sed 's/.* -> //')
    if ((${#changed[@]})); then
        local newest
        newest=$(newest_mtime "${changed[@]}")
        [[ "$newest" > "$stamp" ]] && stamp=$newest
        printf '%s~git%s.%s.dirty~%su1\n' "$base" "$stamp" "$commit" "$release"
    else
        printf '%s~git%s.%s~%su1\n' "$base" "$stamp" "$commit" "$release"
    fi
}

# Debian's python3 reads the version, never a pyenv or venv python that happens to be first on PATH.
base_version=$(/usr/bin/python3 -c 'import tomllib, sys; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' pyproject.toml)
derived=0
if [[ -z "$version" ]]; then
    version=$(derive_version "$base_version")
    derived=1
fi
if ! dpkg --validate-version "$version" 2>/dev/null; then
    log "not a valid Debian version: $version"
    exit 2
fi
if ((print_only)); then
    printf '%s\n' "$version"
    exit 0
fi
# The venv holds compiled wheels (uvloop, httptools), so the package is built for this architecture.
arch=$(dpkg --print-architecture)
deb="dist/burrow_${version}_${arch}.deb"
stamp="$deb.inputs"

# Print the package's path for the caller (the last line of stdout) and link it as the latest build
# of its release (and, for the machine's own release, as dist/burrow_latest.deb).
finish() {
    if ((derived)); then
        ln -sfn "$(basename "$deb")" "dist/burrow_latest_$release.deb"
        [[ "$dist" == "$host_dist" ]] && ln -sfn "$(basename "$deb")" dist/burrow_latest.deb
    fi
    printf '%s\n' "$deb"
}

mkdir -p dist
exec 9>dist/.build-deb.lock
flock 9
# A stamp is "<inputs hash> <release>" (older stamps have no release).
hash="$(inputs_hash) $release"
if ((!force)) && [[ -f "$deb" && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
    log "inputs unchanged ($hash): reusing $deb"
    finish
    exit 0
fi
# Packages of this release built from other inputs are stale: remove them (with their stamps and
# lintian reports). The other release's packages stay.
for old_stamp in dist/burrow_*.deb.inputs; do
    [[ -e "$old_stamp" ]] || continue
    old=$(cat "$old_stamp")
    [[ "$old" != "$hash" && ( "$old" == *" $release" || "$old" != *" "* ) ]] || continue
    old_deb=${old_stamp%.inputs}
    rm -f "$old_deb" "$old_stamp" "${old_deb%.deb}.lintian.txt"
done
# So are the lintian reports of this release's builds that failed (they have no package).
for old_report in dist/burrow_*~"$release"u1_*.lintian.txt; do
    [[ -e "$old_report" && ! -e "${old_report%.lintian.txt}.deb" ]] && rm -f "$old_report"
done

# Same inputs, other version (--version): the files are those of a package already built and
# checked, so it is repacked with the new version in its control file and changelog (seconds)
# instead of built again (a minute or more).
repack() {
    local source=$1 work
    work=$(mktemp -d /tmp/burrow-repack.XXXXXX)
    dpkg-deb --raw-extract "$source" "$work/root"
    sed -i "s/^Version: .*/Version: $version/" "$work/root/DEBIAN/control"
    local changelog=usr/share/doc/burrow/changelog.gz
    zcat "$work/root/$changelog" | sed "1s/^burrow ([^)]*)/burrow ($version)/" | gzip -9n >"$work/changelog.gz"
    mv "$work/changelog.gz" "$work/root/$changelog"
    (cd "$work/root" && sed -i "s|^[0-9a-f]*  $changelog\$|$(md5sum "$changelog" | cut -d' ' -f1)  $changelog|" DEBIAN/md5sums)
    dpkg-deb --root-owner-group --build "$work/root" "$deb.tmp" >/dev/null
    mv -f "$deb.tmp" "$deb"
    rm -rf "$work"
}
if ((!force && !derived)); then
    for same_stamp in dist/burrow_*.deb.inputs; do
        [[ -e "$same_stamp" && "$(cat "$same_stamp")" == "$hash" && -f "${same_stamp%.inputs}" ]] || continue
        log "same inputs as ${same_stamp%.inputs}: repacking it as version $version"
        repack "${same_stamp%.inputs}"
        printf '%s\n' "$hash" >"$stamp"
        finish
        exit 0
    done
fi

# The build and lintian run here for the machine's own release; for another, in a throwaway overlay
# of its cached root (nothing written there outlives the command) that sees the build folder as
# /build and shares the pip cache. The network is the host's: pip fetches the venv's packages.
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-/var/cache/burrow-ci/pip}
tmp=$(mktemp -d /tmp/burrow-deb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
if [[ "$dist" == "$host_dist" ]]; then
    build_dir=$tmp
    in_build_env() { "$@"; }
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
else
    build_root=$(scripts/build-root.sh --suite "$dist" "${BUILD_PACKAGES[@]}" | tail -n 1)
    build_dir=/build
    mkdir -p "$PIP_CACHE_DIR"
    # pip reaches PyPI as it does here: through the machine's trusted CAs (a site's proxy CA
    # included) and its pip configuration and index, when it has them.
    trust=(--bind-ro=/etc/ssl/certs/ca-certificates.crt)
    [[ -e /etc/pip.conf ]] && trust+=(--bind-ro=/etc/pip.conf)
    [[ -n "${PIP_INDEX_URL:-}" ]] && trust+=(--setenv=PIP_INDEX_URL="$PIP_INDEX_URL")
    in_build_env() {
        systemd-nspawn --quiet --keep-unit --register=no --machine="bwdeb-$$" --directory="$build_root" \
            --volatile=overlay --pipe --timezone=off --link-journal=no --resolv-conf=copy-host \
            --bind="$tmp:/build" --bind="$PIP_CACHE_DIR:/var/cache/burrow-pip" "${trust[@]}" \
            --setenv=PIP_CACHE_DIR=/var/cache/burrow-pip --setenv=LANG=C.UTF-8 -- "$@"
    }
fi

src="$tmp/burrow-$base_version"
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
    printf 'burrow (%s) %s; urgency=medium\n\n' "$version" "$dist"
    printf '  * burrow %s for Debian %s, built by scripts/build-deb.sh.\n\n' \
        "$base_version" "${RELEASES[$dist]}"
    printf ' -- burrow developers <burrow@example.org>  %s\n' "$(date -R)"
} >"$src/debian/changelog"

start=$(date +%s)
log "building burrow $version for $dist in $src"
in_build_env sh -c 'cd "$1" && dpkg-buildpackage -us -uc -b' sh "$build_dir/burrow-$base_version" >"$tmp/build.log" 2>&1 \
    || { tail -n 40 "$tmp/build.log" >&2; exit 1; }
built="$tmp/burrow_${version}_${arch}.deb"
log "built in $(($(date +%s) - start)) s: $(du -h "$built" | cut -f1)"

report="dist/burrow_${version}_${arch}.lintian.txt"
status=0
in_build_env lintian --info --display-info --tag-display-limit 0 "$build_dir/$(basename "$built")" >"$report" 2>&1 || status=$?
grep -E '^[EW]: ' "$report" >&2 || log "lintian: no errors or warnings"
if ((status)); then
    log "lintian found errors (full report: $report)"
    exit 1
fi

mv -f "$built" "$deb"
printf '%s\n' "$hash" >"$stamp"
finish
