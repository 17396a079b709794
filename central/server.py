"""``varta central``: run the web server with the app factory."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import structlog
import uvicorn

from central.app import create_app
from central.config import CentralConfig, ConfigError, load_central_config
from varta.heap import settle_after_startup
from varta.logs import setup_logging

log = structlog.get_logger(__name__)


async def serve(config: CentralConfig) -> None:
    """Serve central until cancelled or signalled."""
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.http.host,
            port=config.http.port,
            log_config=None,
            access_log=False,
            proxy_headers=True,
            timeout_graceful_shutdown=5,
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # lifespan done: migrations run, services started
        await asyncio.sleep(0.05)
    if server.started:
        settle_after_startup()
    await serving


def main(config_path: Path | None = None) -> int:
    """Load the config and run central; returns the process exit code."""
    try:
        config = load_central_config(config_path)
    except ConfigError as exc:
        print(f"varta central: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_format)
    log.info("central.listening", url=f"http://{config.http.host}:{config.http.port}/")
    asyncio.run(serve(config))
    return 0
