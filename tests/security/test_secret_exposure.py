"""The broker password of a real ``burrow-consumer`` process, given the systemd way (a credential
file under ``$CREDENTIALS_DIRECTORY``), shows up nowhere else: not in ``ps`` arguments, the
process environment, its DEBUG log, the config file, the broker's view of the connection, reprs,
or any file others can read.
"""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from burrow.amqp.parameters import connection_parameters
from burrow.config import load_config

from waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]


def world_or_group_readable_files_containing(secret: bytes, roots: list[Path]) -> list[str]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            try:
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode) or info.st_size > 10_000_000:
                    continue
                if info.st_mode & 0o044 and secret in path.read_bytes():
                    found.append(f"{path} ({stat.filemode(info.st_mode)})")
            except OSError:
                continue
    return found


def test_password_of_a_running_consumer_stays_secret(local_broker, make_config, consumer_process, start_producer, tmp_path, monkeypatch):
    secret = f"pw-{uuid.uuid4().hex}"
    user = f"secret-{uuid.uuid4().hex[:6]}"
    local_broker.ctl("add_user", user, secret)
    local_broker.ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
    try:
        credentials = tmp_path / "credentials"
        credentials.mkdir(mode=0o700)
        (credentials / "amqp-password").write_text(secret + "\n")
        (credentials / "amqp-password").chmod(0o400)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
        base = make_config(rabbitmq={"username": user, "password": secret})
        proc = consumer_process(base, "secretive")
        # The file the daemon reads names the credential; the password itself is not in it.
        text = proc.config_path.read_text().replace(f'password = "{secret}"',
                                                    'password_file = "${CREDENTIALS_DIRECTORY}/amqp-password"')
        text = text.replace('level = "INFO"', 'level = "DEBUG"')
        proc.config_path.write_text(text)
        assert secret not in text and 'level = "DEBUG"' in text
        proc.start()
        proc.wait_ready()
        producer = start_producer(base)
        assert producer.call(b"psst", timeout=10) == b"Consumer processed: psst"
        pid = proc.process.pid

        assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        ps = subprocess.run(["ps", "-e", "-ww", "-o", "args"], capture_output=True, text=True, check=True).stdout
        assert "burrow-consumer" in ps and secret not in ps
        assert secret.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        wait_for(lambda: "Consumer ready" in proc.log(), 10, "the daemon's log")
        assert "DEBUG" in proc.log() and secret not in proc.log()
        connections = local_broker.ctl("list_connections", "user", "client_properties", "name").stdout
        assert user in connections and secret not in connections
        config = load_config(proc.config_path)
        assert config.rabbitmq.password == secret  # it was loaded...
        for shown in (repr(config), str(config), repr(config.rabbitmq), repr(connection_parameters(config.rabbitmq, "x"))):
            assert secret not in shown  # ...and never shown
        readable = world_or_group_readable_files_containing(
            secret.encode(), [tmp_path, local_broker.dir / "log"])
        assert readable == []
        # Files the daemon holds open are the credential (owner-only) or hold no secret at all.
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = Path(os.readlink(fd))
            if target.is_file() and target.stat().st_mode & 0o044:
                assert secret.encode() not in target.read_bytes(), target
    finally:
        local_broker.ctl("delete_user", user)
