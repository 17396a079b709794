"""A small asyncio client of NUT's network protocol (``upsd``, TCP port 3493), and strict parsing of a UPS reading.

The protocol is line based text (``man upsd``, NUT's "network protocol" document)::

    USERNAME <name>            → OK | ERR <code>
    PASSWORD <password>        → OK | ERR <code>
    LIST VAR <ups>             → BEGIN LIST VAR <ups>
                                 VAR <ups> <name> "<value>"     (\\ and " escaped with a backslash)
                                 ...
                                 END LIST VAR <ups>
                               | ERR <code>                    (UNKNOWN-UPS, DATA-STALE, DRIVER-NOT-CONNECTED, ...)

Every request has a deadline (connect, login and the whole reply), so a peer that never answers or drips bytes
cannot hold the caller. Anything that is not the protocol raises :class:`NutError` with a :class:`NutErrorReason`
the caller counts. The connection is kept between requests and dropped after any error that may leave it out of
step (an ``ERR`` reply does not); the next request reconnects (and logs in again).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Final, Protocol

import structlog
from pydantic import ValidationError

from varta.aio import wait_for
from varta.contract import UpsReading

log = structlog.get_logger(__name__)

DEFAULT_PORT: Final = 3493
MAX_LINE_BYTES: Final = 1024  # upsd's own lines stay far below this (its values are at most 256 bytes)
MAX_VARS: Final = 1000  # a real UPS lists 20–150 variables

_VAR_LINE = re.compile(r'VAR (?P<ups>[A-Za-z0-9_.-]+) (?P<name>[A-Za-z0-9_.-]+) "(?P<value>(?:[^"\\]|\\.)*)"')
_ERR_LINE = re.compile(r"ERR (?P<code>[A-Z][A-Z-]*)(?: .*)?")
_UNESCAPE = re.compile(r"\\(.)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_STATUS_TOKEN = re.compile(r"[A-Z]{2,12}")
_NUMBER = re.compile(r"-?[0-9]{1,9}(?:\.[0-9]{1,6})?")

#: NUT error codes that mean "the UPS is stale", not "the server misbehaves".
STALE_CODES: Final = frozenset({"DATA-STALE", "DRIVER-NOT-CONNECTED"})
#: NUT error codes that mean our credentials or rights are wrong.
ACCESS_CODES: Final = frozenset(
    {
        "ACCESS-DENIED",
        "INVALID-PASSWORD",
        "INVALID-USERNAME",
        "USERNAME-REQUIRED",
        "PASSWORD-REQUIRED",
        "ALREADY-SET-USERNAME",
        "ALREADY-SET-PASSWORD",
    }
)


_Exchange = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[dict[str, str]]]


class NutErrorReason(StrEnum):
    """Why a NUT request (or the reading it returned) failed; counted by the UPS monitor."""

    CONNECT_FAILED = "connect_failed"  # connection refused / host unreachable
    TIMEOUT = "timeout"  # no (complete) answer in time
    CLOSED = "closed"  # the peer closed the connection before the reply was complete
    TOO_LONG = "too_long"  # a line longer than MAX_LINE_BYTES, or more than MAX_VARS variables
    MALFORMED = "malformed"  # a line that is not the protocol (or not for this UPS)
    STALE = "stale"  # ERR DATA-STALE / DRIVER-NOT-CONNECTED: upsd has no fresh data from the UPS
    UNKNOWN_UPS = "unknown_ups"  # ERR UNKNOWN-UPS: no such UPS on that server
    ACCESS_DENIED = "access_denied"  # ERR ACCESS-DENIED, INVALID-PASSWORD, ...
    ERR_REPLY = "err_reply"  # any other ERR reply
    NO_STATUS = "no_status"  # the reply lacks ups.status
    BAD_STATUS = "bad_status"  # ups.status is not a list of NUT status flags with exactly one of OL / OB
    BAD_VALUE = "bad_value"  # a number that is not one (or out of range): that figure is left out


class NutError(Exception):
    """A NUT request failed; ``reason`` says how, ``code`` is upsd's ``ERR`` code when it sent one."""

    def __init__(self, reason: NutErrorReason, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail[:300]
        self.code = code


def _err(code: str, during: str) -> NutError:
    if code in STALE_CODES:
        reason = NutErrorReason.STALE
    elif code == "UNKNOWN-UPS":
        reason = NutErrorReason.UNKNOWN_UPS
    elif code in ACCESS_CODES:
        reason = NutErrorReason.ACCESS_DENIED
    else:
        reason = NutErrorReason.ERR_REPLY
    return NutError(reason, f"ERR {code} ({during})", code=code)


def quote_arg(text: str) -> str:
    """A protocol argument in double quotes (backslash escapes); line breaks cannot be sent at all."""
    if _CONTROL.search(text):
        raise NutError(NutErrorReason.ACCESS_DENIED, "a NUT user name or password must not contain control characters")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class UpsVariables(Protocol):
    """Where a UPS's NUT variables come from: :class:`NutClient`, or the demo's simulated UPS."""

    async def list_vars(self, ups: str) -> dict[str, str]:
        """Every variable of *ups* as name → value; raises :class:`NutError`."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class NutClient:
    """One connection to ``upsd``; reconnects (and logs in) on the next request after a failure."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        timeout_s: float = 5.0,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.username = username
        self.password = password
        self.connects = 0
        """Connections opened so far."""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def connected(self) -> bool:
        """A connection is open (it may still turn out dead on the next request)."""
        return self._writer is not None

    async def list_vars(self, ups: str) -> dict[str, str]:
        """Every variable of *ups* (``LIST VAR``) as name → value; raises :class:`NutError`."""
        return await self._request(self._list_vars, ups)

    async def close(self) -> None:
        """Close the connection (politely, without waiting long)."""
        writer = self._writer
        self._reader = self._writer = None
        if writer is None:
            return
        with contextlib.suppress(Exception):
            writer.write(b"LOGOUT\n")
        writer.close()
        with contextlib.suppress(Exception):
            await wait_for(writer.wait_closed(), 1.0)

    # ---------------------------------------------------------------------------------------------- internals

    async def _request(self, fn: _Exchange, ups: str) -> dict[str, str]:
        try:
            return await wait_for(self._connected_then(fn, ups), self.timeout_s)
        except TimeoutError:
            await self.close()
            raise NutError(NutErrorReason.TIMEOUT, f"no complete answer from {self.host}:{self.port} in time") from None
        except NutError as exc:
            if exc.code is None or exc.reason is NutErrorReason.ACCESS_DENIED:
                await self.close()  # out of step (or not logged in): start afresh next time
            raise
        except BaseException:
            await self.close()
            raise

    async def _connected_then(self, fn: _Exchange, ups: str) -> dict[str, str]:
        if self._writer is None:
            await self._connect()
        assert self._reader is not None and self._writer is not None
        return await fn(self._reader, self._writer, ups)

    async def _connect(self) -> None:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_LINE_BYTES)
        except OSError as exc:
            raise NutError(NutErrorReason.CONNECT_FAILED, f"{self.host}:{self.port}: {exc.strerror or exc}") from None
        self._reader, self._writer = reader, writer
        self.connects += 1
        if self.username is not None:
            await self._simple(reader, writer, f"USERNAME {quote_arg(self.username)}", "USERNAME")
            if self.password is not None:
                await self._simple(reader, writer, f"PASSWORD {quote_arg(self.password)}", "PASSWORD")

    async def _simple(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str, what: str) -> None:
        await _send(writer, line)
        reply = await _read_line(reader)
        if reply == "OK" or reply.startswith("OK "):
            return
        if match := _ERR_LINE.fullmatch(reply):
            raise _err(match["code"], what)
        raise NutError(NutErrorReason.MALFORMED, f"unexpected answer to {what}: {reply[:80]!r}")

    @staticmethod
    async def _list_vars(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ups: str) -> dict[str, str]:
        await _send(writer, f"LIST VAR {ups}")
        first = await _read_line(reader)
        if match := _ERR_LINE.fullmatch(first):
            raise _err(match["code"], f"LIST VAR {ups}")
        if first != f"BEGIN LIST VAR {ups}":
            raise NutError(NutErrorReason.MALFORMED, f"expected BEGIN LIST VAR, got {first[:80]!r}")
        values: dict[str, str] = {}
        end = f"END LIST VAR {ups}"
        while True:
            line = await _read_line(reader)
            if line == end:
                return values
            match = _VAR_LINE.fullmatch(line)
            if match is None or match["ups"] != ups:
                raise NutError(NutErrorReason.MALFORMED, f"not a VAR line of {ups}: {line[:80]!r}")
            if len(values) >= MAX_VARS:
                raise NutError(NutErrorReason.TOO_LONG, f"more than {MAX_VARS} variables")
            values[match["name"]] = _UNESCAPE.sub(r"\1", match["value"])


async def _send(writer: asyncio.StreamWriter, line: str) -> None:
    try:
        writer.write(line.encode() + b"\n")
        await writer.drain()
    except OSError as exc:  # ConnectionResetError, BrokenPipeError
        raise NutError(NutErrorReason.CLOSED, f"write failed: {exc.strerror or exc}") from None


async def _read_line(reader: asyncio.StreamReader) -> str:
    """One protocol line without its line end; raises NutError for EOF, an overlong line or non-text bytes."""
    try:
        raw = await reader.readline()
    except ValueError:  # the line did not fit the stream's limit
        raise NutError(NutErrorReason.TOO_LONG, f"a line longer than {MAX_LINE_BYTES} bytes") from None
    except OSError as exc:
        raise NutError(NutErrorReason.CLOSED, f"read failed: {exc.strerror or exc}") from None
    if not raw.endswith(b"\n"):
        raise NutError(NutErrorReason.CLOSED, "the server closed the connection mid-reply" if raw else "no reply")
    try:
        line = raw[:-1].decode("utf-8").removesuffix("\r")
    except UnicodeDecodeError:
        raise NutError(NutErrorReason.MALFORMED, f"not UTF-8 text: {raw[:40]!r}") from None
    if _CONTROL.search(line):
        raise NutError(NutErrorReason.MALFORMED, f"control characters in a line: {line[:80]!r}")
    return line


# -------------------------------------------------------------------------------------------------- parsing


def parse_status(text: str) -> frozenset[str]:
    """The flags of ``ups.status`` (``"OB DISCHRG LB"`` → {OB, DISCHRG, LB}); exactly one of OL / OB required."""
    tokens = text.split(" ")
    if not text or len(text) > 64 or not all(_STATUS_TOKEN.fullmatch(t) for t in tokens):
        raise NutError(NutErrorReason.BAD_STATUS, f"ups.status {text[:80]!r} is not a list of status flags")
    flags = frozenset(tokens)
    if "WAIT" in flags and not flags & {"OL", "OB"}:  # upsd before the driver's first data (NUT ≥ 2.8)
        raise NutError(NutErrorReason.STALE, "ups.status WAIT: the driver has no data from the UPS yet")
    if ("OL" in flags) == ("OB" in flags):
        raise NutError(NutErrorReason.BAD_STATUS, f"ups.status {text!r} says neither or both of OL and OB")
    return flags


_FIELDS: Final = {
    "battery.charge": "battery_charge",
    "battery.runtime": "battery_runtime_s",
    "input.voltage": "input_voltage",
}


def parse_reading(values: dict[str, str]) -> tuple[UpsReading, list[NutError]]:
    """A :class:`UpsReading` from ``LIST VAR`` values, and the problems with its optional figures.

    A missing or unparseable ``ups.status`` raises :class:`NutError` (the reading is useless). A battery or voltage
    figure that is not a plain number in range is left out and reported in the returned list (``bad_value``):
    the mains state must not be lost over a bad figure.
    """
    status = values.get("ups.status")
    if status is None:
        raise NutError(NutErrorReason.NO_STATUS, "the UPS's variables lack ups.status")
    parse_status(status)
    problems: list[NutError] = []
    figures: dict[str, float] = {}
    for var, field in _FIELDS.items():
        text = values.get(var)
        if text is None:
            continue
        if not _NUMBER.fullmatch(text.strip()):
            problems.append(NutError(NutErrorReason.BAD_VALUE, f"{var} {text[:40]!r} is not a number"))
            continue
        try:
            UpsReading.model_validate({field: float(text)})
        except ValidationError:
            problems.append(NutError(NutErrorReason.BAD_VALUE, f"{var} {text[:40]!r} is out of range"))
            continue
        figures[field] = float(text)
    return UpsReading.model_validate({"status": status, **figures}), problems
