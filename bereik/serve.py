"""`bereik serve`: FastAGI, the AMI listener, the web API and /metrics in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Awaitable

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from agi.routes import HANDLERS, build_routes
from agi.server import FastAgiServer
from cti.ami.bus import EventBus
from cti.ami.client import AmiClient
from cti.services import Services, instance_dir
from cti.store.db import create_engine, migrate_async, sessions
from cti.web.app import create_app
from dialplan.config import Config
from dialplan.render import load_secrets
from metrics.registry import AgiMetricsObserver, BereikMetrics

log = logging.getLogger("bereik")

# Long-running parts, each a module with `async def run(services) -> None` that is started
# after the services exist and cancelled on shutdown. Add a feature's worker here.
WORKERS: list[str] = [
    "cti.calls.listener",
    "agi.warmup",
    "cti.announcements.sweeper",
    "cti.calls.gauges",
    "cti.callbacks.scheduler",
    "cti.outbox",
    "cti.reports.weekly",
    "cti.retention",
]

# Web parts, each a module with `def setup(app: web.Application) -> None` adding its routes.
WEB_PLUGINS: list[str] = [
    "cti.announcements.http",
    "cti.callbacks.http",
    "cti.hoppers.http",
    "cti.web.pages",
    "cti.web.live",
    "cti.web.openapi",
]

# AMI subscribers, each a module with `def subscribe(services, bus) -> None`.
AMI_SUBSCRIBERS: list[str] = [
    "cti.calls.listener",
    "cti.callbacks.clicktocall",
    "cti.web.live",
]


async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    stop = stop or _stop_on_signals()
    await migrate_async(config.database.url)
    engine = create_engine(config.database.url)
    teams = [team.id for team in config.teams] + ["kcc"]
    metrics = BereikMetrics(teams=teams, handlers=HANDLERS)
    host_instance = instance_dir(config)
    services = Services(
        config=config, sessions=sessions(engine), metrics=metrics, instance_dir=host_instance
    )
    secrets = load_secrets(host_instance / "secrets.json", config)
    ami = AmiClient("127.0.0.1", config.asterisk.ami_port, config.asterisk.ami_user, secrets.ami)
    ami.on_state.append(metrics.set_ami_connected)
    services.ami = ami
    services.bus = bus = EventBus(ami.events)
    for name in AMI_SUBSCRIBERS:
        importlib.import_module(name).subscribe(services, bus)

    agi = FastAgiServer(
        build_routes(services),
        host=config.server.agi_host,
        port=config.server.agi_port,
        max_connections=config.server.agi_max_connections,
        command_timeout=config.server.agi_command_timeout,
        observer=AgiMetricsObserver(metrics, HANDLERS),
        unavailable=(SQLAlchemyError, TimeoutError),
    )
    plugins = [importlib.import_module(name).setup for name in WEB_PLUGINS]
    runner = web.AppRunner(create_app(services, plugins), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.server.http_host, config.server.http_port, reuse_address=True)
    background: list[asyncio.Task[None]] = []
    try:
        await agi.start()
        await site.start()
        ami.start()
        background.append(asyncio.create_task(bus.run(), name="ami-events"))
        for name in WORKERS:
            worker = importlib.import_module(name).run(services)
            background.append(asyncio.create_task(_supervised(name, worker), name=name))
        log.info(
            "serving: FastAGI %s:%s, HTTP http://%s:%s",
            config.server.agi_host,
            agi.port,
            config.server.http_host,
            config.server.http_port,
        )
        await stop.wait()
    finally:
        log.info("stopping")
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await ami.close()
        await agi.close()
        await runner.cleanup()
        await engine.dispose()


async def _supervised(name: str, worker: Awaitable[None]) -> None:
    """A worker that crashes is logged; the calls in progress never depend on it."""
    try:
        await worker
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("worker %s crashed; restart bereik serve to run it again", name)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop
