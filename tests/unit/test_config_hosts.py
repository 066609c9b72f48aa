"""``rabbitmq.hosts``: every node of a cluster, parsed strictly; ``host`` alone stays for one node."""

from __future__ import annotations

import pytest

from burrow.amqp.parameters import connection_parameters
from burrow.config import BrokerNode, RabbitMQConfig, TLSConfig, load_config, parse_config, to_toml
from burrow.errors import ConfigError

from processes import burrow, write_toml


def test_hosts_lists_every_node_with_the_default_port(tmp_path):
    path = write_toml(tmp_path, '[rabbitmq]\nport = 5673\nhosts = ["broker1", "broker2:5671", "[fd00::3]:5672", "[fd00::4]"]\n')
    nodes = load_config(path).rabbitmq.nodes()
    assert nodes == (
        BrokerNode("broker1", 5673),
        BrokerNode("broker2", 5671),
        BrokerNode("fd00::3", 5672),
        BrokerNode("fd00::4", 5673),
    )
    assert [str(node) for node in nodes] == ["broker1:5673", "broker2:5671", "[fd00::3]:5672", "[fd00::4]:5673"]


def test_host_alone_is_one_node(tmp_path):
    path = write_toml(tmp_path, '[rabbitmq]\nhost = "mq.example"\nport = 5671\n')
    assert load_config(path).rabbitmq.nodes() == (BrokerNode("mq.example", 5671),)
    assert RabbitMQConfig().nodes() == (BrokerNode("localhost", 5672),)


@pytest.mark.parametrize(
    "value, problem",
    [
        ('["a", "b"]\nhost = "c"', "set either rabbitmq.host (one node) or rabbitmq.hosts (every node of a cluster), not both"),
        ("[]", "must list at least one node"),
        ('"broker1"', "expected an array of strings, got string 'broker1'"),
        ('["broker1", 2]', "expected an array of strings"),
        ('["broker1:0"]', "entry 'broker1:0': port '0' must be a TCP port between 1 and 65535"),
        ('["broker1:amqp"]', "entry 'broker1:amqp': port 'amqp' must be a TCP port"),
        ('["broker1:"]', "entry 'broker1:': port '' must be a TCP port"),
        ('[":5672"]', "entry ':5672': the host must be a name or an address"),
        ('["bro ker"]', "entry 'bro ker': the host must be a name or an address"),
        ('["fd00::3"]', "entry 'fd00::3': write an IPv6 address in brackets"),
        ('["[fd00::3"]', "entry '[fd00::3': an IPv6 address in brackets needs its closing ']'"),
        ('["[broker1]:5672"]', "entry '[broker1]:5672': 'broker1' in brackets is not an IPv6 address"),
        ('["[fd00::3]5672"]', "entry '[fd00::3]5672': only ':port' may follow the ']'"),
        ('["b1", "b2:5672", "b1"]', "entry 'b1': lists node b1:5672 twice"),
    ],
)
def test_bad_hosts_name_the_key_and_the_entry(tmp_path, value, problem):
    path = write_toml(tmp_path, f"[rabbitmq]\nhosts = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: rabbitmq.hosts: {problem}"), str(caught.value)


@pytest.mark.parametrize("rabbitmq", [{"hosts": ["b1", "[fd00::3]:5671"]}, {"host": "mq"}])
def test_to_toml_round_trips_hosts_and_host(tmp_path, rabbitmq):
    config = parse_config({"rabbitmq": {**rabbitmq, "password": "x"}})
    assert load_config(write_toml(tmp_path, to_toml(config))).rabbitmq.nodes() == config.rabbitmq.nodes()


def test_check_config_accepts_a_cluster(tmp_path):
    path = write_toml(tmp_path, '[rabbitmq]\nhosts = ["broker1", "broker2:5671", "[fd00::3]:5672"]\n')
    result = burrow("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_connection_parameters_target_each_node_and_tls_checks_its_own_name():
    config = RabbitMQConfig(hosts=("broker1", "[fd00::3]:5671"), tls=TLSConfig(enabled=True))
    first, second = (connection_parameters(config, "t", node) for node in config.nodes())
    assert (first.host, first.port, first.ssl_options.server_hostname) == ("broker1", 5672, "broker1")
    assert (second.host, second.port, second.ssl_options.server_hostname) == ("fd00::3", 5671, "fd00::3")
    pinned = RabbitMQConfig(hosts=("broker1", "broker2"), tls=TLSConfig(enabled=True, server_hostname="mq.example"))
    assert {connection_parameters(pinned, "t", node).ssl_options.server_hostname for node in pinned.nodes()} == {"mq.example"}
