"""The FastAPI application factory: routers, static files, and the background services in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from central.alerts.poller import AlertService
from central.api import alerts as alerts_api
from central.api import audit as audit_api
from central.api import cameras as cameras_api
from central.api import commands as commands_api
from central.api import fleet as fleet_api
from central.api import incidents as incidents_api
from central.api import kiosk_screens as kiosk_screens_api
from central.api import kiosks as kiosks_api
from central.api import live as live_api
from central.api import node_keys as node_keys_api
from central.api import reports as reports_api
from central.api import session as session_api
from central.api import stream as stream_api
from central.api import system as system_api
from central.api import tokens as tokens_api
from central.api import users as users_api
from central.commands import CommandService
from central.config import CentralConfig
from central.dashboard import camera_pages, incident_pages, kiosk_pages
from central.dashboard import routes as dashboard_routes
from central.dashboard.security import install_security_headers
from central.incidents.engine import IncidentEngine
from central.ingest.service import IngestService
from central.kiosks.alerts import KioskAlertDispatcher
from central.kiosks.publish import KioskPublisher
from central.notify.service import NotificationService
from central.services import Services
from central.store import migrate
from central.store.db import Database
from varta import __version__
from varta.mqtt import MqttClient, Subscriber
from varta.mqtt311 import Mqtt311Subscriber
from varta.signing import load_or_create_signing_key
from varta.supervise import supervise

log = structlog.get_logger(__name__)

STATIC_DIR = Path(__file__).parent / "dashboard" / "static"


def create_app(config: CentralConfig, *, start_background: bool = True) -> FastAPI:
    """Build central's app. With ``start_background=False`` no broker connection is made (tests of the API)."""
    services = Services(config=config, db=Database(config.database_url))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate.upgrade, config.database_url)
        tasks: list[asyncio.Task[None]] = []
        clients: list[Subscriber] = []
        if start_background:
            key = await asyncio.to_thread(load_or_create_signing_key, config.commands.signing_key_file)
            # Two connections: ingest (a persistent session, the protocol that receives fastest) and commands (MQTT 5
            # where possible, for message expiry and the broker's reason codes), so neither waits for the other.
            ingest_settings = config.mqtt.model_copy(update={"protocol": config.ingest.mqtt_protocol})
            ingest_id = f"varta-central-{config.instance_id}"
            mqtt: Subscriber
            if config.ingest.mqtt_protocol == "3.1.1":  # the hot path: parsed on the event loop, no paho thread
                mqtt = Mqtt311Subscriber(ingest_settings, client_id=ingest_id)
            else:
                mqtt = MqttClient(ingest_settings, client_id=ingest_id)
            command_mqtt = MqttClient(
                config.mqtt, client_id=f"varta-central-{config.instance_id}-cmd", clean_start=True
            )
            clients.extend((mqtt, command_mqtt))
            ingest = IngestService(
                mqtt, services.db, services.bus, config.ingest, offline_after_s=config.offline_after_s
            )
            ingest.subscribe()
            services.ingest = ingest
            services.commands = CommandService(command_mqtt, key, config.commands, instance_id=config.instance_id)
            services.commands.subscribe_results()
            # Alerts, incidents and notifications: each its own task, reading and writing the store in short
            # transactions, so none of them ever holds up ingest (notifications only leave through their sender).
            services.alerts = AlertService(config, services.db, services.bus)
            services.notifications = NotificationService(config, services.db)
            services.incidents = IncidentEngine(
                config,
                services.db,
                services.bus,
                on_notifications=services.notifications.wake,
                alerts_known_until=services.alerts.known_until,
            )
            app.state.kiosk_publisher = KioskPublisher(config, services.db)  # shared with the kiosk API
            services.kiosk_alerts = KioskAlertDispatcher(
                config, services.db, services.bus, services.commands, publisher=app.state.kiosk_publisher
            )
            tasks = [
                asyncio.create_task(mqtt.run(), name="mqtt-ingest"),
                asyncio.create_task(command_mqtt.run(), name="mqtt-commands"),
                asyncio.create_task(supervise("ingest", ingest.run), name="ingest"),
                asyncio.create_task(supervise("maintenance", ingest.run_maintenance), name="maintenance"),
                asyncio.create_task(supervise("command-results", services.commands.run_results), name="results"),
                asyncio.create_task(supervise("alerts", services.alerts.run), name="alerts"),
                asyncio.create_task(supervise("incidents", services.incidents.run), name="incidents"),
                asyncio.create_task(supervise("notifications", services.notifications.run), name="notifications"),
                asyncio.create_task(supervise("kiosk-alerts", services.kiosk_alerts.run), name="kiosk-alerts"),
            ]
        log.info("central.started", version=__version__, database=services.db.dialect, background=start_background)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for client in clients:
                await client.stop()
            await services.db.dispose()
            log.info("central.stopped")

    app = FastAPI(
        title="Varta central",
        version=__version__,
        description="Fleet state, events and commands for Varta edge nodes.",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.services = services
    install_security_headers(app)
    for router in (
        system_api.router,
        session_api.router,
        fleet_api.router,
        node_keys_api.router,
        kiosk_screens_api.router,
        kiosks_api.router,
        commands_api.router,
        cameras_api.router,
        live_api.router,
        alerts_api.router,
        incidents_api.router,
        reports_api.router,
        stream_api.router,
        users_api.router,
        tokens_api.router,
        audit_api.router,
        camera_pages.router,  # page routers before the dashboard's own (it has catch-all-ish routes)
        incident_pages.router,
        kiosk_pages.router,
        dashboard_routes.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
