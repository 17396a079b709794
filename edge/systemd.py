"""systemd's service notification protocol (``sd_notify``), spoken directly: no library, nothing outside systemd.

The edge unit is ``Type=notify`` with ``WatchdogSec``: the agent says ``READY=1`` once every loop runs, pings
``WATCHDOG=1`` at half the watchdog interval while its loops are alive and its event loop turns (a wedged loop stops
the pings, and systemd restarts the agent), and says ``STOPPING=1`` on the way down. Outside systemd (no
``NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


@dataclass
class SystemdNotifier:
    """Sends notifications to the socket systemd named in ``NOTIFY_SOCKET``."""

    address: str
    watchdog_s: float | None = None  # the unit's WatchdogSec, when the watchdog is meant for this process
    sent: int = 0
    failed: int = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, pid: int | None = None) -> SystemdNotifier | None:
        """The notifier systemd asked for, or None when not started by systemd as a notify service."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address or address[0] not in "/@":
            return None
        if address[0] == "@":  # abstract namespace
            address = "\0" + address[1:]
        watchdog_s = None
        usec = env.get("WATCHDOG_USEC", "")
        owner = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not owner or owner == str(pid if pid is not None else os.getpid())):
            watchdog_s = int(usec) / 1_000_000
        return cls(address, watchdog_s)

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False (counted, logged) when systemd did not take it."""
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(message, self.address)
        except OSError as exc:
            self.failed += 1
            if self.failed == 1 or self.failed % 100 == 0:
                log.warning("systemd.notify_failed", error=str(exc), failures=self.failed)
            return False
        self.sent += 1
        return True

    async def run_watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping ``WATCHDOG=1`` every half interval while *healthy()*; stop pinging (and say why) when it is not."""
        if self.watchdog_s is None:
            return
        interval = self.watchdog_s / 2
        withheld = False
        while True:
            await asyncio.sleep(interval)
            if healthy():
                if withheld:
                    log.info("systemd.watchdog_resumed")
                    withheld = False
                self.notify("WATCHDOG=1")
            elif not withheld:
                withheld = True
                log.error("systemd.watchdog_withheld", reason="a supervised loop has ended")
                self.notify("STATUS=a loop of the agent has ended; waiting for the watchdog")


def notifier_or_none() -> SystemdNotifier | None:
    """The notifier for this process, logging once what systemd asked for."""
    notifier = SystemdNotifier.from_environ()
    if notifier is not None:
        log.info("systemd.notify", watchdog_s=notifier.watchdog_s)
    return notifier
