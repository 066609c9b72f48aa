#!/bin/bash
# Run ansible-lint with the production profile over ansible/ (roles, playbook, inventories).
#
# ansible-lint lives in a venv under /var/cache/burrow-ci/ansible-lint/<key>, where <key> hashes
# requirements-lint.txt and the Python version, so it is built once (about 30 s) and reused. The
# collections come from Debian's ansible package (offline: no Galaxy access is needed).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=/usr/bin/python3
collections=/usr/lib/python3/dist-packages

log() { printf 'ansible-lint: %s\n' "$*" >&2; }

if [[ ! -d "$collections/ansible_collections/community/rabbitmq" ]] || ! "$python" -m venv --help >/dev/null 2>&1; then
    log "installing Debian's ansible (community.rabbitmq) and python3-venv"
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends ansible python3-venv >/dev/null
fi

key=$( { cat "$here/requirements-lint.txt"; "$python" --version; } | sha256sum | cut -c1-16)
base=${BURROW_CI_CACHE:-/var/cache/burrow-ci}/ansible-lint
venv="$base/$key"
# The venv is built in place under a lock (its scripts name their own path, so it cannot be moved);
# the marker file is written last, so a build that died half-way is thrown away and redone.
if [[ ! -e "$venv/.complete" ]]; then
    mkdir -p "$base"
    exec 9>"$base/.$key.lock"
    flock 9
    if [[ ! -e "$venv/.complete" ]]; then
        log "building the venv $venv"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements-lint.txt"
        touch "$venv/.complete"
    fi
    exec 9>&-
fi

cd "$here"
PATH="$venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$collections" exec "$venv/bin/ansible-lint" --offline --profile production "$@"
