"""The kiosk this node drives: player server, what the screen shows, and the browser's health.

:class:`KioskManager` is built by the edge agent when ``kiosk.enabled`` and run as one supervised loop. It serves
the player page (:mod:`edge.kiosks.server`), feeds the :class:`~edge.kiosks.director.KioskDirector` (content,
local sirens, official alerts), and watches the page's heartbeats: none for ``heartbeat_timeout_s`` and the
browser is restarted with ``kiosk.restart.command`` — at most ``restart.max_per_boot`` times a boot, then a critical
``kiosk.browser_restart_capped`` event (central opens an incident) and the kiosk is reported ``offline``.

When an alert reaches the screen the page says so (``/player/shown``); the node then takes a screenshot through the
browser's DevTools port and reports ``kiosk.takeover_shown`` with the screenshot's sha256 as proof.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import structlog

from edge.commands import CommandFailed, CommandRegistry
from edge.devices import DeviceSink
from edge.kiosks.cdp import CdpClient, CdpError
from edge.kiosks.clock import clock_synchronised
from edge.kiosks.config import KioskSettings
from edge.kiosks.content import ContentCache, ContentRefused, RefusedReason
from edge.kiosks.director import KioskDirector, OfficialAlert
from edge.kiosks.download import Downloader, DownloadError, DownloadReason
from edge.kiosks.restart import BrowserRestarter, RestartStatus
from edge.kiosks.screen import ScreenError, screen_from_settings
from edge.kiosks.server import Heartbeat, Played, PlayerServer, Shown
from edge.outbox import MessageClass
from varta.contract import (
    CameraRef,
    Channel,
    Command,
    CommandType,
    DeviceKind,
    DeviceStatus,
    Envelope,
    KioskAlertsParams,
    KioskContentParams,
    Severity,
    SirenState,
    Snapshot,
    utcnow,
)
from varta.kiosk_manifest import Manifest, ManifestError
from varta.supervise import supervise

log = structlog.get_logger(__name__)

SCHEDULE_TICK_S = 15.0
SCREENSHOT_QUALITY = 70


class KioskHost(DeviceSink, Protocol):
    """What the kiosk needs from the edge agent (:class:`~edge.agent.EdgeAgent` provides it)."""

    def envelope(self) -> dict[str, Any]: ...

    async def publish_message(
        self, channel: Channel, message: Envelope, *, device: str | None = None, cls: MessageClass | None = None
    ) -> int: ...


CLOCK_CHECK_S = 300.0
CONTENT_RETRY_S = 30.0
CONTENT_RETRY_MAX_S = 1800.0


@dataclass
class KioskHealth:
    """What the node knows of its kiosk's browser."""

    last_beat: float | None = None
    """Monotonic time of the last heartbeat."""
    beat: Heartbeat | None = None
    heartbeats: int = 0
    page_errors: int = 0
    restarts: int = 0
    capped: bool = False
    restart_pending: bool = False
    """Restarted (or a restart failed) and no heartbeat since."""
    restart_detail: str = ""
    recent_errors: list[str] = field(default_factory=list)
    errors_at: float | None = None
    """Monotonic time of the last heartbeat that carried page errors."""
    clock_synced: bool | None = None
    clock_detail: str = ""
    watch_from: float = field(default_factory=time.monotonic)
    """Heartbeats are expected from here on (start, or the last restart plus its grace)."""


class KioskManager:
    """See the module docstring. *clock* (monotonic seconds) is injectable for tests."""

    def __init__(
        self,
        settings: KioskSettings,
        host: KioskHost,
        *,
        central_public_keys: list[str],
        kiosk_id: str,
        data_dir: Path,
        boot_id: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.host = host
        self.sink: DeviceSink = host
        self.monotonic = monotonic
        self.director = KioskDirector(settings)
        self.content = ContentCache(
            settings.content_dir, central_public_keys, kiosk_id=kiosk_id, groups=settings.groups
        )
        self.server = PlayerServer(
            self.director,
            self.content,
            host=settings.listen_host,
            port=settings.listen_port,
            on_heartbeat=self._heartbeat,
            on_shown=self._shown,
        )
        self.restarter = BrowserRestarter(
            settings.restart,
            state_path=data_dir / "kiosk-restarts.json",
            boot_id=boot_id,
        )
        self.cdp = CdpClient(port=settings.devtools_port, timeout_s=5.0)
        self.screen = screen_from_settings(settings.screen)
        self.screen_on: bool | None = None
        """What the screen was last switched to (None: not yet)."""
        self.screen_errors: collections.Counter[str] = collections.Counter()
        self.health = KioskHealth(watch_from=monotonic())
        self.downloader = Downloader(settings.download, work_dir=settings.content_dir / "downloads")
        self.download_failures: collections.Counter[str] = collections.Counter()
        self.screenshots_sent = 0
        self.screenshot_failures: collections.Counter[str] = collections.Counter()
        self._pending_content: KioskContentParams | None = None
        self._content_wake = asyncio.Event()
        self.proofs: list[dict[str, Any]] = []
        self.play_log: collections.deque[Played] = collections.deque(maxlen=1000)
        """Proof of play: what was on screen, when (newest last)."""
        self.plays_by_day: collections.Counter[str] = collections.Counter()
        self.touch_sessions: collections.Counter[str] = collections.Counter()
        """Touch sessions per local day (a touch after the page had returned to its loop starts one)."""
        self.day_items: dict[str, list[float]] = {}
        """Today's proof of play: item → [plays, seconds on screen]; reported and reset at local midnight."""
        self._report_day = self._local_day()
        self._touching = False
        self._session_touch: datetime | None = None
        self.refused: collections.Counter[str] = collections.Counter()
        """Content refused, by ``reason:code``."""
        self._changed_at: dict[int, float] = {}
        self._proved: set[str] = set()
        self._wake = asyncio.Event()
        self._last_status: tuple[object, ...] | None = None
        self._clock_checked_at: float | None = None

    def register(self, registry: CommandRegistry) -> None:
        """Add the kiosk's commands to the agent's registry."""
        registry.register(CommandType.KIOSK_ALERTS_SET.value, self._cmd_alerts_set)
        registry.register(CommandType.KIOSK_CONTENT_UPDATE.value, self._cmd_content_update)
        registry.register(CommandType.KIOSK_SCREENSHOT.value, self._cmd_screenshot, concurrent=True)

    async def _cmd_screenshot(self, command: Command) -> dict[str, Any]:
        params = CameraRef.model_validate(command.params)
        if params.device_id != self.settings.device_id:
            raise CommandFailed(f"this node's kiosk is {self.settings.device_id}, not {params.device_id}")
        try:
            return await self.send_screenshot("on_demand")
        except CdpError as exc:
            raise CommandFailed(f"no screenshot: {exc.reason}: {exc.detail}"[:300]) from None

    async def send_screenshot(self, purpose: Literal["periodic", "on_demand"]) -> dict[str, Any]:
        """Take what the screen shows (DevTools) and send it to central as a ``screen`` snapshot."""
        shot = await self.cdp.screenshot(format="jpeg", quality=SCREENSHOT_QUALITY)
        message = Snapshot(
            **self.host.envelope(),
            device_id=self.settings.device_id,
            taken_at=shot.taken_at,
            source="screen",
            purpose=purpose,
            width=shot.width,
            height=shot.height,
            data=base64.b64encode(shot.data).decode(),
        )
        seq = await self.host.publish_message(Channel.SNAPSHOT, message, device=self.settings.device_id)
        self.screenshots_sent += 1
        return {"seq": seq, "sha256": shot.sha256, "width": shot.width, "height": shot.height, "bytes": len(shot.data)}

    async def _screenshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.screenshot_interval_s)
            if self.health.last_beat is None:
                continue  # nothing on screen yet
            try:
                await self.send_screenshot("periodic")
            except CdpError as exc:
                self.screenshot_failures[str(exc.reason)] += 1

    async def _cmd_content_update(self, command: Command) -> dict[str, Any]:
        params = KioskContentParams.model_validate(command.params)
        if params.device_id != self.settings.device_id:
            raise CommandFailed(f"this node's kiosk is {self.settings.device_id}, not {params.device_id}")
        current = self.content.current_version
        if current is not None and params.version <= current:
            return {"accepted": False, "version": current, "detail": "this version or a newer one is already playing"}
        pending = self._pending_content
        if pending is None or params.version > pending.version:
            self._pending_content = params
            self._content_wake.set()
        return {"accepted": True, "version": params.version}

    async def _content_loop(self) -> None:
        """Download and install the newest content central announced; retried with back-off over a flaky link."""
        failures = 0
        while True:
            await self._content_wake.wait()
            self._content_wake.clear()
            params = self._pending_content
            if params is None:
                continue
            outcome = await self._update_content(params)
            if outcome == "retry":
                failures += 1
                delay = min(CONTENT_RETRY_MAX_S, CONTENT_RETRY_S * 2 ** (failures - 1))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._content_wake.wait(), delay)  # a newer version wakes us at once
                self._content_wake.set()
                continue
            failures = 0
            if self._pending_content is params:
                self._pending_content = None

    async def _update_content(self, params: KioskContentParams) -> str:
        """``done`` (installed or refused for good) or ``retry`` (the download failed: try again later)."""
        try:
            signed, files = await self.downloader.fetch_all(params, self.content.central_public_keys, self._have)
        except DownloadError as exc:
            self.download_failures[str(exc.reason)] += 1
            log.warning(
                "kiosk.download_failed", version=params.version, reason=str(exc.reason), detail=exc.detail[:200]
            )
            if self.download_failures[str(exc.reason)] == 1 or exc.reason == DownloadReason.HASH_MISMATCH:
                await self.sink.emit_event(
                    "kiosk.content_download_failed",
                    Severity.WARNING,
                    self.settings.device_id,
                    f"downloading content version {params.version} failed ({exc.reason}): {exc.detail}"[:500],
                    {"version": params.version, "reason": str(exc.reason), "detail": exc.detail[:300]},
                )
            return "retry"
        except ManifestError as exc:
            await self._refused(ContentRefused(RefusedReason.MANIFEST, str(exc.reason), exc.detail))
            return "done"
        await self.install_content(signed, files)
        await asyncio.to_thread(self.downloader.cleanup, set())
        return "done"

    def _have(self, sha256: str, size: int) -> bool:
        blob = self.content.blob(sha256)
        return blob.is_file() and blob.stat().st_size == size

    async def _cmd_alerts_set(self, command: Command) -> dict[str, Any]:
        params = KioskAlertsParams.model_validate(command.params)
        if params.device_id != self.settings.device_id:
            raise CommandFailed(f"this node's kiosk is {self.settings.device_id}, not {params.device_id}")
        wanted = {
            a.alert_id: OfficialAlert(alert_id=a.alert_id, region=a.region, drill=a.drill, started_at=a.started_at)
            for a in params.alerts
        }
        self.director.set_official_alerts(wanted)
        self._note_change()
        state = self.director.state
        return {"mode": state.mode, "generation": state.generation, "alerts": len(wanted)}

    # ------------------------------------------------------------------------------------------------ inputs

    def siren_changed(self, device_id: str, state: SirenState) -> None:
        """From the siren monitor, at once (no network): a sounding siren takes the screen over."""
        self.director.siren_changed(device_id, state == SirenState.SOUNDING)
        self._note_change()

    def official_alert(self, alert: OfficialAlert) -> None:
        """Central's alert for this kiosk's area."""
        self.director.official_alert(alert)
        self._note_change()

    def official_all_clear(self, alert_id: str | None = None) -> None:
        """Central's all-clear."""
        self.director.official_all_clear(alert_id)
        self._note_change()

    async def install_content(self, signed: bytes, files: Mapping[str, Path]) -> Manifest | None:
        """Install new content (see :meth:`ContentCache.install`) and play it; refused content is reported as a
        ``kiosk.content_refused`` event and the kiosk keeps playing what it had. Returns the manifest or None."""
        try:
            manifest = await self.content.install(signed, files)
        except ContentRefused as exc:
            await self._refused(exc)
            return None
        self.content.use(manifest)
        self.director.set_manifest(manifest)
        self._note_change()
        await self.sink.emit_event(
            "kiosk.content_installed",
            Severity.INFO,
            self.settings.device_id,
            f"content version {manifest.version} installed",
            {"version": manifest.version, "assets": len(manifest.assets)},
        )
        return manifest

    async def _refused(self, exc: ContentRefused) -> None:
        self.refused[f"{exc.reason}:{exc.code}"] += 1
        log.warning("kiosk.content_refused", reason=str(exc.reason), code=exc.code, detail=exc.detail[:300])
        await self.sink.emit_event(
            "kiosk.content_refused",
            Severity.WARNING,
            self.settings.device_id,
            f"new content refused ({exc.code}): {exc.detail}"[:500],
            {"reason": str(exc.reason), "code": exc.code, "detail": exc.detail[:500]},
        )

    def _note_change(self) -> None:
        self._changed_at.setdefault(self.director.state.generation, self.monotonic())
        self._wake.set()

    # ------------------------------------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Serve the player and watch it until cancelled."""
        manifest = await self.content.load_current()
        self.content.use(manifest)
        self.director.set_manifest(manifest)
        await self.server.start()
        await self._publish_status()
        content_task = asyncio.create_task(supervise("kiosk-content", self._content_loop), name="kiosk-content")
        shots = asyncio.create_task(supervise("kiosk-screenshots", self._screenshot_loop), name="kiosk-screenshots")
        try:
            while True:
                self.director.refresh()  # the schedule may have moved on
                await self._apply_screen()
                await self._watch()
                await self._check_clock()
                await self._publish_status()
                await self._daily_report()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=min(SCHEDULE_TICK_S, self._tick_s()))
        finally:
            content_task.cancel()
            shots.cancel()
            await asyncio.gather(content_task, shots, return_exceptions=True)
            await self.server.stop()

    def _tick_s(self) -> float:
        return max(0.2, self.settings.heartbeat_interval_s / 2)

    async def _apply_screen(self) -> None:
        """On within the screen's hours, and always during an alert (people must see where to go)."""
        wanted = self.director.state.mode == "alert" or self.settings.screen_should_be_on(utcnow())
        if wanted == self.screen_on:
            return
        try:
            await self.screen.set_power(wanted)
        except ScreenError as exc:
            self.screen_errors[str(exc.reason)] += 1
            if self.screen_errors[str(exc.reason)] == 1:
                log.error("kiosk.screen_failed", reason=str(exc.reason), detail=exc.detail[:200], wanted=wanted)
            return
        log.info("kiosk.screen_switched", on=wanted, mode=self.director.state.mode)
        self.screen_on = wanted

    async def _watch(self) -> None:
        h = self.health
        now = self.monotonic()
        since = h.last_beat if h.last_beat is not None and h.last_beat > h.watch_from else h.watch_from
        if now - since < self.settings.heartbeat_timeout_s or h.capped:
            return
        silent = now - (h.last_beat if h.last_beat is not None else h.watch_from)
        outcome = await self.restarter.restart(f"no heartbeat for {silent:.0f} s")
        if outcome.status == RestartStatus.RESTARTED:
            h.restarts += 1
            h.watch_from = self.monotonic() + self.settings.restart_grace_s
            await self.sink.emit_event(
                "kiosk.browser_restarted",
                Severity.WARNING,
                self.settings.device_id,
                f"the kiosk browser sent no heartbeat for {silent:.0f} s: restarted ({outcome.count} this boot)",
                {"silent_s": round(silent, 1), "restarts_this_boot": outcome.count},
            )
            h.restart_pending, h.restart_detail = True, f"restarted ({outcome.count} this boot), waiting for the page"
        elif outcome.status == RestartStatus.CAPPED:
            h.capped = True
            await self.sink.emit_event(
                "kiosk.browser_restart_capped",
                Severity.CRITICAL,
                self.settings.device_id,
                f"the kiosk browser is still silent after {outcome.count} restarts this boot: needs a visit",
                {"silent_s": round(silent, 1), "restarts_this_boot": outcome.count},
            )
            h.restart_pending = False
        elif outcome.status == RestartStatus.FAILED:
            h.watch_from = self.monotonic() + self.settings.restart_grace_s
            await self.sink.emit_event(
                "kiosk.browser_restart_failed",
                Severity.WARNING,
                self.settings.device_id,
                f"restarting the kiosk browser failed: {outcome.detail}",
                {"detail": outcome.detail[:500]},
            )
            h.restart_pending, h.restart_detail = True, f"restart failed: {outcome.detail[:200]}"

    # ------------------------------------------------------------------------------------------------ page reports

    def _heartbeat(self, beat: Heartbeat) -> None:
        h = self.health
        h.last_beat = self.monotonic()
        h.beat = beat
        h.heartbeats += 1
        h.page_errors += len(beat.errors)
        if beat.errors:
            h.recent_errors = beat.errors[-5:]
            h.errors_at = h.last_beat
        day = self._local_day()
        for played in beat.played:
            self.play_log.append(played)
            self.plays_by_day[day] += 1
            item = self.day_items.setdefault(played.src, [0, 0.0])
            item[0] += 1
            item[1] += max(0.0, played.seconds)
        if beat.touching and beat.last_touch_at is not None and beat.last_touch_at != self._session_touch:
            if not self._touching:  # a new touch session (the page went back to the loop in between)
                self.touch_sessions[day] += 1
            self._session_touch = beat.last_touch_at
        self._touching = beat.touching
        if h.capped or h.restart_pending:
            h.capped = h.restart_pending = False  # it came back (by itself, restarted, or someone visited)
            self._wake.set()
        elif beat.errors or h.heartbeats == 1:
            self._wake.set()

    def status(self) -> tuple[DeviceStatus, str | None, str]:
        """The kiosk's status with a reason: what dispatchers and IT see at central."""
        h, s = self.health, self.settings
        now = self.monotonic()
        if h.capped:
            return DeviceStatus.OFFLINE, "browser_unresponsive", "no heartbeat; restarts used up for this boot"
        if h.restart_pending:
            return DeviceStatus.DEGRADED, "browser_restarting", h.restart_detail
        if h.last_beat is None or now - h.last_beat > s.heartbeat_timeout_s:
            if now - h.watch_from <= s.heartbeat_timeout_s:
                return DeviceStatus.UNKNOWN, "starting", "waiting for the player page"
            return DeviceStatus.DEGRADED, "no_heartbeat", "the player page stopped reporting"
        if h.errors_at is not None and now - h.errors_at < 10 * s.heartbeat_interval_s:
            return DeviceStatus.DEGRADED, "page_errors", "; ".join(h.recent_errors)[:300]
        if self.screen_errors and self.screen_on is None:
            return DeviceStatus.DEGRADED, "screen_control_failed", ", ".join(sorted(self.screen_errors))
        if h.clock_synced is False:
            return DeviceStatus.DEGRADED, "clock_unsynchronised", h.clock_detail[:200] or "schedules may be wrong"
        return DeviceStatus.ONLINE, None, ""

    async def _publish_status(self) -> None:
        status, reason, detail = self.status()
        key = (status, reason, self.director.state.mode, self.director.state.content_version)
        if key == self._last_status:
            return
        self._last_status = key
        await self._report(status, reason, detail)

    def _local_day(self) -> str:
        return utcnow().astimezone(ZoneInfo(self.settings.timezone)).date().isoformat()

    async def _daily_report(self, *, force: bool = False) -> None:
        """At local midnight: the day's proof of play and touch sessions to central (``kiosk.day_report``)."""
        today = self._local_day()
        if today == self._report_day and not force:
            return
        day, self._report_day = self._report_day, today
        items = {src: {"plays": int(v[0]), "seconds": round(v[1], 1)} for src, v in sorted(self.day_items.items())}
        self.day_items = {}
        await self.sink.emit_event(
            "kiosk.day_report",
            Severity.INFO,
            self.settings.device_id,
            f"{day}: {self.plays_by_day.pop(day, 0)} items played, {self.touch_sessions.get(day, 0)} touch sessions",
            {"date": day, "items": dict(list(items.items())[:100]), "touch_sessions": self.touch_sessions.pop(day, 0)},
        )

    async def _check_clock(self) -> None:
        now = self.monotonic()
        if self._clock_checked_at is not None and now - self._clock_checked_at < CLOCK_CHECK_S:
            return
        self._clock_checked_at = now
        result = await clock_synchronised()
        if result.synced is False and self.health.clock_synced is not False:
            await self.sink.emit_event(
                "kiosk.clock_unsynchronised",
                Severity.WARNING,
                self.settings.device_id,
                f"the node's clock is not synchronised ({result.source}): content schedules may switch at wrong times",
                {"source": result.source, "detail": result.detail[:300]},
            )
        self.health.clock_synced, self.health.clock_detail = result.synced, result.detail

    async def _shown(self, shown: Shown) -> None:
        state = self.director.state
        if shown.generation != state.generation or shown.mode != "alert" or state.alert is None:
            return
        alert = state.alert
        key = f"{alert.alert_id}:{state.generation}"
        if key in self._proved:
            return
        self._proved.add(key)
        changed = self._changed_at.get(state.generation)
        latency_ms = round((self.monotonic() - changed) * 1000) if changed is not None else None
        data: dict[str, Any] = {
            "alert_id": alert.alert_id,
            "source": alert.source,
            "drill": alert.drill,
            "generation": state.generation,
            "latency_ms": latency_ms,
            "shown_at": utcnow().isoformat(),
        }
        try:
            shot = await self.cdp.screenshot()
            data.update(screenshot_sha256=shot.sha256, screenshot_width=shot.width, screenshot_height=shot.height)
        except CdpError as exc:
            data.update(screenshot_sha256=None, screenshot_error=f"{exc.reason}: {exc.detail}"[:300])
        self.proofs.append(data)
        log.info("kiosk.takeover_shown", **data)
        await self.sink.emit_event(
            "kiosk.takeover_shown",
            Severity.WARNING if not alert.drill else Severity.INFO,
            self.settings.device_id,
            f"alert page on screen ({alert.source}" + (f", {latency_ms} ms" if latency_ms is not None else "") + ")",
            data,
        )

    async def _report(self, status: DeviceStatus, reason: str | None, detail: str = "") -> None:
        state = self.director.state
        beat = self.health.beat
        attrs: dict[str, Any] = {
            "mode": state.mode,
            "content_version": state.content_version,
            "restarts_this_boot": self.health.restarts,
        }
        if beat is not None and beat.item_src is not None:
            attrs["item"] = beat.item_src[:200]
        await self.sink.set_device_state(
            self.settings.device_id, DeviceKind.KIOSK, status, reason, detail, attrs, name=self.settings.name
        )

    def stats(self) -> dict[str, Any]:
        """Counters for the node's health report and tests."""
        h = self.health
        return {
            "heartbeats": h.heartbeats,
            "page_errors": h.page_errors,
            "restarts": h.restarts,
            "capped": h.capped,
            "screen_changes": self.director.changes,
            "rejected_requests": dict(self.server.rejected),
            "proofs": len(self.proofs),
            "content_refused": dict(self.refused),
            "downloads": self.downloader.stats(),
            "screenshots_sent": self.screenshots_sent,
            "screenshot_failures": dict(self.screenshot_failures),
            "screen_on": self.screen_on,
            "screen_errors": dict(self.screen_errors),
        }
