"""Shared fixtures: real services the tests start themselves."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import MOSQUITTO, Broker


def pytest_sessionstart(session: pytest.Session) -> None:
    """A missing service must fail the run, never skip it."""
    if not Path(MOSQUITTO).exists() and shutil.which("mosquitto") is None:
        raise pytest.UsageError("mosquitto is not installed: run .ci/run (apt-get install mosquitto)")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh Mosquitto on a free loopback port (anonymous, persistent sessions, nodelay)."""
    b = Broker(workdir=tmp_path / "mosquitto").start()
    try:
        yield b
    finally:
        b.stop()
