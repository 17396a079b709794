"""The playbooks and roles pass ansible-lint's production profile (offline: the collections come with ansible)."""

from __future__ import annotations

import subprocess

from tests.deploy.rootfs import ANSIBLE_DIR, BIN, ansible_env


def test_ansible_lint_production_profile_passes() -> None:
    result = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "--offline", "--nocolor"],
        check=False,
        cwd=ANSIBLE_DIR,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "Profile 'production' was required, and it passed" in result.stderr + result.stdout
