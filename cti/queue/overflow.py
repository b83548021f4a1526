"""Closing time while callers wait: they get the callback offer instead of waiting on.

app_queue knows nothing of opening hours, so a worker looks every few seconds; when the
exchange has closed and callers are still in the KCC's line, each is moved (AMI Redirect
through the one client) to ``bereik-kcc-closing``, which takes the same overflow path as
a full line or an empty one: the hopper offer, reason ``after_hours``. The other rules
(max wait, max waiting, nobody signed in) are app_queue's own (queues.conf).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from bereik.services import Services
from cti.ami.client import AmiError
from cti.hoppers.service import opening_hours
from cti.queue import service
from cti.queue.events import line_of

log = logging.getLogger("bereik.queue")

CHECK_SECONDS = 5.0
CLOSING_CONTEXT = "bereik-kcc-closing"


async def send_waiting_to_callback(services: Services) -> int:
    """Redirect every caller in the KCC's line to the callback offer; how many went."""
    ami = services.ami
    line = line_of(services).line(service.KCC_QUEUE)
    moved = 0
    for uniqueid, channel in list(line.channels.items()):
        if ami is None or not channel:
            continue
        try:
            await ami.action(
                {
                    "Action": "Redirect",
                    "Channel": channel,
                    "Context": CLOSING_CONTEXT,
                    "Exten": "s",
                    "Priority": "1",
                }
            )
            moved += 1
        except AmiError as exc:
            log.warning(
                "closing time: caller %s not moved to the callback offer (%s)", uniqueid, exc
            )
    return moved


async def run(services: Services, interval: float | None = None) -> None:
    if not service.queue_enabled(services):
        return
    while True:
        await asyncio.sleep(interval or CHECK_SECONDS)
        try:
            line = line_of(services).line(service.KCC_QUEUE)
            if line.channels and not opening_hours(services.config).is_open(datetime.now(UTC)):
                moved = await send_waiting_to_callback(services)
                log.info("closing time: %d callers in line moved to the callback offer", moved)
        except Exception:
            log.exception("closing-time check failed")
