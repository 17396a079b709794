"""Running the small system tools a kiosk node needs (``wlr-randr``, ``ddcutil``, ``cec-client``, ``systemctl``,
``timedatectl``, ``chronyc``) without ever blocking the event loop or leaving a process behind.

Every command is started directly (never through a shell) in a session of its own, so that on a timeout (or when
the caller is cancelled) the whole process group, grandchildren included, is killed with SIGKILL. Standard output
and error are captured up to :data:`MAX_OUTPUT_BYTES` each (the rest is read and dropped, so a chatty tool never
blocks on a full pipe). A tool that cannot be started (not installed, not executable) is a result with ``error``
set, not an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from varta.aio import wait_for

log = structlog.get_logger(__name__)

MAX_OUTPUT_BYTES: Final = 64 * 1024
"""The most of a command's stdout (and, separately, stderr) that is kept."""
REAP_TIMEOUT_S: Final = 5.0
"""How long to wait for a killed process to be reaped before giving up on it (a process stuck in the kernel)."""
_READ_CHUNK: Final = 16 * 1024
_DETAIL_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What became of one command.

    ``returncode`` is None when the process did not start (negative: ended by that signal, e.g. -9 after a
    timeout). ``error`` says why it did not start; ``not_found`` is True when the reason is that the executable (or
    its interpreter) does not exist.
    """

    argv: tuple[str, ...]
    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    duration_s: float
    error: str | None = None
    not_found: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    pid: int | None = None

    @property
    def ok(self) -> bool:
        """It started, finished in time and exited with status 0."""
        return self.error is None and not self.timed_out and self.returncode == 0

    @property
    def stdout_text(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        """stderr decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stderr.decode("utf-8", errors="replace")

    def describe(self) -> str:
        """One short line for a log or an error detail: how it ended, and the end of its stderr (or stdout)."""
        name = self.argv[0] if self.argv else "?"
        if self.error is not None:
            return self.error
        if self.timed_out:
            how = f"{name} did not finish in {self.duration_s:.1f} s (killed)"
        elif self.returncode is not None and self.returncode < 0:
            how = f"{name} was ended by signal {-self.returncode}"
        else:
            how = f"{name} exited with status {self.returncode}"
        output = (self.stderr_text.strip() or self.stdout_text.strip()).replace("\n", " | ")
        if len(output) > _DETAIL_CHARS:
            output = "…" + output[-_DETAIL_CHARS:]
        return f"{how}: {output}" if output else how


class _Capture:
    """Collects up to *limit* bytes of a stream, then reads and drops the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(_READ_CHUNK):
            room = self.limit - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            if len(chunk) > room:
                self.truncated = True


async def _feed(stream: asyncio.StreamWriter | None, data: bytes) -> None:
    if stream is None:
        return
    try:
        stream.write(data)
        await stream.drain()
    except (BrokenPipeError, ConnectionResetError):  # it exited (or closed stdin) without reading everything
        pass
    finally:
        stream.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_command(
    argv: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
) -> CommandResult:
    """Run *argv* (no shell) for at most *timeout_s* seconds and return what happened.

    *env* is the whole environment of the command (None: this process's). *input* is written to its stdin, which
    is otherwise ``/dev/null``. On a timeout, or when the caller is cancelled, the command's process group is
    killed (SIGKILL) and reaped before this returns (or re-raises the cancellation).
    """
    args = tuple(argv)
    if not args:
        raise ValueError("an empty command")
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    except OSError as exc:
        not_found = isinstance(exc, FileNotFoundError)
        if not_found:
            error = f"{args[0]}: not found (not installed, not on PATH, or its interpreter is missing)"
        elif isinstance(exc, PermissionError):
            error = f"{args[0]}: not executable ({exc.strerror or exc})"
        else:
            error = f"{args[0]}: cannot be started ({exc.strerror or exc})"
        log.debug("kiosk.command_not_started", command=args[0], error=error)
        return CommandResult(
            argv=args,
            returncode=None,
            stdout=b"",
            stderr=b"",
            timed_out=False,
            duration_s=time.monotonic() - started,
            error=error,
            not_found=not_found,
        )

    out, err = _Capture(max_output_bytes), _Capture(max_output_bytes)
    tasks = [asyncio.create_task(out.drain(proc.stdout)), asyncio.create_task(err.drain(proc.stderr))]
    if input is not None:
        tasks.append(asyncio.create_task(_feed(proc.stdin, input)))
    timed_out = False
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*tasks)
            await proc.wait()
    except TimeoutError:
        timed_out = True
    finally:
        if timed_out or proc.returncode is None:  # timed out, or the caller was cancelled: leave nothing behind
            _kill_group(proc.pid)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if proc.returncode is None:
            try:
                await wait_for(proc.wait(), REAP_TIMEOUT_S)
            except TimeoutError:
                log.error("kiosk.command_not_reaped", command=args[0], pid=proc.pid)
    result = CommandResult(
        argv=args,
        returncode=proc.returncode,
        stdout=bytes(out.data),
        stderr=bytes(err.data),
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        pid=proc.pid,
    )
    log.debug(
        "kiosk.command",
        command=args[0],
        returncode=result.returncode,
        timed_out=timed_out,
        duration_s=round(result.duration_s, 3),
    )
    return result
