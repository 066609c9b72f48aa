#!/bin/bash
# Build (or reuse) a cached Debian root for the systemd-nspawn test hosts and print its path.
#
# Usage: scripts/build-root.sh [--suite SUITE] [EXTRA_PACKAGE...]
#
# SUITE is a Debian codename, bookworm (12) or trixie (13); the default is $BURROW_ROOT_SUITE, or
# bookworm. The same script also makes the roots that scripts/build-deb.sh builds a package in for
# another release than the machine's.
#
# The root lives in /var/cache/burrow-ci/roots/<key>/rootfs, where <key> is a hash of this script,
# the suite and the package list, so changing any builds a new root and an unchanged set is reused
# at once.
# Concurrent callers take a lock per key; the root is built in a temporary folder next to its final
# place and renamed into it only when complete, so a crashed build never leaves a half root behind.
# Extra packages (e.g. rabbitmq-server for the end-to-end test) are part of the key. Their services
# are left as Debian ships them; a test that wants them stopped masks or stops them itself.
set -euo pipefail

CACHE_BASE=${BURROW_CI_CACHE:-/var/cache/burrow-ci}/roots
SUITE=${BURROW_ROOT_SUITE:-bookworm}
SUITES=(bookworm trixie)
MIRROR=${BURROW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What every test host needs: systemd as PID 1, sshd for Ansible, python3 (+ python3-apt for
# ansible.builtin.apt), sudo for become, adduser for packages that create system users (minbase
# lacks it), curl for the producer's Unix-socket API, procps for ps/pgrep.
BASE_PACKAGES=(systemd systemd-sysv dbus python3 python3-apt openssh-server iproute2 sudo ca-certificates
    adduser curl procps)

log() { printf 'build-root: %s\n' "$*" >&2; }

ensure_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    command -v flock >/dev/null || missing+=(util-linux)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >&2
    fi
}

if [[ "${1:-}" == --suite ]]; then
    SUITE=${2:?--suite needs a Debian codename}
    shift 2
fi
if [[ " ${SUITES[*]} " != *" $SUITE "* ]]; then
    log "unknown suite '$SUITE': use one of ${SUITES[*]}"
    exit 2
fi

packages=("${BASE_PACKAGES[@]}" "$@")
extras=("$@")
package_list=$(printf '%s\n' "${packages[@]}" | sort -u | paste -sd, -)
key=$( { cat "${BASH_SOURCE[0]}"; printf '%s\n%s\n' "$SUITE" "$package_list"; } | sha256sum | cut -c1-16)
final="$CACHE_BASE/$key"

if [[ -e "$final/rootfs/etc/os-release" ]]; then
    printf '%s\n' "$final/rootfs"
    exit 0
fi

ensure_tools
mkdir -p "$CACHE_BASE"
exec 9>"$CACHE_BASE/.$key.lock"
log "waiting for the lock on root $key"
flock 9
if [[ -e "$final/rootfs/etc/os-release" ]]; then
    # Another process built it while we waited for the lock.
    printf '%s\n' "$final/rootfs"
    exit 0
fi

work=$(mktemp -d "$CACHE_BASE/.build-$key.XXXXXX")
root="$work/rootfs"
trap 'umount "$root/proc" 2>/dev/null; rm -rf --one-file-system "$work"' EXIT
start=$(date +%s)
# The base packages come from debootstrap, in a root of their own (the one a call without extra
# packages returns); a root with extra packages starts as a copy of that cached base root, a
# matter of seconds instead of a second debootstrap, and apt installs the extras into it:
# debootstrap's --include configures what it adds in no reliable order (trixie's lintian failed that
# way), while apt orders their configuration by their dependencies.
if ((${#extras[@]})); then
    base_root=$("${BASH_SOURCE[0]}" --suite "$SUITE" | tail -n 1)
    log "copying the $SUITE base root $base_root"
    cp -a "$base_root" "$root"
    log "apt-get install ${extras[*]}"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # No service a package would start (rabbitmq-server) may run in the build's chroot.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    mount -t proc proc "$root/proc"
    { chroot "$root" apt-get update -qq && DEBIAN_FRONTEND=noninteractive chroot "$root" \
        apt-get install -y -qq --no-install-recommends "${extras[@]}"; } >"$work/apt.log" 2>&1 \
        || { tail -n 30 "$work/apt.log" >&2; exit 1; }
    umount "$root/proc"
    rm "$root/usr/sbin/policy-rc.d"
else
    log "debootstrap $SUITE with $package_list into $work"
    debootstrap --variant=minbase --include="$package_list" "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
fi

# Every copy must get its own machine id at boot (journald and D-Bus key on it): empty means
# "generate one", and systemd-firstboot is not run because the file exists.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# Each copy gets fresh SSH host keys at its first boot, before sshd starts (its own ExecStartPre
# runs `sshd -t`, which fails without keys), so that no two hosts share a key.
rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/systemd/system/burrow-ssh-host-keys.service" <<'EOF'
[Unit]
Description=Generate this host's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
ln -sf ../burrow-ssh-host-keys.service "$root/etc/systemd/system/multi-user.target.wants/burrow-ssh-host-keys.service"
# Root logs in with the key the harness installs, never with a password.
cat >"$root/etc/ssh/sshd_config.d/10-burrow-test.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
# Units that cannot work in a container without hardware or that only slow the boot down.
for unit in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# systemd-networkd is enabled per copy by the harness, and only in private-network mode, where it
# configures host0 from a .network file the harness writes; in shared-network mode it must never
# touch the host's own interfaces.
rm -f "$root/etc/systemd/system/multi-user.target.wants/systemd-networkd.service" \
    "$root/etc/systemd/system/sockets.target.wants/systemd-networkd.socket" \
    "$root/etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service"
printf 'burrow-test\n' >"$root/etc/hostname"
# A minbase root has no /etc/hosts, so "localhost" (the shipped configurations' broker) would not
# resolve; a real Debian install always has one.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
# The package lists stay so that apt can install local .debs offline inside private networks.
chroot "$root" apt-get clean
rm -rf "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
printf '%s\n' "${packages[@]}" >"$work/packages"

rm -rf --one-file-system "$final"
mv "$work" "$final"
trap - EXIT
log "root $key built in $(($(date +%s) - start)) s ($(du -sh "$final/rootfs" | cut -f1))"
printf '%s\n' "$final/rootfs"
