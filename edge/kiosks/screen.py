"""Switching a kiosk's screen on and off, and asking whether it is on, through the tools a Raspberry Pi has.

* ``wlr-randr`` (the Wayland output of the ``cage`` compositor the kiosk browser runs in): ``--output <name>
  --on|--off``; the state is the output's ``Enabled: yes|no`` line. Needs the compositor's ``XDG_RUNTIME_DIR`` (and
  ``WAYLAND_DISPLAY`` unless it is ``wayland-0``) in the environment: set them in ``screen.env``.
* ``ddcutil`` (DDC/CI over the HDMI/DP cable): VCP feature D6, "power mode": 01 on, 04 off (DPM), 05 off (hard).
* ``cec-client`` (HDMI-CEC, for TVs): ``on 0`` / ``standby 0`` / ``pow 0`` on stdin in single-command mode.
* :class:`SimulatedScreen`: in memory (the demo and tests).

Every tool runs through :func:`~edge.kiosks.commands.run_command` with a time limit. Failures raise
:class:`ScreenError` with a :class:`ScreenErrorReason` the caller counts.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field

from edge.kiosks.commands import CommandResult, run_command

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT_S: Final = 10.0
DDC_POWER_FEATURE: Final = "D6"
DDC_ON: Final = 0x01

_WLR_ENABLED = re.compile(r"Enabled:\s*(?P<value>yes|no)\s*", re.IGNORECASE)
_WLR_HEADER = re.compile(r'(?P<name>\S+)(?:\s+"(?P<description>.*)")?\s*')
_DDC_BRIEF = re.compile(r"VCP\s+D6\s+(?:SNC|CNC|C|NC)\s+x(?P<value>[0-9a-fA-F]{2})\b", re.IGNORECASE)
_DDC_UNSUPPORTED = re.compile(r"VCP\s+D6\s+ERR|unsupported|not supported", re.IGNORECASE)
_CEC_POWER = re.compile(r"power status:\s*(?P<status>[^\r\n]+)", re.IGNORECASE)


class ScreenErrorReason(StrEnum):
    """Why switching or reading the screen failed; counted by the caller."""

    TOOL_MISSING = "tool_missing"  # the tool is not installed (not on PATH)
    FAILED = "failed"  # the tool failed (non-zero exit, no such output, an answer that cannot be read)
    TIMEOUT = "timeout"  # the tool did not finish in time (it was killed)
    UNSUPPORTED = "unsupported"  # the screen or the set-up cannot do it (no Wayland display, no VCP D6)


class ScreenError(Exception):
    """A screen operation failed; ``reason`` says how, ``detail`` says more (the tool's own error)."""

    def __init__(self, reason: ScreenErrorReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail[:400]


class ScreenPower(Protocol):
    """A kiosk's screen power switch."""

    async def set_power(self, on: bool) -> None:
        """Switch the screen on (True) or off; raises :class:`ScreenError`."""
        ...

    async def get_power(self) -> bool | None:
        """Whether the screen is on (None: it cannot tell); raises :class:`ScreenError`."""
        ...


async def _run(
    argv: Sequence[str], *, timeout_s: float, env: Mapping[str, str] | None, input: bytes | None = None
) -> CommandResult:
    """Run a screen tool; raise :class:`ScreenError` unless it exited with status 0 in time."""
    result = await run_command(argv, timeout_s=timeout_s, env=env, input=input)
    if result.not_found:
        raise ScreenError(ScreenErrorReason.TOOL_MISSING, f"{argv[0]} is not installed (not on PATH)")
    if result.timed_out:
        raise ScreenError(ScreenErrorReason.TIMEOUT, result.describe())
    if not result.ok:
        raise ScreenError(ScreenErrorReason.FAILED, result.describe())
    return result


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}


# -------------------------------------------------------------------------------------------------- wlr-randr


@dataclass(frozen=True, slots=True)
class WlrOutput:
    """One output as ``wlr-randr`` lists it (``enabled`` None: the block had no ``Enabled:`` line)."""

    name: str
    description: str
    enabled: bool | None


def parse_wlr_randr(text: str) -> list[WlrOutput]:
    """The outputs in ``wlr-randr``'s listing, in order.

    Each output is a block: a line at column 0 with its name and quoted description (``HDMI-A-1 "Dell Inc. ...
    (HDMI-A-1)"``), then indented lines (``  Make: ...``, ``  Enabled: yes``, ``  Modes:`` with further-indented
    modes, ``  Position: 0,0``, ...).
    """
    outputs: list[WlrOutput] = []
    name: str | None = None
    description = ""
    enabled: bool | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            if name is not None:
                outputs.append(WlrOutput(name, description, enabled))
            header = _WLR_HEADER.fullmatch(line)
            name = header["name"] if header else line.split()[0]
            description = (header["description"] or "") if header else ""
            enabled = None
        elif name is not None and (match := _WLR_ENABLED.fullmatch(line.strip())):
            enabled = match["value"].lower() == "yes"
    if name is not None:
        outputs.append(WlrOutput(name, description, enabled))
    return outputs


class WlrRandrScreen:
    """The screen as a Wayland output of the kiosk's compositor, switched with ``wlr-randr``.

    *output* None means the first output ``wlr-randr`` lists. *env* is added to this process's environment for the
    tool (the compositor's ``XDG_RUNTIME_DIR`` and ``WAYLAND_DISPLAY``).
    """

    tool: Final = "wlr-randr"

    def __init__(
        self, output: str | None = None, env: Mapping[str, str] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.output = output
        self.env = dict(env or {})
        self.timeout_s = timeout_s

    async def set_power(self, on: bool) -> None:
        """``wlr-randr --output <name> --on|--off``."""
        env = self._wayland_env()
        name = self.output if self.output is not None else (await self._first_output(env)).name
        await _run([self.tool, "--output", name, "--on" if on else "--off"], timeout_s=self.timeout_s, env=env)

    async def get_power(self) -> bool | None:
        """The output's ``Enabled:`` line (None when it has none)."""
        env = self._wayland_env()
        outputs = await self._outputs(env)
        if self.output is None:
            return self._first(outputs).enabled
        for output in outputs:
            if output.name == self.output:
                return output.enabled
        listed = ", ".join(o.name for o in outputs) or "none"
        raise ScreenError(ScreenErrorReason.FAILED, f"wlr-randr lists no output {self.output!r} (outputs: {listed})")

    async def outputs(self) -> list[WlrOutput]:
        """Every output the compositor has."""
        return await self._outputs(self._wayland_env())

    def _wayland_env(self) -> dict[str, str]:
        env = _environment(self.env)
        if not env.get("XDG_RUNTIME_DIR") and not env.get("WAYLAND_DISPLAY", "").startswith("/"):
            raise ScreenError(
                ScreenErrorReason.UNSUPPORTED,
                "no Wayland display to talk to: set XDG_RUNTIME_DIR (and WAYLAND_DISPLAY) of the kiosk's compositor"
                " in the screen settings' env",
            )
        return env

    async def _outputs(self, env: Mapping[str, str]) -> list[WlrOutput]:
        result = await _run([self.tool], timeout_s=self.timeout_s, env=env)
        return parse_wlr_randr(result.stdout_text)

    async def _first_output(self, env: Mapping[str, str]) -> WlrOutput:
        return self._first(await self._outputs(env))

    @staticmethod
    def _first(outputs: list[WlrOutput]) -> WlrOutput:
        if not outputs:
            raise ScreenError(ScreenErrorReason.FAILED, "wlr-randr lists no output")
        return outputs[0]


# -------------------------------------------------------------------------------------------------- ddcutil


def parse_ddc_power(text: str) -> bool | None:
    """VCP D6 from ``ddcutil getvcp D6 --brief`` (``VCP D6 SNC x01``): True for 01, False for 02–05 (standby,
    suspend, off), None for another value. Raises :class:`ScreenError` when the answer is not there."""
    match = _DDC_BRIEF.search(text)
    if match is None:
        if _DDC_UNSUPPORTED.search(text):
            raise ScreenError(ScreenErrorReason.UNSUPPORTED, f"the monitor has no VCP D6: {text.strip()[:200]}")
        raise ScreenError(ScreenErrorReason.FAILED, f"no VCP D6 value in ddcutil's answer: {text.strip()[:200]!r}")
    value = int(match["value"], 16)
    if value == DDC_ON:
        return True
    if 0x02 <= value <= 0x05:
        return False
    return None


class DdcutilScreen:
    """A monitor switched over DDC/CI with ``ddcutil`` (VCP D6). *display* is ddcutil's display number (None: the
    only one); *off_value* is what "off" writes: 5 (power off, the default) or 4 (DPM off / standby)."""

    tool: Final = "ddcutil"

    def __init__(
        self,
        display: int | None = None,
        *,
        off_value: Literal[4, 5] = 5,
        env: Mapping[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.display = display
        self.off_value = off_value
        self.env = dict(env or {})
        self.timeout_s = timeout_s

    async def set_power(self, on: bool) -> None:
        """``ddcutil [--display N] setvcp D6 01|05``."""
        value = DDC_ON if on else self.off_value
        await self._ddcutil("setvcp", DDC_POWER_FEATURE, f"{value:02x}")

    async def get_power(self) -> bool | None:
        """``ddcutil [--display N] getvcp D6 --brief``."""
        result = await self._ddcutil("getvcp", DDC_POWER_FEATURE, "--brief")
        return parse_ddc_power(result.stdout_text)

    async def _ddcutil(self, *args: str) -> CommandResult:
        display = [] if self.display is None else ["--display", str(self.display)]
        try:
            return await _run([self.tool, *display, *args], timeout_s=self.timeout_s, env=_environment(self.env))
        except ScreenError as exc:
            if exc.reason is ScreenErrorReason.FAILED and _DDC_UNSUPPORTED.search(exc.detail):
                raise ScreenError(ScreenErrorReason.UNSUPPORTED, exc.detail) from None
            raise


# -------------------------------------------------------------------------------------------------- HDMI-CEC


def parse_cec_power(text: str) -> bool | None:
    """The TV's state from ``cec-client``'s answer to ``pow 0`` (``power status: on``): True for on (or going on),
    False for standby (or going to standby), None for unknown. Raises :class:`ScreenError` when there is none."""
    match = _CEC_POWER.search(text)
    if match is None:
        raise ScreenError(ScreenErrorReason.FAILED, f"no power status in cec-client's answer: {text.strip()[-200:]!r}")
    status = match["status"].strip().lower()
    if status == "on" or status.endswith("to on"):
        return True
    if status == "standby" or status.endswith("to standby"):
        return False
    return None


class CecScreen:
    """A TV switched over HDMI-CEC with ``cec-client`` (libCEC's cec-utils) in single-command mode.

    *device* is cec-client's adapter port (``RPI``, ``/dev/cec0``; None: the first it finds); the TV is logical
    address 0.
    """

    tool: Final = "cec-client"

    def __init__(
        self, device: str | None = None, *, env: Mapping[str, str] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.device = device
        self.env = dict(env or {})
        self.timeout_s = timeout_s

    async def set_power(self, on: bool) -> None:
        """``echo "on 0" | cec-client -s -d 1`` (``standby 0`` for off)."""
        await self._send("on 0" if on else "standby 0")

    async def get_power(self) -> bool | None:
        """``echo "pow 0" | cec-client -s -d 1``: the TV's ``power status:``."""
        return parse_cec_power((await self._send("pow 0")).stdout_text)

    async def _send(self, command: str) -> CommandResult:
        argv = [self.tool, "-s", "-d", "1", *([self.device] if self.device else [])]
        return await _run(argv, timeout_s=self.timeout_s, env=_environment(self.env), input=f"{command}\n".encode())


# -------------------------------------------------------------------------------------------------- simulated


class SimulatedScreen:
    """A screen in memory: ``history`` records each change as (monotonic time, on). Set ``fail_with`` to make every
    call raise that error (a broken screen)."""

    def __init__(self, on: bool | None = True) -> None:
        self.on = on
        self.history: list[tuple[float, bool]] = []
        self.calls = 0
        """set_power calls so far (changes or not)."""
        self.fail_with: ScreenError | None = None

    async def set_power(self, on: bool) -> None:
        """Switch (a change is recorded in ``history``)."""
        if self.fail_with is not None:
            raise self.fail_with
        self.calls += 1
        if on != self.on:
            self.history.append((time.monotonic(), on))
            log.info("screen.simulated", on=on)
        self.on = on

    async def get_power(self) -> bool | None:
        """The simulated state."""
        if self.fail_with is not None:
            raise self.fail_with
        return self.on


# -------------------------------------------------------------------------------------------------- settings


class ScreenSettings(BaseModel):
    """How a kiosk's screen is switched (the ``screen:`` part of a kiosk's settings)."""

    model_config = ConfigDict(extra="forbid")

    adapter: Literal["wlr-randr", "ddcutil", "cec", "simulated"] = Field(
        default="simulated", description="the tool that switches the screen"
    )
    output: str | None = Field(
        default=None, min_length=1, max_length=64, description="wlr-randr output name (None: the first listed)"
    )
    display: int | None = Field(default=None, ge=1, le=64, description="ddcutil display number (None: the only one)")
    ddc_off_value: Literal[4, 5] = Field(default=5, description="VCP D6 value for off: 5 power off, 4 DPM off")
    cec_device: str | None = Field(
        default=None, min_length=1, max_length=255, description="cec-client adapter port (RPI, /dev/cec0)"
    )
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0, le=120, description="longest one tool run may take")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="extra environment for the tool (wlr-randr: XDG_RUNTIME_DIR, WAYLAND_DISPLAY of the compositor)",
    )


def screen_from_settings(settings: ScreenSettings) -> ScreenPower:
    """The screen adapter *settings* describe."""
    match settings.adapter:
        case "wlr-randr":
            return WlrRandrScreen(settings.output, settings.env, timeout_s=settings.timeout_s)
        case "ddcutil":
            return DdcutilScreen(
                settings.display, off_value=settings.ddc_off_value, env=settings.env, timeout_s=settings.timeout_s
            )
        case "cec":
            return CecScreen(settings.cec_device, env=settings.env, timeout_s=settings.timeout_s)
        case "simulated":
            return SimulatedScreen()
