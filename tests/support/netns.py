"""Two network namespaces joined by a veth pair, with a multicast route: a private LAN for discovery tests.

Needs root and iproute2 (``ip``); a missing tool fails the test. Namespaces get unique names and are deleted on
exit (which also removes the veth pair), so nothing of the host's network is touched.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

IP = shutil.which("ip") or "/usr/sbin/ip"


def _ip(*args: str) -> None:
    subprocess.run([IP, *args], check=True, capture_output=True, timeout=10)


@dataclass(frozen=True)
class Namespace:
    """One end of the private LAN."""

    name: str
    address: str  # IPv4 address on the veth
    device: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """*argv* wrapped to run inside this namespace."""
        return [IP, "netns", "exec", self.name, *argv]


@contextmanager
def private_lan() -> Iterator[tuple[Namespace, Namespace]]:
    """Two namespaces ``a`` (10.77.x.1) and ``b`` (10.77.x.2) on one veth link, multicast routed over it."""
    tag = secrets.token_hex(3)
    subnet = int(tag[:2], 16)
    a = Namespace(f"varta-{tag}-a", f"10.77.{subnet}.1", f"vt{tag}a")
    b = Namespace(f"varta-{tag}-b", f"10.77.{subnet}.2", f"vt{tag}b")
    created: list[str] = []
    try:
        for ns in (a, b):
            _ip("netns", "add", ns.name)
            created.append(ns.name)
        _ip("link", "add", a.device, "netns", a.name, "type", "veth", "peer", "name", b.device, "netns", b.name)
        for ns in (a, b):
            _ip("-n", ns.name, "link", "set", "lo", "up")
            _ip("-n", ns.name, "addr", "add", f"{ns.address}/24", "dev", ns.device)
            _ip("-n", ns.name, "link", "set", ns.device, "up")
            _ip("-n", ns.name, "route", "add", "224.0.0.0/4", "dev", ns.device)
        yield a, b
    finally:
        for name in created:
            subprocess.run([IP, "netns", "delete", name], check=False, capture_output=True, timeout=10)
