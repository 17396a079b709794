"""Run the third-party ONVIF camera simulator ``ipycam`` (PyPI) inside a network namespace.

ipycam binds 0.0.0.0 (ONVIF, RTSP, WS-Discovery), so it runs in its own namespace joined to the host by a veth
pair: the test talks to it at ``10.78.x.2`` and nothing of the host's network is exposed. It needs an ``ffmpeg``
binary on PATH (Debian's) and root for ``ip netns``; a missing tool fails the test.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import wait_for_port

IP = shutil.which("ip") or "/usr/sbin/ip"
ONVIF_PORT = 8080
RTSP_PORT = 8554


@dataclass(frozen=True)
class Ipycam:
    """A running ipycam: its ONVIF device service URL and the credentials it was configured with."""

    address: str
    host: str
    username: str
    password: str
    log: Path


def _ip(*args: str) -> None:
    subprocess.run([IP, *args], check=True, capture_output=True, timeout=10)


@contextmanager
def running_ipycam(workdir: Path, *, username: str = "admin", password: str = "ipycam-pass") -> Iterator[Ipycam]:
    """Start ipycam in a fresh namespace (``10.78.x.2``, host side ``10.78.x.1``); stop and delete it on exit."""
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ipycam needs an ffmpeg binary on PATH (apt-get install ffmpeg)")
    if not Path(IP).exists():
        raise RuntimeError("iproute2 (ip) is needed to run ipycam in a network namespace")
    tag = secrets.token_hex(3)
    subnet = int(tag[:2], 16)
    ns, host_dev, ns_dev = f"varta-ipycam-{tag}", f"vi{tag}h", f"vi{tag}n"
    host_ip, cam_ip = f"10.78.{subnet}.1", f"10.78.{subnet}.2"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "camera_config.json"
    config.write_text(
        json.dumps(
            {
                "local_ip": cam_ip,
                "onvif_port": ONVIF_PORT,
                "rtsp_port": RTSP_PORT,
                "username": username,
                "password": password,
                "recording_enabled": False,
            }
        )
    )
    log = workdir / "ipycam.log"
    proc: subprocess.Popen[bytes] | None = None
    created = False
    try:
        _ip("netns", "add", ns)
        created = True
        _ip("link", "add", host_dev, "type", "veth", "peer", "name", ns_dev, "netns", ns)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_dev)
        _ip("link", "set", host_dev, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{cam_ip}/30", "dev", ns_dev)
        _ip("-n", ns, "link", "set", ns_dev, "up")
        argv = [sys.executable, "-m", "ipycam", "--config", str(config), "--source", "video", "--hw", "cpu"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [IP, "netns", "exec", ns, *argv],
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ipycam exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                wait_for_port(ONVIF_PORT, timeout=1.0, host=cam_ip)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        yield Ipycam(f"http://{cam_ip}:{ONVIF_PORT}/onvif/device_service", cam_ip, username, password, log)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if created:
            pids = subprocess.run([IP, "netns", "pids", ns], check=False, capture_output=True, text=True, timeout=10)
            for pid in pids.stdout.split():
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run([IP, "netns", "delete", ns], check=False, capture_output=True, timeout=10)
        subprocess.run([IP, "link", "delete", host_dev], check=False, capture_output=True, timeout=10)
