"""The FastAGI paths the dialplan calls (agi://host:port/PATH), and their handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agi.handlers.hopper import hopper
from agi.handlers.ivr import ivr
from agi.handlers.operator import operator
from agi.handlers.presence import presence
from agi.handlers.quality import quality_handler
from agi.handlers.queue import agent_code, queue_entry, virtual_hold
from agi.handlers.survey import survey
from agi.handlers.team import team
from agi.server import AgiChannel, Handler
from cti.services import Services

ServiceHandler = Callable[[AgiChannel, Services], Awaitable[None]]

HANDLERS: dict[str, ServiceHandler] = {
    "ivr": ivr,
    "operator": operator,
    "team": team,
    "hopper": hopper,
    "presence": presence,
    "queue": queue_entry,
    "agent": agent_code,
    "vhold": virtual_hold,
    "survey": survey,
    "quality": quality_handler,
}


def build_routes(services: Services) -> dict[str, Handler]:
    return {path: _bind(handler, services) for path, handler in HANDLERS.items()}


def _bind(handler: ServiceHandler, services: Services) -> Handler:
    async def bound(channel: AgiChannel) -> None:
        await handler(channel, services)

    bound.__qualname__ = getattr(handler, "__qualname__", "handler")
    return bound
