"""The rollout's health check (deploy/ansible/tasks/rollout_health.yml) against a real central and a real node: a
batch passes only when its nodes report the release just installed online; otherwise the rollout stops."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.rootfs import ANSIBLE_DIR, BIN, ansible_env
from tests.support.broker import Broker
from tests.support.stack import CentralProcess, EdgeProcess, wait_until
from varta import __version__

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet(broker: Broker, tmp_path: Path) -> Iterator[CentralProcess]:
    central = CentralProcess(workdir=tmp_path / "central", broker=broker).start()
    edge = EdgeProcess(workdir=tmp_path / "edge", broker=broker, central_key=central.public_key()).start()
    try:
        with central.api() as api:
            wait_until(lambda: api.get("/api/v1/nodes/node-a").status_code == 200, 30, what="node-a at central")
        yield central
    finally:
        edge.stop()
        central.stop()


def check(central: CentralProcess, tmp_path: Path, version: str) -> subprocess.CompletedProcess[str]:
    """Run the health-check tasks for node-a, as site.yml does after a batch."""
    playbook = tmp_path / "health.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Batch health",
                    "hosts": "node-a",
                    "gather_facts": False,
                    "tasks": [{"ansible.builtin.import_tasks": str(ANSIBLE_DIR / "tasks" / "rollout_health.yml")}],
                }
            ]
        )
    )
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"node-a": {"ansible_connection": "local"}}}}))
    extra = {
        "varta_central_url": central.url,
        "varta_central_api_token": central.token,
        "varta_version": version,
        "varta_rollout_health_retries": 3,
        "varta_rollout_health_delay_s": 1,
    }
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), "-e", json.dumps(extra)],
        check=False,
        cwd=tmp_path,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_batch_passes_when_its_node_reports_the_new_release_online(fleet: CentralProcess, tmp_path: Path) -> None:
    result = check(fleet, tmp_path, __version__)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "failed=0" in result.stdout


def test_a_batch_fails_when_its_node_still_runs_another_release(fleet: CentralProcess, tmp_path: Path) -> None:
    result = check(fleet, tmp_path, "99.0.0")
    assert result.returncode != 0
    assert "failed=1" in result.stdout
