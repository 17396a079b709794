"""Restarting the kiosk's browser when its player page stops heart-beating, a limited number of times per boot.

:class:`BrowserRestarter` runs the restart command (``systemctl restart varta-kiosk.service`` by default) at most
``max_per_boot`` times per boot of the node and never twice within ``min_interval_s``; once the cap is reached the
caller raises an incident instead (someone has to visit). Every attempt counts, successful or not, and is recorded
*before* the command runs, in a state file keyed by the kernel's boot id (``/proc/sys/kernel/random/boot_id``): an
agent restart keeps the count, a reboot starts afresh. Times are ``CLOCK_MONOTONIC`` seconds, which every process of
one boot shares (and which the wall clock's jumps do not move), so they stay valid across agent restarts too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from edge.kiosks.commands import run_command
from edge.statefile import StateFile
from varta.aio import wait_for
from varta.throttle import LogThrottle

log = structlog.get_logger(__name__)

BOOT_ID_PATH: Final = Path("/proc/sys/kernel/random/boot_id")
_BOOT_ID_READ_TIMEOUT_S: Final = 5.0


class RestartSettings(BaseModel):
    """How the kiosk's browser is restarted, and how often it may be."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(
        default_factory=lambda: ["systemctl", "restart", "varta-kiosk.service"],
        min_length=1,
        description="restarts the kiosk's browser (argv, no shell)",
    )
    max_per_boot: int = Field(default=3, ge=0, le=100, description="restarts allowed per boot of the node")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="longest the restart command may take")
    min_interval_s: float = Field(default=60.0, ge=0, le=86_400, description="least time between two restarts")


class RestartStatus(StrEnum):
    """What :meth:`BrowserRestarter.restart` did."""

    RESTARTED = "restarted"  # the command ran and succeeded
    FAILED = "failed"  # the command ran and failed (or timed out, or is missing): see detail
    CAPPED = "capped"  # max_per_boot restarts already this boot: nothing ran; raise an incident
    TOO_SOON = "too_soon"  # the last restart was less than min_interval_s ago: nothing ran


@dataclass(frozen=True, slots=True)
class RestartOutcome:
    """The result of one restart request. ``count`` is the attempts this boot so far (this one included)."""

    status: RestartStatus
    count: int
    detail: str = ""
    retry_in_s: float | None = None
    """For ``too_soon``: how long until a restart is allowed."""


class RestartState(BaseModel):
    """The state file: restart attempts in one boot."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    boot_id: str = Field(min_length=1, max_length=64)
    count: int = Field(default=0, ge=0)
    last_at: float | None = Field(default=None, description="CLOCK_MONOTONIC seconds of the last attempt")
    last_reason: str = Field(default="", max_length=300)


class BrowserRestarter:
    """Restarts the kiosk browser within its per-boot cap (see the module docstring).

    *boot_id* fixes the boot id (tests); otherwise it is read from *boot_id_path*. When it cannot be read the cap
    holds for this agent run only (nothing is stored). *clock* gives CLOCK_MONOTONIC seconds.
    """

    def __init__(
        self,
        settings: RestartSettings,
        *,
        state_path: Path,
        boot_id: str | None = None,
        boot_id_path: Path = BOOT_ID_PATH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = StateFile(state_path, RestartState)
        self.boot_id_path = boot_id_path
        self.clock = clock
        self._boot_id = boot_id
        self._state: RestartState | None = None
        self._persist = True
        self._lock = asyncio.Lock()
        self._throttle = LogThrottle()

    async def restart(self, reason: str) -> RestartOutcome:
        """Restart the browser unless capped or too soon; never raises for a failing command or state file."""
        async with self._lock:
            state = await self._current()
            s = self.settings
            now = self.clock()
            if state.count >= s.max_per_boot:
                self._log_held("kiosk.restart_capped", now, count=state.count, reason=reason)
                return RestartOutcome(
                    RestartStatus.CAPPED, state.count, f"{state.count} of {s.max_per_boot} restarts used this boot"
                )
            if state.last_at is not None and 0 <= now - state.last_at < s.min_interval_s:
                wait_s = s.min_interval_s - (now - state.last_at)
                self._log_held("kiosk.restart_too_soon", now, count=state.count, reason=reason)
                return RestartOutcome(
                    RestartStatus.TOO_SOON,
                    state.count,
                    f"the last restart was {now - state.last_at:.0f} s ago (at least {s.min_interval_s:.0f} s apart)",
                    retry_in_s=wait_s,
                )
            state = state.model_copy(update={"count": state.count + 1, "last_at": now, "last_reason": reason[:300]})
            self._state = state
            await self._save(state)  # before running: a crash during the restart still counts it
            result = await run_command(s.command, timeout_s=s.timeout_s)
            if result.ok:
                log.warning("kiosk.browser_restarted", reason=reason, count=state.count, max_per_boot=s.max_per_boot)
                self._throttle.reset()
                return RestartOutcome(RestartStatus.RESTARTED, state.count)
            detail = result.describe()
            log.error("kiosk.browser_restart_failed", reason=reason, count=state.count, detail=detail)
            return RestartOutcome(RestartStatus.FAILED, state.count, detail)

    async def count(self) -> int:
        """Restart attempts this boot so far."""
        async with self._lock:
            return (await self._current()).count

    # ---------------------------------------------------------------------------------------------- state

    async def _current(self) -> RestartState:
        if self._state is not None:
            return self._state
        boot_id = await self._read_boot_id()
        if boot_id is None:
            self._persist = False
            self._state = RestartState(boot_id="unknown")
            return self._state
        try:
            stored = await self.store.load()
        except (OSError, TimeoutError) as exc:
            log.error("kiosk.restart_state_unreadable", path=str(self.store.path), error=str(exc)[:200])
            stored = None
        if stored is not None and stored.boot_id == boot_id:
            self._state = stored
        else:
            if stored is not None:
                log.info("kiosk.restart_count_reset", previous_boot=stored.boot_id, previous_count=stored.count)
            self._state = RestartState(boot_id=boot_id)
        return self._state

    async def _read_boot_id(self) -> str | None:
        if self._boot_id is not None:
            return self._boot_id
        try:
            text = await wait_for(asyncio.to_thread(self.boot_id_path.read_text), _BOOT_ID_READ_TIMEOUT_S)
        except (OSError, TimeoutError, UnicodeDecodeError) as exc:
            log.warning("kiosk.boot_id_unreadable", path=str(self.boot_id_path), error=str(exc)[:200])
            return None
        boot_id = text.strip()
        if not 0 < len(boot_id) <= 64:
            log.warning("kiosk.boot_id_unreadable", path=str(self.boot_id_path), error="empty or too long")
            return None
        self._boot_id = boot_id
        return boot_id

    async def _save(self, state: RestartState) -> None:
        if not self._persist:
            return
        try:
            await self.store.save(state)
        except (OSError, TimeoutError) as exc:  # the in-memory count still caps this agent run
            log.error("kiosk.restart_state_not_saved", path=str(self.store.path), error=str(exc)[:200])

    def _log_held(self, event: str, now: float, **fields: object) -> None:
        held = self._throttle.allow(event, now)
        if held is not None:
            log.warning(event, held_back=held, **fields)
