"""``python -m edge.cameras.onvif_simulator --port P [...]``: run the ONVIF camera simulator until Ctrl+C/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal

from pydantic import SecretStr

from .config import SimulatorConfig
from .server import OnvifSimulator


def _args(argv: list[str] | None = None) -> SimulatorConfig:
    parser = argparse.ArgumentParser(prog="python -m edge.cameras.onvif_simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--advertise-host", default=None)
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password-file", default=None, help="file holding the password (default password: admin)")
    parser.add_argument("--no-auth", action="store_true")
    parser.add_argument("--rtsp-uri", default="rtsp://127.0.0.1:8554/main")
    parser.add_argument("--sub-rtsp-uri", default=None)
    parser.add_argument("--clock-offset", type=float, default=0.0, help="camera clock minus UTC, seconds")
    parser.add_argument("--max-subscription", type=float, default=60.0, help="PullPoint lifetime cap, seconds")
    parser.add_argument("--manufacturer", default="Varta")
    parser.add_argument("--model", default="SimCam-1")
    ns = parser.parse_args(argv)
    password = "admin"
    if ns.password_file:
        with open(ns.password_file, encoding="utf-8") as fh:
            password = fh.read().strip()
    return SimulatorConfig(
        host=ns.host,
        port=ns.port,
        advertise_host=ns.advertise_host,
        username=ns.username,
        password=SecretStr(password),
        auth_required=not ns.no_auth,
        rtsp_uri=ns.rtsp_uri,
        sub_rtsp_uri=ns.sub_rtsp_uri,
        clock_offset_s=ns.clock_offset,
        max_subscription_s=ns.max_subscription,
        manufacturer=ns.manufacturer,
        model=ns.model,
    )


async def _serve(config: SimulatorConfig) -> None:
    simulator = OnvifSimulator(config)
    await simulator.start()
    print(f"ONVIF simulator: {simulator.address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    asyncio.run(_serve(_args(argv)))


if __name__ == "__main__":
    main()
