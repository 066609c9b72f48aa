"""Fixtures of the fault tests: a 3-node loopback RabbitMQ cluster for each module that asks for one."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from burrow.tools.localbroker import RABBITMQ_SERVER
from burrow.tools.localcluster import LocalCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Three throwaway nodes clustered on loopback (about 20-40 s to form), stopped after the module."""
    if not Path(RABBITMQ_SERVER).exists():
        pytest.fail(f"{RABBITMQ_SERVER} is missing: scripts/bootstrap-dev.sh installs rabbitmq-server")
    with LocalCluster(3, name=f"burrow-cluster-{uuid.uuid4().hex[:6]}") as running:
        yield running
