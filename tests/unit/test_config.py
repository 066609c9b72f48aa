"""Config loading: every error names the file, the key and the problem; the CLI prints one line."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from burrow.config import load_config
from burrow.errors import ConfigError

from processes import burrow, write_toml

EXAMPLE = Path(__file__).resolve().parents[2] / "daemons" / "burrow" / "examples" / "burrow.toml"


def test_example_file_loads_with_every_default():
    config = load_config(EXAMPLE)
    assert config.consumer.handler == "burrow.handlers:echo"
    assert config.producer.reply_mode == "queue"
    assert config.topology.queue_type == "quorum"


def test_required_keys_work(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    path = write_toml(tmp_path, f"""
[rabbitmq]
host = "mq.example"
port = 5673
virtual_host = "burrow"
username = "svc"
password_file = "{secret}"
[consumer]
handler = "burrow.handlers:echo"
concurrency = 3
[producer]
request_timeout = 2.5
reply_mode = "direct"
""")
    config = load_config(path)
    assert (config.rabbitmq.host, config.rabbitmq.port, config.rabbitmq.virtual_host) == ("mq.example", 5673, "burrow")
    assert config.rabbitmq.password == "s3cret"
    assert config.consumer.concurrency == 3 and config.consumer.effective_prefetch(3) == 24
    assert config.producer.request_timeout == 2.5 and config.producer.reply_mode == "direct"


@pytest.mark.parametrize(
    "text, key, problem",
    [
        ("[rabit]\nhost = 'x'\n", "rabit", "unknown section"),
        ("[rabbitmq]\nhots = 'x'\n", "rabbitmq.hots", "unknown key"),
        ("[rabbitmq]\nport = '5672'\n", "rabbitmq.port", "expected an integer, got string '5672'"),
        ("[rabbitmq]\nport = 70000\n", "rabbitmq.port", "between 1 and 65535"),
        ("[rabbitmq]\nport = true\n", "rabbitmq.port", "expected an integer, got boolean"),
        ("[consumer]\nconcurrency = 0\n", "consumer.concurrency", "must be between 1 and 1024, got 0"),
        ("[consumer]\nconcurrency = 1.5\n", "consumer.concurrency", "expected an integer"),
        ("[consumer]\nhandler = 'nocolon'\n", "consumer.handler", "module:function"),
        ("[consumer]\ncontent_types = 'text/plain'\n", "consumer.content_types", "array of strings"),
        ("[producer]\nreply_mode = 'fast'\n", "producer.reply_mode", "'queue', 'direct'"),
        ("[producer]\nrequest_timeout = 'soon'\n", "producer.request_timeout", "expected a number"),
        ("[topology]\nqueue_type = 'stream'\n", "topology.queue_type", "'quorum', 'classic'"),
        ("[rabbitmq.tls]\nenabled = 'yes'\n", "rabbitmq.tls.enabled", "expected a boolean"),
        ("rabbitmq = 3\n", "rabbitmq", "expected a table"),
        ("[logging]\nlevel = 'LOUD'\n", "logging.level", "DEBUG"),
        ("[rabbitmq]\npassword = 'a'\npassword_file = '/x'\n", "rabbitmq.password_file", "not both"),
        ("[rabbitmq]\npassword_file = '/nonexistent/pw'\n", "rabbitmq.password_file", "does not exist"),
        ("[rabbitmq]\npassword_file = '${BURROW_UNSET_VAR}/pw'\n", "rabbitmq.password_file", "BURROW_UNSET_VAR is not set"),
    ],
)
def test_errors_name_file_key_and_problem(tmp_path, text, key, problem):
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message


def test_password_file_expands_credentials_directory(tmp_path, monkeypatch):
    (tmp_path / "amqp-password").write_text("from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    path = write_toml(tmp_path, '[rabbitmq]\npassword_file = "${CREDENTIALS_DIRECTORY}/amqp-password"\n')
    assert load_config(path).rabbitmq.password == "from-credential"


def _load_as_nobody(path: Path) -> str:
    """Load ``path`` in a forked child that dropped to ``nobody`` (as root, every file is readable)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop privileges, report the error text, never return into pytest
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            load_config(path)
            message = "loaded"
        except ConfigError as exc:
            message = str(exc)
        except BaseException as exc:  # report anything else to the parent as text
            message = f"unexpected {type(exc).__name__}: {exc}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    return message


def test_unreadable_password_file(tmp_path):
    shared = Path(tempfile.mkdtemp(prefix="burrow-cfg-"))
    try:
        shared.chmod(0o755)
        secret = shared / "pw"
        secret.write_text("x")
        secret.chmod(0)
        path = shared / "burrow.toml"
        path.write_text(f'[rabbitmq]\npassword_file = "{secret}"\n')
        path.chmod(0o644)
        if os.geteuid() == 0:
            message = _load_as_nobody(path)
        else:
            with pytest.raises(ConfigError) as caught:
                load_config(path)
            message = str(caught.value)
        assert message == f"{path}: rabbitmq.password_file: {secret} is not readable by this user"
    finally:
        shutil.rmtree(shared)


@pytest.mark.parametrize(
    "text, problem",
    [("not = [toml", "not valid TOML"), (None, "file does not exist")],
)
def test_file_level_errors(tmp_path, text, problem):
    path = tmp_path / "burrow.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_config(path)


def test_check_config_ok():
    result = burrow("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_error_is_one_line_without_traceback(tmp_path):
    path = write_toml(tmp_path, "[consumer]\nconcurrency = 'many'\n")
    result = burrow("check-config", str(path))
    assert result.returncode == 78  # EX_CONFIG
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr
    assert f"{path}: consumer.concurrency: expected an integer, got string 'many'" in result.stderr


def test_check_config_reports_a_handler_that_does_not_import(tmp_path):
    path = write_toml(tmp_path, "[consumer]\nhandler = 'no_such_module_xyz:run'\n")
    result = burrow("check-config", str(path))
    assert result.returncode == 78  # EX_CONFIG
    assert f"{path}: consumer.handler: handler 'no_such_module_xyz:run': cannot import" in result.stderr
    assert "Traceback" not in result.stderr


def test_prefixed_topology_is_the_default_layout_under_another_prefix():
    from burrow.config import TopologyConfig

    assert TopologyConfig.prefixed("burrow") == TopologyConfig()
    other = TopologyConfig.prefixed("bench.direct", queue_type="classic")
    assert (other.request_exchange, other.request_queue, other.dead_letter_queue) == (
        "bench.direct.x.requests", "bench.direct.requests", "bench.direct.dead")
    assert other.queue_type == "classic"
