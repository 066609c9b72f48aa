"""The nspawn harness does what the daemon and Ansible system tests rely on, and the .deb installs.

Each test boots real containers (systemd as PID 1) from the cached root: boot and state, SSH and an
Ansible ``setup`` run over a generated inventory, TCP between hosts in separate network namespaces,
reboots, teardown (also on failure and when a container refuses to power off), and the package.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .nspawn import DEFAULT_SUITE, RELEASES, HarnessError, Host, Network, SSHKey, hosts, reap_stale, wait_until, write_inventory

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

ANSIBLE_ENV = {
    **os.environ,
    "ANSIBLE_HOST_KEY_CHECKING": "False",
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
}


def _mounted(path: Path) -> bool:
    """True when ``path`` is a mount point in this mount namespace."""
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return any(line.split()[1] == str(path) for line in mounts)


def _link_exists(name: str) -> bool:
    """True when a network interface called ``name`` exists on the host."""
    return subprocess.run(["ip", "link", "show", name], check=False, capture_output=True).returncode == 0


def _assert_gone(workdir: Path, nspawn_pid: int, leader: int, machine: str) -> None:
    """Assert that a host left no process, mount, copy or veth behind."""
    assert not workdir.exists(), f"copy {workdir} left behind"
    assert not _mounted(workdir / "merged"), "overlay still mounted"
    for pid in (nspawn_pid, leader):
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} still alive"
    assert not _link_exists(f"vb-{machine}"), f"veth vb-{machine} left behind"
    assert not Path("/run/systemd/nspawn/propagate", machine).exists(), "nspawn state left in /run"


def _ansible(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``ansible`` ad-hoc command against the inventory; output captured."""
    return subprocess.run(
        ["ansible", "-i", str(inventory), "all", *args],
        check=False,
        env=ANSIBLE_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_boot_gives_systemd_as_pid1_and_a_running_system(nspawn_root: Path) -> None:
    started = time.monotonic()
    with Host("solo", nspawn_root) as host:
        boot_seconds = time.monotonic() - started
        assert host.run("cat /proc/1/comm").stdout.strip() == "systemd"
        assert host.run(["systemctl", "is-system-running"]).stdout.strip() == "running"
        assert host.run(["systemctl", "--failed", "--no-legend"]).stdout.strip() == ""
        assert host.run("hostname").stdout.strip() == "solo"
        assert host.run("systemd-detect-virt --container").stdout.strip() == "systemd-nspawn"
        assert len(host.run("cat /etc/machine-id").stdout.strip()) == 32
        assert host.run(["systemctl", "is-active", "ssh.service"]).stdout.strip() == "active"
        assert "Server listening" in host.journal("ssh.service")
        entries = host.journal_json("ssh.service", "SYSLOG_IDENTIFIER=sshd")
        assert entries and all(entry["_SYSTEMD_UNIT"] == "ssh.service" for entry in entries)
        failing = host.run("exit 3", check=False)
        assert failing.returncode == 3
        with pytest.raises(subprocess.CalledProcessError):
            host.run("exit 4")
    logger.info("boot to running took %.2f s", boot_seconds)
    assert boot_seconds < 30


def test_copy_in_and_write_file(nspawn_root: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.txt").write_text("alpha\n")
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho tool-ran\n")
    script.chmod(0o755)
    with Host("files", nspawn_root) as host:
        host.copy_in(tree, "/srv/tree")
        host.copy_in(script, "/usr/local/bin/tool")
        host.write_file("/etc/burrow-test/secret", "s3cret\n", mode=0o600)
        assert host.run("cat /srv/tree/sub/a.txt").stdout == "alpha\n"
        assert host.run("tool").stdout == "tool-ran\n"
        assert host.run("stat -c '%a %U' /etc/burrow-test/secret").stdout.strip() == "600 root"


def test_ssh_and_ansible_setup_reach_a_shared_network_host(nspawn_root: Path, ssh_key: SSHKey, tmp_path: Path) -> None:
    with Host("ansible-one", nspawn_root, ssh_key=ssh_key) as host:
        assert host.ssh_port != 22 and host.address == "127.0.0.1"
        host.wait_for_ssh()
        over_ssh = subprocess.run(host.ssh_command("hostname"), capture_output=True, text=True, check=True)
        assert over_ssh.stdout.strip() == "ansible-one"
        inventory = write_inventory(tmp_path / "inventory.yml", {"brokers": [host], "consumers": [host]})
        assert oct(inventory.stat().st_mode & 0o777) == "0o600"
        ping = _ansible(inventory, "-m", "ansible.builtin.ping")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert '"ping": "pong"' in ping.stdout
        setup = _ansible(
            inventory, "-m", "ansible.builtin.setup", "-a", "filter=ansible_service_mgr,ansible_distribution*"
        )
        assert setup.returncode == 0, setup.stdout + setup.stderr
        facts = json.loads(setup.stdout.split("=>", 1)[1])["ansible_facts"]
        assert facts["ansible_service_mgr"] == "systemd"
        assert facts["ansible_distribution"] == "Debian"
        assert facts["ansible_distribution_major_version"] == str(RELEASES[DEFAULT_SUITE][0])


def test_hosts_in_private_networks_reach_each_other_and_the_host(
    nspawn_root: Path, ssh_key: SSHKey, tmp_path: Path
) -> None:
    with hosts(nspawn_root, ["alpha", "beta"], ssh_key=ssh_key, private_network=True) as (alpha, beta):
        assert alpha.address != beta.address
        host_netns = os.readlink("/proc/self/ns/net")
        alpha_netns = os.readlink(f"/proc/{alpha.leader}/ns/net")
        beta_netns = os.readlink(f"/proc/{beta.leader}/ns/net")
        assert len({host_netns, alpha_netns, beta_netns}) == 3
        assert beta.address not in alpha.run("ip -o -4 addr").stdout
        # Units ordered after network-online.target get it once host0 is configured.
        alpha.systemctl("start", "network-online.target")
        assert alpha.systemctl("is-active", "systemd-networkd-wait-online.service").stdout.strip() == "active"

        token = f"probe-{os.getpid()}-{time.monotonic_ns()}"
        beta.write_file("/srv/www/probe.txt", token)
        beta.run(
            [
                "systemd-run",
                "--unit=probe-http",
                "--property=WorkingDirectory=/srv/www",
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "0.0.0.0",
            ]
        )
        fetch = "curl -sf --max-time 5 http://beta:8080/probe.txt"
        wait_until(lambda: alpha.run(fetch, check=False).stdout == token, 20, "alpha fetching from beta by name")
        with urllib.request.urlopen(f"http://{beta.address}:8080/probe.txt", timeout=5) as response:
            assert response.read().decode() == token
        banner = beta.run(
            [
                "python3",
                "-c",
                "import socket, sys; print(socket.create_connection((sys.argv[1], 22), 5).recv(64).decode())",
                "alpha",
            ]
        ).stdout
        assert banner.startswith("SSH-2.0-OpenSSH")

        # ... and the containers reach the host on its side of the bridge.
        assert alpha.network is not None
        host_side = alpha.network.host_address
        connect = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 5).sendall(b'hi')"
        with socket.create_server((host_side, 0)) as server:
            server.settimeout(10)
            alpha.run(["python3", "-c", connect, host_side, str(server.getsockname()[1])])
            connection, peer = server.accept()
            with connection:
                assert connection.recv(2) == b"hi" and peer[0] == alpha.address

        inventory = write_inventory(tmp_path / "inventory.yml", {"brokers": [alpha], "consumers": [beta]})
        ping = _ansible(inventory, "-m", "ansible.builtin.ping")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert ping.stdout.count("SUCCESS") == 2


def test_reboot_and_power_cycle_keep_the_root_and_enabled_units(nspawn_root: Path) -> None:
    unit = (
        "[Unit]\nDescription=probe\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    with Host("rebooter", nspawn_root) as host:
        host.write_file("/etc/systemd/system/probe.service", unit)
        host.systemctl("enable", "probe.service")
        host.write_file("/var/lib/probe-marker", "kept\n")
        first_boot = host.run("cat /proc/sys/kernel/random/boot_id").stdout
        first_leader = host.leader

        host.reboot()
        assert host.leader != first_leader
        assert host.run("cat /proc/sys/kernel/random/boot_id").stdout != first_boot
        assert host.run("cat /var/lib/probe-marker").stdout == "kept\n"
        assert host.systemctl("is-active", "probe.service").stdout.strip() == "active"

        host.stop()
        assert not host.running
        host.boot()
        assert host.systemctl("is-active", "probe.service").stdout.strip() == "active"
        assert host.run("cat /var/lib/probe-marker").stdout == "kept\n"


def test_teardown_leaves_nothing_even_when_the_test_fails(nspawn_root: Path) -> None:
    network = Network()
    bridge = network.bridge
    with network:
        with pytest.raises(RuntimeError, match="test failure"), Host("doomed", nspawn_root, network=network) as host:
            workdir, nspawn_pid, leader, machine = host.workdir, host.nspawn_pid, host.leader, host.machine
            assert _link_exists(f"vb-{machine}")
            raise RuntimeError("test failure")
        _assert_gone(workdir, nspawn_pid, leader, machine)
    assert not _link_exists(bridge)
    with open(network.lock_path, "w", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the subnet is free for the next network


def test_a_container_that_hangs_on_poweroff_is_killed_at_the_deadline(nspawn_root: Path) -> None:
    stubborn = "[Service]\nExecStart=/bin/sleep infinity\nExecStop=/bin/sleep infinity\nTimeoutStopSec=infinity\n"
    host = Host("stubborn", nspawn_root, stop_timeout=3)
    with host:
        host.write_file("/etc/systemd/system/stubborn.service", stubborn)
        host.systemctl("start", "stubborn.service")
        workdir, nspawn_pid, leader, machine = host.workdir, host.nspawn_pid, host.leader, host.machine
        started = time.monotonic()
    took = time.monotonic() - started
    _assert_gone(workdir, nspawn_pid, leader, machine)
    assert 3 <= took < 15, f"teardown took {took:.1f} s"


def test_harness_reports_a_boot_failure(nspawn_root: Path) -> None:
    host = Host("broken", nspawn_root, boot_timeout=10)
    (host.rootdir / "sbin" / "init").unlink()
    (host.rootdir / "lib" / "systemd" / "systemd").unlink()
    workdir = host.workdir
    with pytest.raises(HarnessError), host:
        pass
    assert not workdir.exists()


def test_package_installs_with_units_disabled_user_and_private_configs(nspawn_root: Path, burrow_deb: Path) -> None:
    with Host("pkg", nspawn_root) as host:
        host.copy_in(burrow_deb, "/tmp/burrow.deb")
        install = host.run("apt-get install -y /tmp/burrow.deb", env={"DEBIAN_FRONTEND": "noninteractive"})
        assert "Setting up burrow" in install.stdout
        assert host.run("dpkg-query -W -f='${Status}' burrow").stdout == "install ok installed"

        python = RELEASES[DEFAULT_SUITE][1]
        assert host.run("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'").stdout.strip() == python
        assert (
            host.run(
                "/opt/venvs/burrow/bin/python -c 'import burrow, pika, sdnotify, prometheus_client, daemon'"
            ).returncode
            == 0
        )
        help_text = host.run("burrow --help", check=False)
        logger.info("burrow --help exited %s:\n%s%s", help_text.returncode, help_text.stdout, help_text.stderr)
        assert help_text.returncode == 0, help_text.stderr
        for command in ("burrow-consumer", "burrow-producer"):
            assert host.run(f"readlink -f /usr/bin/{command}").stdout.strip() == f"/opt/venvs/burrow/bin/{command}"
            assert host.run(f"{command} --help", check=False).returncode == 0
        # Byte code ships compiled, hash-checked, with installed paths.
        pyc = host.run(f"ls /opt/venvs/burrow/lib/python{python}/site-packages/burrow/__pycache__/").stdout
        assert f"consumer.cpython-{python.replace('.', '')}.pyc" in pyc

        user = host.run("getent passwd burrow").stdout.strip().split(":")
        assert user[0] == "burrow" and int(user[2]) < 1000 and user[6] in ("/usr/sbin/nologin", "/bin/false")
        assert host.run("getent group burrow").returncode == 0
        for conffile in ("consumer", "producer"):
            path = f"/etc/burrow/{conffile}.toml"
            assert host.run(f"stat -c '%a %U %G' {path}").stdout.strip() == "640 root burrow"
            assert path in host.run("cat /var/lib/dpkg/info/burrow.conffiles").stdout
            assert "password_file" in host.run(f"cat {path}").stdout

        assert host.run("stat -c '%a %U' /etc/burrow/credentials").stdout.strip() == "700 root"

        listed = host.run("dpkg -L burrow").stdout.splitlines()
        # Where the release's systemd keeps its units: /usr/lib/systemd/system on Debian 13.
        units = sorted(Path(line).name for line in listed if line.startswith("/usr/lib/systemd/system/"))
        repo_units = Path(__file__).resolve().parents[2] / "systemd"
        assert units == sorted(p.name for p in repo_units.iterdir() if p.suffix in (".service", ".socket", ".timer"))
        assert units, "the package ships no systemd units"
        for name in units:
            if "@." in name:
                continue  # a template is never enabled by itself
            state = host.systemctl("is-enabled", name, check=False).stdout.strip()
            assert state == "disabled", f"{name} is {state}"
            assert host.systemctl("is-active", name, check=False).stdout.strip() == "inactive"

        # Reinstalling keeps the modes: dpkg-statoverride applies them on every unpack.
        host.run("apt-get install -y --reinstall /tmp/burrow.deb", env={"DEBIAN_FRONTEND": "noninteractive"})
        assert host.run("stat -c '%a %U %G' /etc/burrow/consumer.toml").stdout.strip() == "640 root burrow"
        host.run("apt-get purge -y burrow", env={"DEBIAN_FRONTEND": "noninteractive"})
        assert host.run("test -e /opt/venvs/burrow", check=False).returncode != 0
        assert host.run("dpkg-statoverride --list /etc/burrow/consumer.toml", check=False).returncode != 0


def test_reap_stale_cleans_up_after_a_killed_session(nspawn_root: Path) -> None:
    orphan_maker = (
        "import sys, time\n"
        "from system.nspawn import Host, Network\n"
        "network = Network()\n"
        "host = Host('orphan', __import__('pathlib').Path(sys.argv[1]), network=network)\n"
        "host.boot()\n"
        "print(host.workdir, host.nspawn_pid, host.leader, host.machine, network.bridge, flush=True)\n"
        "time.sleep(300)\n"
    )
    tests = Path(__file__).resolve().parents[1]
    # The harness imports the shared helpers of tests/support, as under pytest.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tests / "support"), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen(
        [sys.executable, "-c", orphan_maker, str(nspawn_root)], cwd=tests, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        workdir, nspawn_pid, leader, machine, bridge = child.stdout.readline().split()
    finally:
        child.kill()
        child.wait()
    assert Path(workdir).exists() and _link_exists(bridge), "the killed session left nothing to reap"
    reap_stale()
    _assert_gone(Path(workdir), int(nspawn_pid), int(leader), machine)
    assert not _link_exists(bridge)
