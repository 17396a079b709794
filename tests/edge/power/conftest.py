"""A real NUT server (dummy-ups + upsd) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nut import NutServer


@pytest.fixture
def nut(tmp_path: Path) -> Iterator[NutServer]:
    """``dummy-ups`` + ``upsd`` on a free port serving UPS ``dummy`` (starts OL); fails when NUT is missing."""
    server = NutServer(tmp_path / "nut").start()
    try:
        yield server
    finally:
        server.stop()
