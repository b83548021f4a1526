"""`bereik serve`: FastAGI, the AMI listener, the web API and /metrics in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from agi import warmup
from agi.observer import AgiMetricsObserver
from agi.routes import HANDLERS, build_routes
from agi.server import FastAgiServer, Limits
from bereik.readiness import Readiness
from bereik.tls import server_context
from cti import outbox, retention
from cti.ami.bus import EventBus
from cti.announcements import http as announcements_http
from cti.announcements import pages as announcements_pages
from cti.announcements import sweeper
from cti.announcements.prompts import audio_seconds
from cti.callbacks import clicktocall, scheduler
from cti.callbacks import http as callbacks_http
from cti.callbacks import pages as callbacks_pages
from cti.calls import gauges
from cti.calls import http as calls_http
from cti.calls import lease as tracking_lease
from cti.calls import pages as calls_pages
from cti.calls.listener import CallListener
from cti.calls.live import LiveCalls
from cti.coaching import http as coaching_http
from cti.coaching import service as coaching
from cti.health import Health, watch_disk
from cti.hoppers import http as hoppers_http
from cti.journey import http as journey_http
from cti.journey import pages as journey_pages
from cti.nodes import http as nodes_http
from cti.nodes import pages as nodes_pages
from cti.nodes import service as nodes
from cti.queue import abandoned as queue_abandoned
from cti.queue import figures as queue_figures
from cti.queue import http as queue_http
from cti.queue import overflow as queue_overflow
from cti.queue import sounds as queue_sounds
from cti.queue import vhold
from cti.queue.devicestate import SharedAgentStates
from cti.queue.events import QueueEvents
from cti.reports import firstline, weekly
from cti.reports import http as reports_http
from cti.reports import pages as reports_pages
from cti.services import Services, open_services
from cti.store.cache import Notifications
from cti.store.db import STORE_DOWN
from cti.supervisor import Supervisor
from cti.survey import http as survey_http
from cti.survey import service as survey
from cti.users import pages as users_pages
from cti.voice import http as voice_http
from cti.voice import pages as voice_pages
from cti.voice import savings
from cti.web import openapi, pages
from cti.web.app import Plugin, create_app
from cti.web.server import app_runner
from dialplan.config import Config
from dialplan.render import load_secrets

log = logging.getLogger("bereik")

# On SIGTERM, how long the FastAGI sessions in progress may take to end by themselves.
# A caller's IVR or callback offer lasts well under this; systemd's TimeoutStopSec is above.
DRAIN_SECONDS = 30
# After the balancers took this process out, a connection they had already decided on may
# still be on its way: the socket stays open until none has arrived for this long.
QUIET_SECONDS = 0.5
# What the call listener has not written yet gets this long at the stop (the store may be
# down; then a standby, or nobody, writes it).
FLUSH_SECONDS = 5


async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    stop = stop or _stop_on_signals()
    server_context(config.tls)  # a bad certificate stops us before anything starts
    async with open_services(config, handlers=HANDLERS, with_ami=True) as services:
        await _run(services, stop)


async def _run(services: Services, stop: asyncio.Event) -> None:
    """Wire every part to the services and run them until `stop`.

    Each part is named here once: the data flows Asterisk -> AMI client -> bus -> call
    listener (tracker) -> store, and from the listener to the screens.
    """
    config, ami = services.config, services.ami
    assert ami is not None  # open_services(with_ami=True) made it
    bus = EventBus(
        ami.events,
        on_failure=services.metrics.ami_event_failed,
        on_subscribe=services.metrics.init_ami_subscriber,
    )
    # One process records the calls of this Asterisk (on SQLite: this one); every process
    # follows AMI for its own screens.
    lease = tracking_lease.TrackingLease.for_store(
        services.sessions, config.database.url, f"ami:{ami.host}:{ami.port}"
    )
    listener = CallListener(services, lease)
    board = LiveCalls()
    bus.subscribe(listener.on_event)
    ami.on_connected.append(listener.on_connected)
    clicktocall.subscribe(services, bus)
    # Coaching sessions' starts and ends on record, written by the tracking lease's owner.
    coaching.subscribe(services, bus, owner=lease.owned)
    listener.leg_watchers.append(board.apply)
    # The waiting lines (kcc.mode, a team's mode = "queue"). What is pushed to Asterisk on
    # a connect (members, shared agent states) is pushed by the tracking lease's owner
    # alone, also when it takes the lease over; every process reads who waits, for its own
    # gauges.
    line = QueueEvents(services)
    callbacks_in_line = vhold.VirtualHoldEvents(services)
    waiting_lines = bool(config.waiting_lines())
    if waiting_lines and config.nodes:
        # An agent busy through one node is busy on every node (cti/queue/devicestate.py).
        agent_states = SharedAgentStates(services, lease)
        listener.leg_watchers.append(agent_states.apply)
        lease.owner_duty(ami, "agent states", agent_states.push_all)
    if waiting_lines:
        bus.subscribe(line.on_event)
        bus.subscribe(callbacks_in_line.on_event)
        # Members first: asking who waits may take long while Asterisk is still starting.
        lease.owner_duty(ami, "queue members", line.restore)
        ami.on_connected.append(line.on_connected)

    agi = FastAgiServer(
        build_routes(services),
        host=config.server.agi_host,
        port=config.server.agi_port,
        limits=Limits(
            max_calls=config.server.agi_max_connections,
            stall_seconds=config.server.first_prompt_seconds / 2,
            lag_seconds=config.server.first_prompt_seconds / 4,
        ),
        command_timeout=config.server.agi_command_timeout,
        observer=AgiMetricsObserver(services.metrics, HANDLERS),
        unavailable=(SQLAlchemyError, *STORE_DOWN),
        audio_seconds=lambda sound: audio_seconds(services, sound),
        # The dialplan names this secret in every FastAGI URL (dialplan/render.py).
        secret=load_secrets(services.instance_dir / "secrets.json", config).agi,
        allowed_peers=config.server.agi_allowed_peers,
    )
    readiness = Readiness(fall=config.server.readiness_fall)
    parts = Supervisor(services.metrics)
    health = Health(services, parts, agi=lambda: agi.listening)
    # Idle and half-sent connections closed in time, the open-files limit raised.
    runner = app_runner(
        web_app(services, board, readiness, health),
        keepalive_seconds=config.server.http_keepalive_seconds,
        header_seconds=config.server.http_header_seconds,
    )
    await runner.setup()
    https = server_context(config.tls)
    site = web.TCPSite(
        runner,
        config.server.http_host,
        config.server.http_port,
        reuse_address=True,
        ssl_context=https,
    )
    # Long-running parts: started after the services exist, cancelled on shutdown.
    workers: dict[str, Callable[[], Awaitable[None]]] = {
        "call listener": listener.run,
        "call tracking lease": lease.run,
        "prompt warm-up": functools.partial(warmup.run, services),
        "announcement sweeper": functools.partial(sweeper.run, services),
        "norm gauges": functools.partial(gauges.run, services),
        "callback scheduler": functools.partial(scheduler.run, services),
        "outbox": functools.partial(outbox.run, services),
        "weekly report": functools.partial(weekly.run, services),
        "first-line figures": functools.partial(firstline.run, services),
        "retention": functools.partial(retention.run, services),
        "survey figures": functools.partial(survey.run, services),
        "announcement savings": functools.partial(savings.run, services),
        "node states": functools.partial(nodes.watch, services, listener.node_lost),
        "disk space": functools.partial(watch_disk, services),
    }
    if waiting_lines:
        workers |= {
            "queue events": line.run,
            "queue figures": functools.partial(queue_figures.run, services),
            "callers who gave up": functools.partial(
                queue_abandoned.run, services, owner=lease.owned
            ),
            "queue closing time": functools.partial(
                queue_overflow.run, services, owner=lease.owned
            ),
            "virtual hold events": callbacks_in_line.run,
            "virtual holds": functools.partial(vhold.place_worker, services),
            "waiting-line sounds": functools.partial(queue_sounds.make, services),
        }
    # Every long-running part under one supervisor: restarted with backoff when it raises,
    # its state on /metrics, /healthz and the wall screen (cti/supervisor.py).
    for name, loop in ami.loops().items():
        parts.add(name, loop)
    parts.add("ami events", bus.run)
    if isinstance(services.caches.signals, Notifications):  # PostgreSQL: the caches' trust
        parts.add("change notifications", services.caches.signals.run)
    for name, worker in workers.items():
        parts.add(name, worker)
    try:
        await agi.start()
        await site.start()
        parts.start()
        log.info(
            "serving: FastAGI %s:%s, HTTP %s://%s:%s",
            config.server.agi_host,
            agi.port,
            "https" if https else "http",
            config.server.http_host,
            config.server.http_port,
        )
        # What exists now lives as long as the process (modules, mappers, compiled
        # statements, the configuration: about 150,000 objects). Out of the collector's
        # reach, a full collection traverses only what calls create: it took 150-170 ms
        # of a loaded event loop before (measured with gc.callbacks on the bench's hopper
        # path), long enough for admission control to refuse callers for "lag".
        gc.freeze()
        await stop.wait()
        await _leave_rotation(readiness, agi, config.server.leave_rotation_seconds)
        # Drain: no new FastAGI session; those in progress finish while the AMI listener
        # and the workers still run (so their call rows and mails are written).
        left = await agi.drain(DRAIN_SECONDS)
        if left:
            log.warning(
                "stopping with %d FastAGI sessions unfinished after %d s", left, DRAIN_SECONDS
            )
        else:
            log.info("drained: no FastAGI session in progress")
    finally:
        log.info("stopping")
        await parts.stop()
        try:
            await asyncio.wait_for(listener.flush(), FLUSH_SECONDS)
        except TimeoutError:
            log.warning("%d call events not written at the stop", len(listener.pending))
        # After the listener stopped: the standby takes over at once, and writes again
        # what this process had not stored yet (it kept it).
        try:
            await asyncio.wait_for(lease.release(), 5)
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            log.warning("could not release the call tracking lease (%s); it runs out", exc)
        await ami.close()
        await agi.close()
        await runner.cleanup()


async def _leave_rotation(readiness: Readiness, agi: FastAgiServer, timeout: float) -> None:
    """Out of the balancers' rotation before the socket closes; every session that still
    reaches this process meanwhile is served (bereik/readiness.py says why)."""
    balancers = readiness.leave()
    if not balancers:
        return  # nobody routes by our readiness: nothing to wait for
    log.info("stopping: leaving the rotation of %s", ", ".join(sorted(balancers)))
    waiting = await readiness.left(timeout)
    if waiting:
        log.warning("stopping: %s still checking after %.0f s", ", ".join(waiting), timeout)
    await agi.until_quiet(QUIET_SECONDS, timeout=max(timeout, QUIET_SECONDS))
    log.info("stopping: out of the rotation")


def web_app(
    services: Services,
    board: LiveCalls,
    readiness: Readiness | None = None,
    health: Health | None = None,
) -> web.Application:
    """The web API, the screens, /healthz, /readyz and /metrics, every feature's routes."""
    plugins: list[Plugin] = [
        (readiness or Readiness()).setup,
        (health or Health(services)).setup,
        pages.setup,
        users_pages.setup,
        announcements_http.setup,
        announcements_pages.setup,
        callbacks_http.setup,
        callbacks_pages.setup,
        functools.partial(calls_http.setup, board=board),
        calls_pages.setup,
        coaching_http.setup,  # after calls_pages: it adds a part to the board
        hoppers_http.setup,
        journey_http.setup,
        journey_pages.setup,
        nodes_http.setup,
        nodes_pages.setup,
        openapi.setup,
        queue_http.setup,
        reports_http.setup,
        reports_pages.setup,
        voice_http.setup,
        voice_pages.setup,
        survey_http.setup,
    ]
    return create_app(services, plugins)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop
