"""Fake system tools for the kiosk tests: small Python scripts on a PATH of their own, so every test exercises the
real subprocess path. Each fake records its argv, stdin, pid, process group and a few environment variables, then
behaves as its body says (kept state lives in files, so a ``get`` sees an earlier ``set``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_PRELUDE = """\
import json, os, pathlib, sys, time
STATE = pathlib.Path({state!r})
STDIN = sys.stdin.read() if sys.stdin is not None else ""
ENV_KEYS = ("XDG_RUNTIME_DIR", "WAYLAND_DISPLAY", "PATH")
with open({log!r}, "a") as _fh:
    _fh.write(json.dumps({{
        "tool": os.path.basename(sys.argv[0]), "args": sys.argv[1:], "stdin": STDIN, "pid": os.getpid(),
        "pgid": os.getpgid(0), "env": {{k: os.environ.get(k) for k in ENV_KEYS}},
    }}) + "\\n")

def get(key, default):
    path = STATE / key
    return path.read_text() if path.exists() else default

def put(key, value):
    STATE.mkdir(exist_ok=True)
    (STATE / key).write_text(value)

def fail(message, code=1):
    print(message, file=sys.stderr)
    sys.exit(code)
"""

HANG = """
import subprocess
child = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(120)"])
with open(STATE.parent / "pids", "a") as fh:
    fh.write(f"{os.getpid()} {child.pid}\\n")
time.sleep(120)
"""
"""A tool that never finishes, with a child of its own; both pids go to ``<root>/pids``."""


def fails_with(message: str, code: int = 1) -> str:
    """A tool that prints *message* on stderr and exits with *code*."""
    return f"fail({message!r}, {code})\n"


@dataclass(frozen=True)
class Call:
    """One run of a fake tool."""

    tool: str
    args: list[str]
    stdin: str
    pid: int
    pgid: int
    env: dict[str, str | None]


class FakeBin:
    """A folder of fake tools that is the whole PATH."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.state = root / "state"
        self.log = root / "calls.jsonl"
        self.pids_file = root / "pids"
        monkeypatch.setenv("PATH", str(self.bin))

    def install(self, name: str, body: str) -> Path:
        """Put a fake *name* on the PATH that runs *body* (Python, after the recording prelude)."""
        script = self.bin / name
        prelude = _PRELUDE.format(state=str(self.state), log=str(self.log))
        script.write_text(f"#!{sys.executable} -S\n{prelude}\n{textwrap.dedent(body)}")
        script.chmod(0o755)
        return script

    def calls(self, tool: str | None = None) -> list[Call]:
        """Every recorded run (of *tool*), oldest first."""
        if not self.log.exists():
            return []
        calls = [Call(**json.loads(line)) for line in self.log.read_text().splitlines()]
        return [c for c in calls if tool is None or c.tool == tool]

    def set_state(self, key: str, value: str) -> None:
        """Preset a fake's kept state."""
        self.state.mkdir(exist_ok=True)
        (self.state / key).write_text(value)

    def state_of(self, key: str) -> str | None:
        """A fake's kept state."""
        path = self.state / key
        return path.read_text() if path.exists() else None

    def hung_pids(self) -> list[int]:
        """The pids :data:`HANG` fakes wrote (the tool and its child)."""
        if not self.pids_file.exists():
            return []
        return [int(p) for line in self.pids_file.read_text().splitlines() for p in line.split()]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def all_gone(pids: list[int], timeout: float = 5.0) -> bool:
    """Wait until none of *pids* is alive; False when some still are after *timeout*."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def kill_leftovers(fake_bin: FakeBin) -> None:
    """Clean-up after a failed test: never leave a hung fake running (only processes that are still the fake's)."""
    for pid in fake_bin.hung_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if alive(pid) and (str(fake_bin.bin).encode() in cmdline or b"time.sleep(120)" in cmdline):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBin]:
    """A fresh :class:`FakeBin` as the whole PATH (hung fakes are killed afterwards, whatever happened)."""
    fake_bin = FakeBin(tmp_path, monkeypatch)
    yield fake_bin
    kill_leftovers(fake_bin)
