#!/bin/bash
# Install what the systemd-nspawn system tests and the package build need on a fresh Debian 12 host.
#
# systemd-container/debootstrap boot the test hosts, ansible (Debian's, with its collections such as
# community.rabbitmq) drives them over SSH, dh-virtualenv/lintian build and check the .deb, and
# prometheus brings promtool (metrics, rules and dashboard checks) and the server the monitoring test runs.
# Packages already installed are skipped, so a second run costs a dpkg query only.
set -euo pipefail

packages=(systemd-container debootstrap util-linux iproute2 openssh-client tar
    ansible ansible-core vagrant
    dh-virtualenv debhelper dpkg-dev python3-venv python3-dev build-essential fakeroot lintian
    prometheus)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$package")
done
if ((${#missing[@]})); then
    printf 'install-system-test-deps: installing %s\n' "${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
