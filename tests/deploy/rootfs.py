"""Debian bookworm root filesystems for the Ansible tests: made once with debootstrap, then copied per host.

The first build (~70 s, ~260 MB, from the Debian mirror apt uses on this machine) is kept as a tarball under
``build/rootfs-cache/``; every test host is a fresh copy of it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = ROOT / "deploy" / "ansible"
CACHE = ROOT / "build" / "rootfs-cache"
TARBALL = CACHE / "bookworm-minbase.tar"
BIN = Path(sys.executable).parent


def _mirror() -> str:
    """The Debian mirror apt is configured with (debootstrap must use the same: no other host is reachable)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"(?:URIs:|deb)\s+(\S+/debian)\b(?!-security)", text):
            return match.group(1)
    return "http://deb.debian.org/debian"


def base_tarball() -> Path:
    """The debootstrap'd bookworm (minbase + python3), built once and cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if TARBALL.exists():
            return TARBALL
        work = CACHE / "bookworm"
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(work), _mirror()],
            check=True,
            capture_output=True,
            timeout=900,
        )
        partial = TARBALL.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(work), "-cf", str(partial), "."], check=True, timeout=300)
        partial.rename(TARBALL)
        shutil.rmtree(work, ignore_errors=True)
        return TARBALL


def new_host(path: Path) -> Path:
    """A fresh copy of the base rootfs at *path*."""
    path.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(path), "-xf", str(base_tarball())], check=True, timeout=300)
    # apt inside the chroot resolves the mirror through the host's resolver configuration.
    shutil.copy("/etc/resolv.conf", path / "etc" / "resolv.conf")
    # As in any image build: packages must not start services in the chroot.
    policy = path / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    return path


def wheelhouse(dest: Path) -> Path:
    """The varta wheel of this checkout and every pinned dependency's wheel (what the controller ships)."""
    dest.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv") or str(ROOT / "build" / "uv" / "bin" / "uv")
    subprocess.run([uv, "build", "--wheel", "-o", str(dest), "-q"], cwd=ROOT, check=True, timeout=300)
    requirements = dest / "requirements.txt"
    export = ["export", "--frozen", "--no-dev", "--extra", "alerts", "--extra", "kiosk", "--extra", "central"]
    export.append("--no-emit-project")
    exported = subprocess.run(
        [uv, *export, "--no-hashes", "-q"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    requirements.write_text(exported)
    download = ["download", "-q", "--only-binary", ":all:", "-r", str(requirements), "-d", str(dest)]
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", *download],
        check=True,
        timeout=900,
    )
    requirements.unlink()
    return dest


def ansible_env() -> dict[str, str]:
    """Environment for ansible-playbook from the project's venv."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(ANSIBLE_DIR / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_HOST_KEY_CHECKING"] = "0"
    return env
