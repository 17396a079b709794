"""The edge agent: an asyncio supervisor wiring MQTT, outbox, health, commands and (simulated) devices together.

* ``status`` (retained, seq 0): ``online`` published directly on every (re)connect, ``offline``/``last_will`` set
  as the MQTT will, ``offline``/``shutdown`` published on a clean stop.
* ``birth`` (retained): enqueued once per boot, on the first connection.
* ``health`` every ``health.interval_s`` (telemetry), device ``state/<device>`` (retained) and ``event`` through the
  outbox, so they survive outages and restarts.
* Every loop is supervised: an exception is logged and the loop restarted with back-off; nothing crashes the agent.
* Uplink outages (lost and regained connection to the broker) are reported on reconnect (``uplink.restored``).
* With ``power.enabled`` the UPS is watched through NUT; on low battery the node flushes its outbox, says
  ``node.going_down`` and publishes ``offline``/``power_loss`` before the power dies (:meth:`EdgeAgent.going_down`).

Run it with ``varta edge --config FILE`` or ``python -m edge.agent --config FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import structlog
from nacl.public import PrivateKey

import varta
from edge.commands import CommandFailed, CommandProcessor, CommandRegistry, ReplayGuard, register_builtin_commands
from edge.config import ConfigError, EdgeConfig, load_edge_config
from edge.devices import Attrs
from edge.health import HealthSampler
from edge.outbox import MessageClass, Outbox, OutboxPublisher
from edge.simulator import Simulator
from edge.systemd import notifier_or_none
from edge.uplink import UplinkRecorder
from varta.aio import wait_for
from varta.contract import (
    GOING_DOWN_EVENT,
    RETAINED_CHANNELS,
    Availability,
    Birth,
    Channel,
    Command,
    CommandType,
    DeviceKind,
    DeviceState,
    DeviceStatus,
    Envelope,
    Event,
    GoingDown,
    LiveError,
    Severity,
    UpsReading,
    encode,
    topic,
    utcnow,
)
from varta.logs import setup_logging
from varta.mqtt import MqttClient, Will
from varta.sealing import load_or_create_box_key, public_key_text
from varta.signing import public_key_text as signing_key_text
from varta.supervise import supervise

if TYPE_CHECKING:
    from edge.alerts.monitor import SirenMonitor
    from edge.cameras.manager import CameraManager
    from edge.kiosks.manager import KioskManager
    from edge.power.ups import UpsMonitor

log = structlog.get_logger(__name__)

#: Channels whose messages are telemetry (dropped first when the outbox is full); everything else is an event.
TELEMETRY_CHANNELS: Final = frozenset({Channel.HEALTH, Channel.SNAPSHOT})

PRUNE_INTERVAL_S: Final = 60.0
SHUTDOWN_DRAIN_S: Final = 2.0
MIN_GOODBYE_DRAIN_S: Final = 1.0  # the node.going_down event itself gets at least this long to be delivered
#: Loops stopped first on a clean stop (before the publisher drains and the client disconnects): producers, and the
#: uplink recorder, which must not take the agent's own disconnect for an outage.
PRODUCER_LOOPS: Final = (
    "simulator",
    "cameras",
    "kiosk",
    "sirens",
    "ups",
    "uplink",
    "health",
    "commands",
    "maintenance",
)


class EdgeAgent:
    """One edge node. Build it, then ``await agent.run(stop_event)``; device integrations call its public methods."""

    def __init__(self, config: EdgeConfig, *, sysfs_root: Path = Path("/sys")) -> None:
        self.config = config
        self.node_id = config.node_id
        self.site = config.site
        self.boot_id = secrets.token_hex(8)
        self.started_at = utcnow()
        self.registry = CommandRegistry()
        """Command handlers; integrations add theirs with ``agent.registry.register(name, handler)``."""
        self.capabilities: list[str] = []
        """Announced in the birth message; integrations append theirs before :meth:`run`."""
        self.box_key: PrivateKey | None = None
        """The node's private X25519 key for sealed secrets (loaded or created by :meth:`run`)."""
        self.health = HealthSampler(data_dir=config.outbox.path.parent, sysfs_root=sysfs_root)
        self.client = MqttClient(
            config.mqtt,
            client_id=f"varta-edge-{config.node_id}",
            will=Will(self._topic(Channel.STATUS), self._availability("offline", "last_will"), retain=True),
        )
        self.simulator = (
            Simulator(config.simulator, self, publish=self.publish_message) if config.simulator.enabled else None
        )
        self.cameras: CameraManager | None = None
        """The ONVIF camera manager (when ``cameras.enabled``)."""
        if config.cameras.enabled:
            self.cameras = _camera_manager_class()(self, config.cameras)
        self.uplink = UplinkRecorder(
            self.client, self, state_path=self.data_dir / "uplink.json", started_at=self.started_at
        )
        """Records when the link to the broker was lost and regained (``uplink.restored`` on reconnect)."""
        self.ups: UpsMonitor | None = None
        """The UPS monitor (when ``power.enabled``)."""
        if config.power.enabled:
            self.ups = _ups_monitor_class()(config.power.ups, self, state_path=self.data_dir / "power.json")
        self.sirens: SirenMonitor | None = None
        """The siren monitor (when ``sirens.enabled``); a siren whose library is missing is a ConfigError."""
        if config.sirens.enabled:
            self.sirens = _siren_monitor_class()(config.sirens, self, data_dir=self.data_dir)
        self.kiosk: KioskManager | None = None
        """The kiosk this node drives (when ``kiosk.enabled``): player page, takeover, browser health."""
        if config.kiosk.enabled:
            self.kiosk = _kiosk_manager_class()(
                config.kiosk,
                self,
                central_public_keys=[signing_key_text(k) for k in config.commands.verify_keys()],
                kiosk_id=config.node_id,  # one kiosk per node: the Pi behind the screen
                data_dir=self.data_dir,
            )
            self.capabilities.append("kiosk")
            self.kiosk.register(self.registry)
            if self.sirens is not None:  # a siren sounding here takes the screen over, central or not
                self.sirens.listeners.append(self.kiosk.siren_changed)
        self._power_loss = False  # going down on low battery (and mains is not back yet)
        self._power_loss_said = False  # ... and the retained status says offline/power_loss
        self._going_down_lock = asyncio.Lock()
        self._outbox: Outbox | None = None
        self.publisher: OutboxPublisher | None = None
        self.commands: CommandProcessor | None = None
        self._birth_sent = False
        self._started = False
        self._ready = asyncio.Event()
        register_builtin_commands(
            self.registry,
            info=self.info,
            publish_health=self.publish_health,
            outbox_stats=lambda: self.outbox.stats().as_dict(),
        )
        if self.simulator is not None and self.cameras is None:
            self.registry.register(CommandType.CAMERA_LIVE_START.value, _simulated_live)

    # ---------------------------------------------------------------------------------------------- public API

    @property
    def outbox(self) -> Outbox:
        """The open outbox (only while :meth:`run` is running)."""
        if self._outbox is None:
            raise RuntimeError("the agent is not running")
        return self._outbox

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the outbox is open and the loops are started (messages can be emitted)."""
        await wait_for(self._ready.wait(), timeout)

    def info(self) -> dict[str, Any]:
        """Who this node is (the ``ping`` command's answer)."""
        return {
            "node_id": self.node_id,
            "site": self.site,
            "name": self.config.name,
            "boot_id": self.boot_id,
            "version": varta.__version__,
            "started_at": self.started_at.isoformat(),
            "agent_uptime_s": round(time.monotonic() - self.health.started, 1),
        }

    async def emit_event(
        self,
        kind: str,
        severity: Severity = Severity.INFO,
        device_id: str | None = None,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> int:
        """Store an event in the outbox (it is published as soon as possible); returns its seq."""
        event = Event(
            node_id=self.node_id,
            boot_id=self.boot_id,
            seq=0,
            ts=utcnow(),
            kind=kind,
            severity=severity,
            device_id=device_id,
            message=message,
            data=data or {},
        )
        return await self.outbox.put(self._topic(Channel.EVENT), event, cls=MessageClass.EVENT)

    async def set_device_state(
        self,
        device_id: str,
        kind: DeviceKind,
        status: DeviceStatus,
        reason: str | None = None,
        detail: str = "",
        attrs: Attrs | None = None,
        *,
        name: str = "",
    ) -> int:
        """Store the current state of a device (retained on ``state/<device>``); returns its seq."""
        state = DeviceState(
            node_id=self.node_id,
            boot_id=self.boot_id,
            seq=0,
            ts=utcnow(),
            device_id=device_id,
            kind=kind,
            name=name,
            status=status,
            reason=reason,
            detail=detail,
            attrs=attrs or {},
        )
        return await self.outbox.put(self._topic(Channel.STATE, device_id), state, cls=MessageClass.EVENT, retain=True)

    def envelope(self) -> dict[str, Any]:
        """The envelope fields of a new message from this node (``seq`` is assigned by the outbox)."""
        return {"node_id": self.node_id, "boot_id": self.boot_id, "seq": 0, "ts": utcnow()}

    async def publish_message(
        self, channel: Channel, message: Envelope, *, device: str | None = None, cls: MessageClass | None = None
    ) -> int:
        """Store any contract message for *channel* (``device`` for device channels) in the outbox; returns its seq.

        Retained on the channels the contract retains; telemetry class for health and snapshots unless *cls* says.
        """
        if cls is None:
            cls = MessageClass.TELEMETRY if channel in TELEMETRY_CHANNELS else MessageClass.EVENT
        return await self.outbox.put(
            self._topic(channel, device), message, cls=cls, retain=channel in RETAINED_CHANNELS
        )

    async def clear_retained(self, channel: Channel, device: str, *, drain_s: float = 2.0) -> bool:
        """Remove the retained message of a device channel (a forgotten device); False when not connected.

        Waits up to *drain_s* for the outbox to empty first, so an older retained row cannot land after the clear.
        """
        if not self.client.connected.is_set():
            return False
        await self.outbox.wait_empty(drain_s)
        try:
            await self.client.publish(self._topic(channel, device), b"", qos=1, retain=True)
        except Exception as exc:  # not connected any more, refused: the caller reports it
            log.warning("agent.clear_retained_failed", channel=channel.value, device_id=device, error=str(exc)[:200])
            return False
        return True

    async def going_down(self, reading: UpsReading, device_id: str = "ups") -> None:
        """The UPS battery is about to run out: say goodbye before the power dies.

        Waits up to ``power.on_low_battery.flush_timeout_s`` for the outbox to be delivered, emits
        ``node.going_down`` (``flushed`` says whether everything before it was delivered), gives that event the
        rest of the time (at least a second), publishes the retained ``status`` ``offline``/``power_loss`` and runs
        ``shutdown_command`` when one is set. Stops early (and says nothing more) when :meth:`power_back` is called
        meanwhile. Runs once per low-battery episode; a second call while one runs returns at once. The UPS monitor
        runs it as a task and cancels it when mains comes back, then calls :meth:`power_back`.
        """
        if self._going_down_lock.locked() or self._power_loss:
            return
        async with self._going_down_lock:
            self._power_loss = True
            settings = self.config.power.on_low_battery
            loop = asyncio.get_running_loop()
            deadline = loop.time() + settings.flush_timeout_s
            log.error("agent.going_down", device_id=device_id, ups_status=reading.status)
            flushed = await self.outbox.wait_empty(settings.flush_timeout_s)
            data = GoingDown(reading=reading, flushed=flushed)
            await self.emit_event(
                GOING_DOWN_EVENT,
                Severity.CRITICAL,
                device_id,
                "UPS battery low: this node is going down",
                data.model_dump(mode="json"),
            )
            delivered = await self.outbox.wait_empty(max(deadline - loop.time(), MIN_GOODBYE_DRAIN_S))
            if not self._power_loss:
                log.info("agent.going_down_called_off", device_id=device_id)
                return
            self._power_loss_said = True  # also what a reconnect publishes from now on
            announced = await self._publish_status("offline", "power_loss")
            log.error(
                "agent.power_loss_announced",
                flushed=flushed,
                delivered=delivered,
                announced=announced,
                pending=self.outbox.stats().pending,
            )
            if settings.shutdown_command and self._power_loss:
                await _run_shutdown(settings.shutdown_command, settings.shutdown_timeout_s)

    async def power_back(self, reading: UpsReading, device_id: str = "ups") -> None:
        """Mains came back after :meth:`going_down` began: say ``online`` again and carry on."""
        if not self._power_loss:
            return
        said, self._power_loss, self._power_loss_said = self._power_loss_said, False, False
        announced = await self._publish_status("online", "connected") if said else False
        log.info("agent.power_back", device_id=device_id, ups_status=reading.status, announced=announced)

    @property
    def power_loss(self) -> bool:
        """The node is going down on low battery (:meth:`going_down` began) and mains has not come back since."""
        return self._power_loss

    @property
    def data_dir(self) -> Path:
        """The node's data folder (the outbox's folder: also ``box.key`` and the camera store)."""
        return self.config.data_dir

    async def publish_health(self) -> int:
        """Take a health sample now and store it (telemetry); returns its seq."""
        outbox = self.outbox
        sample = await self.health.sample(node_id=self.node_id, boot_id=self.boot_id, outbox=outbox.stats())
        return await outbox.put(self._topic(Channel.HEALTH), sample, cls=MessageClass.TELEMETRY)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until *stop* is set, then shut down cleanly (retained ``offline``/``shutdown``, disconnect)."""
        if self._started:
            raise RuntimeError("an EdgeAgent runs once; build a new one to run again")
        self._started = True
        cfg = self.config
        log.info("agent.starting", node_id=self.node_id, site=self.site, boot_id=self.boot_id)
        outbox = await Outbox.open(cfg.outbox)
        self._outbox = outbox
        # The node's X25519 key: central seals camera passwords to its public half (announced in the birth).
        self.box_key = await asyncio.to_thread(load_or_create_box_key, self.config.box_key_path)
        tasks: list[asyncio.Task[None]] = []
        try:
            replay = ReplayGuard(outbox)
            await replay.setup()
            # The publisher's on_connect callback must come first: it marks which rows predate the connection.
            self.publisher = OutboxPublisher(outbox, self.client, window=cfg.outbox.publish_window)
            self.client.add_on_connect(self._on_connect)
            self.commands = CommandProcessor(
                client=self.client,
                outbox=outbox,
                registry=self.registry,
                replay=replay,
                site=self.site,
                node_id=self.node_id,
                boot_id=self.boot_id,
                keys=cfg.commands.verify_keys(),
                max_clock_skew_s=cfg.commands.max_clock_skew_s,
                handler_timeout_s=cfg.commands.handler_timeout_s,
            )
            await self.health.prime()
            loops: dict[str, Callable[[], Awaitable[None]]] = {
                "mqtt": self.client.run,
                "publisher": self.publisher.run,
                "commands": self.commands.run,
                "health": self._health_loop,
                "maintenance": self._maintenance_loop,
            }
            if self.simulator is not None:
                loops["simulator"] = self.simulator.run
            if self.cameras is not None:
                loops["cameras"] = self.cameras.run
            loops["uplink"] = self.uplink.run
            if self.ups is not None:
                loops["ups"] = self.ups.run
            if self.sirens is not None:
                loops["sirens"] = self.sirens.run
            if self.kiosk is not None:
                loops["kiosk"] = self.kiosk.run
            tasks = [asyncio.create_task(supervise(n, f, stop), name=f"edge-{n}") for n, f in loops.items()]
            loop_tasks = list(tasks)
            systemd = notifier_or_none()
            if systemd is not None:
                # A supervised loop only ends if it was given up on; a wedged event loop stops the pings by itself.
                tasks.append(
                    asyncio.create_task(
                        systemd.run_watchdog(lambda: not any(t.done() for t in loop_tasks)), name="edge-watchdog"
                    )
                )
                systemd.notify("READY=1", f"STATUS=node {self.node_id} running: {', '.join(sorted(loops))}")
            self._ready.set()
            log.info("agent.started", loops=sorted(loops))
            try:
                await stop.wait()
            finally:  # also when cancelled: still say goodbye (a clean disconnect suppresses the last will)
                stop.set()
                log.info("agent.stopping")
                if systemd is not None:
                    systemd.notify("STOPPING=1")
                await self._shutdown(tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._ready.clear()
            await outbox.close()
            self._outbox = None
            log.info("agent.stopped", boot_id=self.boot_id)

    # ---------------------------------------------------------------------------------------------- internals

    def _topic(self, channel: Channel, device: str | None = None) -> str:
        return topic(self.site, self.node_id, channel, device)

    def _availability(self, state: str, reason: str) -> bytes:
        message = Availability.model_validate(
            {
                "node_id": self.node_id,
                "boot_id": self.boot_id,
                "seq": 0,
                "ts": utcnow(),
                "state": state,
                "reason": reason,
            }
        )
        return encode(message)

    async def _on_connect(self) -> None:
        # A node that said it is going down stays "going down" across reconnects until mains is back.
        state, reason = ("offline", "power_loss") if self._power_loss_said else ("online", "connected")
        await self.client.publish(self._topic(Channel.STATUS), self._availability(state, reason), qos=1, retain=True)
        if not self._birth_sent:
            try:
                await self._enqueue_birth()
            except Exception:
                log.exception("agent.birth_failed")  # tried again on the next connect
            else:
                self._birth_sent = True

    async def _publish_status(self, state: str, reason: str) -> bool:
        """Publish the retained ``status`` now (not through the outbox: seq 0); False when not connected."""
        try:
            await self.client.publish(
                self._topic(Channel.STATUS), self._availability(state, reason), qos=1, retain=True, timeout=5.0
            )
        except Exception as exc:  # not connected, refused, no PUBACK in time
            log.warning("agent.status_not_published", state=state, reason=reason, error=str(exc)[:200])
            return False
        return True

    async def _enqueue_birth(self) -> None:
        birth = Birth(
            node_id=self.node_id,
            boot_id=self.boot_id,
            seq=0,
            ts=utcnow(),
            site=self.site,
            name=self.config.name,
            hostname=socket.gethostname()[:255],
            version=varta.__version__[:64],
            started_at=self.started_at,
            platform=platform.platform()[:200],
            capabilities=sorted({*self.registry.names(), *self.capabilities})[:64],
            health_interval_s=self.config.health.interval_s,
            box_public_key=public_key_text(self.box_key) if self.box_key is not None else None,
        )
        await self.outbox.put(self._topic(Channel.BIRTH), birth, cls=MessageClass.EVENT, retain=True)

    async def _health_loop(self) -> None:
        interval = self.config.health.interval_s
        next_at = time.monotonic()
        while True:
            await self.publish_health()
            next_at = max(next_at + interval, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_S)
            await self.outbox.prune()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        """Stop producers, give the publisher a moment to drain, publish ``offline``/``shutdown``, disconnect."""
        by_name = {t.get_name(): t for t in tasks}
        for name in PRODUCER_LOOPS:
            task = by_name.get(f"edge-{name}")
            if task is not None:
                task.cancel()
        # The uplink recorder must have stopped before the client disconnects (a clean stop is not an outage).
        quick = {by_name[n] for n in ("edge-uplink", "edge-ups") if n in by_name}
        if quick:
            await asyncio.wait(quick, timeout=SHUTDOWN_DRAIN_S)
        if self.client.connected.is_set():
            drained = await self.outbox.wait_empty(SHUTDOWN_DRAIN_S)
            if not drained:
                log.info("agent.shutdown_pending", pending=self.outbox.stats().pending)
        publisher = by_name.get("edge-publisher")
        if publisher is not None:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
        await self.client.stop(final=(self._topic(Channel.STATUS), self._availability("offline", "shutdown"), True))


def _siren_monitor_class() -> type[SirenMonitor]:
    """The siren monitor, imported only on nodes that watch sirens (it imports gpiozero / pymodbus per siren)."""
    from edge.alerts.monitor import SirenMonitor

    return SirenMonitor


def _kiosk_manager_class() -> type[KioskManager]:
    """The kiosk manager, imported only on nodes that drive a kiosk (it needs aiohttp: the 'kiosk' extra)."""
    try:
        from edge.kiosks.manager import KioskManager
    except ModuleNotFoundError as exc:
        raise ConfigError(f"kiosk.enabled needs the 'kiosk' extra (missing module {exc.name!r})") from exc
    return KioskManager


def _ups_monitor_class() -> type[UpsMonitor]:
    """The UPS monitor, imported only on nodes that watch a UPS."""
    from edge.power.ups import UpsMonitor

    return UpsMonitor


async def _run_shutdown(command: list[str], timeout_s: float) -> None:
    """Run the configured shutdown command (no shell), killed after *timeout_s*; the outcome is logged.

    Once started it is never called off: mains coming back or the agent stopping leaves it running.
    """
    log.error("agent.shutdown_command", command=command)
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        log.error("agent.shutdown_command_failed", command=command, error=str(exc)[:200])
        return
    try:
        _, stderr = await wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.error("agent.shutdown_command_timeout", command=command, timeout_s=timeout_s)
        return
    except asyncio.CancelledError:  # the agent stops (the shutdown itself stops it): the command carries on
        log.info("agent.shutdown_command_left_running", command=command, pid=proc.pid)
        raise
    report = log.info if proc.returncode == 0 else log.error
    report(
        "agent.shutdown_command_done",
        command=command,
        returncode=proc.returncode,
        stderr=stderr.decode(errors="replace")[-500:],
    )


def _camera_manager_class() -> type[CameraManager]:
    """The camera manager, imported only on nodes that manage cameras (OpenCV, ONVIF); ConfigError if missing."""
    try:
        from edge.cameras.manager import CameraManager
    except ImportError as exc:
        raise ConfigError(
            f"cameras.enabled needs the 'cameras' extra: pip install 'varta[cameras]' (missing module {exc.name!r})"
        ) from None
    return CameraManager


async def run_agent(config: EdgeConfig, *, stop: asyncio.Event | None = None) -> None:
    """Run an edge agent for *config* until *stop* is set (forever when None)."""
    agent = EdgeAgent(config)
    await agent.run(stop if stop is not None else asyncio.Event())


async def _main_async(config: EdgeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_agent(config, stop=stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _simulated_live(command: Command) -> dict[str, Any]:
    """Simulated cameras have no video: say so instead of 'unknown command'."""
    raise CommandFailed(
        "this is a simulated camera: it has pictures but no video to stream", reason=LiveError.LIVE_DISABLED.value
    )


def main(config_path: Path | None) -> int:
    """Entry point of ``varta edge``: load the config, run until SIGTERM/SIGINT; returns the exit code."""
    try:
        config = load_edge_config(config_path)
    except ConfigError as exc:
        print(f"varta edge: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_format)
    if config.cameras.enabled:
        try:
            _camera_manager_class()
        except ConfigError as exc:
            print(f"varta edge: {exc}", file=sys.stderr)
            return 2
    try:
        asyncio.run(_main_async(config))
    except ConfigError as exc:  # e.g. a siren whose adapter library is not installed
        print(f"varta edge: {exc}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("agent.failed")
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m edge.agent", description="Run the Varta edge agent.")
    parser.add_argument("--config", type=Path, default=None, help="YAML config file (env VARTA_EDGE__… wins)")
    sys.exit(main(parser.parse_args().config))
