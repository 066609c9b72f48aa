#!/usr/bin/env bash
# Install the pinned npm packages of examples/node (amqplib; @asyncapi/parser, which validates
# docs/asyncapi.yaml) and print the node_modules folder to put on NODE_PATH.
#
# `npm ci` from examples/node/package-lock.json runs once into $BURROW_CI_CACHE/node-<key> (default
# /var/cache/burrow-ci), keyed by the lock file and node's major version, so later runs and fresh
# clones reuse it. Install scripts are skipped: none of the packages needs one, and one of the
# parser's dependencies would phone home from its postinstall. Node and npm themselves come from
# scripts/bootstrap-dev.sh (Debian's nodejs and npm when `node` is missing).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
examples="$here/examples/node"
cache=${BURROW_CI_CACHE:-/var/cache/burrow-ci}
for tool in node npm; do
    if ! command -v "$tool" >/dev/null; then
        echo "node-deps: $tool is not installed: run scripts/bootstrap-dev.sh (it installs Debian's nodejs and npm)" >&2
        exit 1
    fi
done

major=$(node --version | cut -d. -f1)
key=$( { cat "$examples/package-lock.json"; echo "$major"; } | sha256sum | cut -c1-16)
folder="$cache/node-$key"
mkdir -p "$cache"
exec 9>"$cache/node.lock"
flock 9
if [ ! -e "$folder/.complete" ]; then
    rm -rf "$folder"
    mkdir -p "$folder"
    cp "$examples/package.json" "$examples/package-lock.json" "$folder/"
    echo "node-deps: npm ci into $folder (log: $folder/npm.log)" >&2
    if ! (cd "$folder" && SCARF_ANALYTICS=false npm ci --ignore-scripts --no-audit --no-fund) >"$folder/npm.log" 2>&1; then
        tail -n 30 "$folder/npm.log" >&2
        exit 1
    fi
    touch "$folder/.complete"
fi
echo "$folder/node_modules"
