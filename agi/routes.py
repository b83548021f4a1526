"""The FastAGI paths the dialplan calls (agi://host:port/PATH), and their handlers."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from agi.handlers.ivr import ivr
from agi.server import AgiChannel, Handler
from bereik.services import Services

ServiceHandler = Callable[[AgiChannel, Services], Awaitable[None]]

HANDLERS: dict[str, ServiceHandler] = {
    "ivr": ivr,
}


def build_routes(services: Services) -> dict[str, Handler]:
    return {
        path: functools.partial(handler, services=services) for path, handler in HANDLERS.items()
    }
