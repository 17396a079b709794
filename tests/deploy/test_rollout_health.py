"""What the edge play asks of a real central, with a real node: the rollout's health check
(deploy/ansible/tasks/rollout_health.yml: a batch passes only when its nodes report the release just installed
online) and the enrolment of the node's sealing key (roles/edge/tasks/enrol_key.yml)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.rootfs import ANSIBLE_DIR, BIN, ansible_env
from tests.support.broker import Broker
from tests.support.stack import CentralProcess, EdgeProcess, wait_until
from varta import __version__

pytestmark = pytest.mark.slow


@dataclass
class Fleet:
    central: CentralProcess
    edge: EdgeProcess


@pytest.fixture
def fleet(broker: Broker, tmp_path: Path) -> Iterator[Fleet]:
    central = CentralProcess(workdir=tmp_path / "central", broker=broker).start()
    edge = EdgeProcess(workdir=tmp_path / "edge", broker=broker, central_key=central.public_key()).start()
    try:
        with central.api() as api:
            wait_until(lambda: api.get("/api/v1/nodes/node-a").status_code == 200, 30, what="node-a at central")
        yield Fleet(central, edge)
    finally:
        edge.stop()
        central.stop()


def run_tasks(tmp_path: Path, tasks: list[dict[str, Any]], extra: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run *tasks* for host node-a (a local connection) with *extra* vars."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"name": "Edge", "hosts": "node-a", "gather_facts": False, "tasks": tasks}]))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"node-a": {"ansible_connection": "local"}}}}))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), "-e", json.dumps(extra)],
        check=False,
        cwd=tmp_path,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def check(central: CentralProcess, tmp_path: Path, version: str) -> subprocess.CompletedProcess[str]:
    """Run the health-check tasks for node-a, as site.yml does after a batch."""
    tasks = [{"ansible.builtin.import_tasks": str(ANSIBLE_DIR / "tasks" / "rollout_health.yml")}]
    extra = {
        "varta_central_url": central.url,
        "varta_central_api_token": central.token,
        "varta_version": version,
        "varta_rollout_health_retries": 3,
        "varta_rollout_health_delay_s": 1,
    }
    return run_tasks(tmp_path, tasks, extra)


def test_a_batch_passes_when_its_node_reports_the_new_release_online(fleet: Fleet, tmp_path: Path) -> None:
    result = check(fleet.central, tmp_path, __version__)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "failed=0" in result.stdout


def test_a_batch_fails_when_its_node_still_runs_another_release(fleet: Fleet, tmp_path: Path) -> None:
    result = check(fleet.central, tmp_path, "99.0.0")
    assert result.returncode != 0
    assert "failed=1" in result.stdout


def enrol(central: CentralProcess, tmp_path: Path, public_key: str, token: str) -> subprocess.CompletedProcess[str]:
    """The edge role's enrolment tasks for node-a, as site.yml runs them after installing the agent."""
    tasks = [{"ansible.builtin.include_tasks": str(ANSIBLE_DIR / "roles" / "edge" / "tasks" / "enrol_key.yml")}]
    extra = {
        "varta_central_url": central.url,
        "varta_central_api_token": token,
        "varta_site": "test-site",
        "edge_node_id": "node-a",
        "edge_public_key": public_key,
    }
    return run_tasks(tmp_path, tasks, extra)


def test_the_nodes_own_key_is_enrolled_once_and_matches_what_the_node_announces(fleet: Fleet, tmp_path: Path) -> None:
    pubkey = subprocess.run(
        [str(BIN / "varta"), "edge", "pubkey", "--config", str(fleet.edge.workdir / "edge.yaml")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    public_key = pubkey.stdout.strip()

    first = enrol(fleet.central, tmp_path, public_key, fleet.central.admin_token)
    assert first.returncode == 0, first.stdout[-4000:]
    assert "changed=1" in first.stdout
    second = enrol(fleet.central, tmp_path, public_key, fleet.central.admin_token)
    assert second.returncode == 0 and "changed=0" in second.stdout, second.stdout[-4000:]

    with fleet.central.api() as api:
        view = api.get("/api/v1/nodes/node-a/box-key").json()
    assert view["enrolled"] is True and view["public_key"] == public_key
    assert view["announced_key"] == public_key and view["mismatch"] is False  # the key the agent itself uses


def test_enrolment_with_a_non_admin_token_fails_the_host(fleet: Fleet, tmp_path: Path) -> None:
    result = enrol(fleet.central, tmp_path, "A" * 43 + "=", fleet.central.token)
    assert result.returncode != 0
    assert "failed=1" in result.stdout and "403" in result.stdout
