"""End-to-end fixtures: a real Mosquitto, a central process and edge processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.stack import CentralProcess, reap_all


@pytest.fixture(autouse=True)
def _reap_processes() -> Iterator[None]:
    """Whatever a test started is stopped when it ends, passed or failed."""
    yield
    reap_all()


@pytest.fixture
def central(broker: Broker, tmp_path: Path) -> Iterator[CentralProcess]:
    """A running ``python -m central`` connected to the test broker."""
    proc = CentralProcess(workdir=tmp_path / "central", broker=broker)
    try:
        yield proc.start()
    finally:
        proc.stop()
