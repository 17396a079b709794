"""Run an :class:`OnvifSimulator` on its own event loop in a thread (for synchronous callers)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .config import SimulatorConfig
from .server import OnvifSimulator

T = TypeVar("T")


class SimulatorThread:
    """An :class:`OnvifSimulator` running in a background thread; ``call`` runs code on its loop."""

    def __init__(self, simulator: OnvifSimulator, loop: asyncio.AbstractEventLoop) -> None:
        self.simulator = simulator
        self._loop = loop

    @property
    def address(self) -> str:
        """The device service URL."""
        return self.simulator.address

    def call(self, func: Callable[[OnvifSimulator], T], timeout: float = 10.0) -> T:
        """Run ``func(simulator)`` on the simulator's loop and return its result."""

        async def run() -> T:
            return func(self.simulator)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)


@contextmanager
def run_in_thread(config: SimulatorConfig | None = None, **overrides: Any) -> Iterator[SimulatorThread]:
    """Start a simulator in a thread, yield a handle, stop it and join the thread on exit."""
    loop = asyncio.new_event_loop()
    simulator = OnvifSimulator(config, **overrides)
    ready = threading.Event()
    stop = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(simulator.start())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            ready.set()
            return
        ready.set()
        try:
            loop.run_until_complete(asyncio.to_thread(stop.wait))
        finally:
            loop.run_until_complete(simulator.stop())
            loop.close()

    thread = threading.Thread(target=main, name="onvif-simulator", daemon=True)
    thread.start()
    ready.wait(30)
    if failure:
        thread.join(5)
        raise failure[0]
    try:
        yield SimulatorThread(simulator, loop)
    finally:
        stop.set()
        thread.join(10)
