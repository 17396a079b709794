"""Fixtures for the Ansible tests: the controller's wheelhouse and PKI folder, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.rootfs import base_tarball, wheelhouse


@pytest.fixture(scope="session")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A controller folder: ``wheelhouse/`` (this checkout's release) and ``pki/`` (the CA site.yml creates)."""
    root = tmp_path_factory.mktemp("controller")
    wheelhouse(root / "wheelhouse")
    base_tarball()
    return root
