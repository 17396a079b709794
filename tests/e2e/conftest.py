"""End-to-end fixtures: a real Mosquitto, a central process and edge processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.stack import CentralProcess


@pytest.fixture
def central(broker: Broker, tmp_path: Path) -> Iterator[CentralProcess]:
    """A running ``python -m central`` connected to the test broker."""
    proc = CentralProcess(workdir=tmp_path / "central", broker=broker)
    try:
        yield proc.start()
    finally:
        proc.stop()
