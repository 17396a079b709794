"""run_command: a tool runs without a shell, within a time limit, with bounded output, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import time

from edge.kiosks.commands import MAX_OUTPUT_BYTES, run_command
from tests.edge.kiosks.fakebin import HANG, FakeBin, alive, all_gone, fails_with, fakes

__all__ = ["fakes"]  # the fixture


async def test_output_status_and_duration_are_reported(fakes: FakeBin) -> None:
    fakes.install("tool", "print('to stdout'); print('to stderr', file=sys.stderr); sys.exit(3)")
    result = await run_command(["tool", "a b", "--flag"], timeout_s=10)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"to stdout\n", b"to stderr\n")
    assert not result.ok and not result.timed_out and result.error is None
    assert 0 < result.duration_s < 10
    assert result.describe() == "tool exited with status 3: to stderr"
    assert [c.args for c in fakes.calls("tool")] == [["a b", "--flag"]]


async def test_a_successful_run_is_ok(fakes: FakeBin) -> None:
    fakes.install("tool", "print('fine')")
    result = await run_command(["tool"], timeout_s=10)
    assert result.ok and result.stdout_text == "fine\n" and result.stderr == b""


async def test_arguments_reach_the_tool_literally_never_through_a_shell(fakes: FakeBin) -> None:
    fakes.install("tool", "")
    marker = fakes.root / "pwned"
    argv = ["tool", f"$(touch {marker})", f"; touch {marker}", "*"]
    assert (await run_command(argv, timeout_s=10)).ok
    assert fakes.calls("tool")[0].args == argv[1:]
    assert not marker.exists()


async def test_input_is_fed_to_stdin_and_stdin_is_otherwise_empty(fakes: FakeBin) -> None:
    fakes.install("tool", "print(STDIN.upper(), end='')")
    assert (await run_command(["tool"], timeout_s=10, input=b"pow 0\n")).stdout == b"POW 0\n"
    assert (await run_command(["tool"], timeout_s=10)).stdout == b""  # /dev/null: it never waits for a terminal
    assert [c.stdin for c in fakes.calls("tool")] == ["pow 0\n", ""]


async def test_a_tool_that_ignores_its_input_is_not_an_error(fakes: FakeBin) -> None:
    fakes.install("tool", "")  # exits without reading the rest of a large input: a broken pipe for the writer
    result = await run_command(["tool"], timeout_s=10, input=b"x" * (4 * 1024 * 1024))
    assert result.ok


async def test_env_is_the_whole_environment_of_the_tool(fakes: FakeBin) -> None:
    fakes.install("tool", "")
    env = {"PATH": str(fakes.bin), "WAYLAND_DISPLAY": "wayland-1"}
    assert (await run_command(["tool"], timeout_s=10, env=env)).ok
    assert fakes.calls("tool")[0].env == {
        "PATH": str(fakes.bin),
        "WAYLAND_DISPLAY": "wayland-1",
        "XDG_RUNTIME_DIR": None,
    }


async def test_output_is_bounded_and_the_rest_is_drained(fakes: FakeBin) -> None:
    fakes.install("tool", "sys.stdout.write('o' * 300_000); sys.stderr.write('e' * 100)")
    result = await run_command(["tool"], timeout_s=10)
    assert result.ok  # the tool was never blocked on a full pipe
    assert result.stdout == b"o" * MAX_OUTPUT_BYTES and result.stdout_truncated
    assert result.stderr == b"e" * 100 and not result.stderr_truncated


async def test_a_missing_executable_is_a_result_not_an_exception(fakes: FakeBin) -> None:
    result = await run_command(["no-such-tool", "x"], timeout_s=10)
    assert result.not_found and result.returncode is None and not result.ok
    assert result.error is not None and "no-such-tool: not found" in result.error
    assert result.describe() == result.error


async def test_a_file_that_is_not_executable_is_a_result_too(fakes: FakeBin) -> None:
    script = fakes.install("tool", "")
    script.chmod(0o644)
    result = await run_command(["tool"], timeout_s=10)
    assert not result.not_found and result.returncode is None
    assert result.error is not None and "not executable" in result.error


async def test_a_timeout_kills_the_whole_process_group(fakes: FakeBin) -> None:
    fakes.install("tool", HANG)
    started = time.monotonic()
    result = await run_command(["tool"], timeout_s=1.5)
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < 5
    assert result.returncode == -9  # reaped before run_command returned
    pids = fakes.hung_pids()
    assert len(pids) == 2 and pids[0] == result.pid
    assert fakes.calls("tool")[0].pgid == result.pid  # a session of its own: the group is the tool's
    assert await all_gone(pids), "the tool or its child survived the timeout"
    assert "did not finish" in result.describe()


async def test_a_cancelled_caller_leaves_no_process_behind(fakes: FakeBin) -> None:
    fakes.install("tool", HANG)
    task = asyncio.create_task(run_command(["tool"], timeout_s=60))
    deadline = time.monotonic() + 10
    while len(fakes.hung_pids()) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    pids = fakes.hung_pids()
    assert len(pids) == 2 and all(alive(p) for p in pids)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the cancellation was swallowed")
    assert await all_gone(pids)


async def test_a_failing_tool_is_described_with_its_stderr(fakes: FakeBin) -> None:
    fakes.install("tool", fails_with("Display not found", 1))
    result = await run_command(["tool"], timeout_s=10)
    assert result.describe() == "tool exited with status 1: Display not found"


async def test_the_event_loop_keeps_turning_while_a_tool_runs(fakes: FakeBin) -> None:
    fakes.install("tool", "time.sleep(0.5)")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        assert (await run_command(["tool"], timeout_s=10)).ok
    finally:
        ticker.cancel()
    assert ticks >= 20
    assert os.getpgid(0) != fakes.calls("tool")[0].pgid
