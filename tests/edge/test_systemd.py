"""Under systemd (``Type=notify``, ``WatchdogSec``) the agent says when it is ready, pings the watchdog while its
event loop turns, stops pinging when it is wedged, and says when it stops."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.systemd import SystemdNotifier
from tests.support.broker import Broker
from tests.support.stack import EdgeProcess
from varta.signing import generate_signing_key, public_key_text


def test_outside_systemd_there_is_no_notifier() -> None:
    assert SystemdNotifier.from_environ({}) is None
    assert SystemdNotifier.from_environ({"NOTIFY_SOCKET": "relative/path"}) is None


def test_the_watchdog_interval_and_abstract_sockets_are_read_from_the_environment() -> None:
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": "@varta", "WATCHDOG_USEC": "4000000"}, pid=42)
    assert notifier is not None
    assert notifier.address == "\0varta" and notifier.watchdog_s == 4.0
    for_another = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "7"}, pid=42
    )
    assert for_another is not None and for_another.watchdog_s is None  # the watchdog is another process's


def test_a_socket_nobody_listens_on_is_counted_not_raised(tmp_path: Path) -> None:
    notifier = SystemdNotifier(str(tmp_path / "nobody"))
    assert notifier.notify("READY=1") is False
    assert notifier.failed == 1 and notifier.sent == 0


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    try:
        yield sock, path
    finally:
        sock.close()


def receive(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    """Datagrams received within *seconds*, with their arrival time."""
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            got.append((time.monotonic(), sock.recv(4096).decode()))
    return got


def test_the_agent_notifies_ready_pings_the_watchdog_and_says_stopping(
    broker: Broker, tmp_path: Path, notify_socket: tuple[socket.socket, Path]
) -> None:
    sock, path = notify_socket
    edge = EdgeProcess(
        workdir=tmp_path / "edge",
        broker=broker,
        central_key=public_key_text(generate_signing_key().verify_key),
        environ={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"},  # WatchdogSec=1
    ).start()
    try:
        first: list[tuple[float, str]] = []
        deadline = time.monotonic() + 20
        while not first and time.monotonic() < deadline:
            first = receive(sock, 0.5)
        assert first, f"no notification from the agent:\n{edge.log_tail()}"
        assert first[0][1].startswith("READY=1\nSTATUS=node node-a running:")
        pings = [t for t, m in receive(sock, 2.6) if m == "WATCHDOG=1"]
        assert len(pings) >= 4  # every half interval (0.5 s)
        assert edge.proc is not None
        edge.proc.send_signal(signal.SIGSTOP)  # a wedged agent: its event loop does not turn
        wedged = [m for _, m in receive(sock, 1.5) if m == "WATCHDOG=1"]
        edge.proc.send_signal(signal.SIGCONT)
        assert wedged == []  # systemd would now restart it
        assert [m for _, m in receive(sock, 1.5) if m == "WATCHDOG=1"]  # pings resume
        edge.proc.send_signal(signal.SIGTERM)
        last = receive(sock, 3.0)
    finally:
        edge.stop()
    assert "STOPPING=1" in [m for _, m in last]
