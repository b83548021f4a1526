"""Closing time while callers wait: they get the callback offer instead of waiting on.

app_queue knows nothing of opening hours, so a worker looks every few seconds; when the
exchange has closed and callers are still in a line, each is moved (AMI Redirect through
the one client) to ``bereik-kcc-closing`` (a team's line: ``bereik-team-closing`` at the
team number), which takes the same overflow path as a full line or an empty one: the
line's hopper offer, reason ``after_hours``. The other rules
(max wait, max waiting, nobody signed in) are app_queue's own (queues.conf).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from cti.ami.client import AmiError
from cti.hoppers.service import open_now
from cti.queue import service
from cti.queue.events import is_placeholder
from cti.services import Services
from cti.store.faults import until_stored
from dialplan.config import WaitingLine

log = logging.getLogger("bereik.queue")

CHECK_SECONDS = 5.0
CLOSING_CONTEXT = "bereik-kcc-closing"
TEAM_CLOSING_CONTEXT = "bereik-team-closing"


async def send_waiting_to_callback(services: Services, line: WaitingLine) -> int:
    """Redirect every caller in this line (as Asterisk lists it) to the callback offer;
    how many went. Virtual-hold placeholders stay: their citizens hung up already."""
    ami = services.ami
    if ami is None:
        return 0
    context, exten = (TEAM_CLOSING_CONTEXT, line.number) if line.team else (CLOSING_CONTEXT, "s")
    entries = await ami.action_list({"Action": "QueueStatus", "Queue": line.name})
    moved = 0
    for entry in entries:
        channel = str(entry.get("Channel", ""))
        if entry.get("Event") != "QueueEntry" or not channel or is_placeholder(channel):
            continue
        try:
            await ami.action(
                {
                    "Action": "Redirect",
                    "Channel": channel,
                    "Context": context,
                    "Exten": exten,
                    "Priority": "1",
                }
            )
            moved += 1
        except AmiError as exc:
            log.warning("closing time: %s not moved to the callback offer (%s)", channel, exc)
    return moved


async def run(
    services: Services, interval: float | None = None, owner: asyncio.Event | None = None
) -> None:
    """`owner`: set while this process owns the call tracking (cti/calls/lease.py); with
    several processes only that one moves the callers, so none is redirected twice.

    Closed or open is the one answer every route decision gets (`open_now`, on the
    exchange's clock). A store that is down is waited out; an AMI that is down costs
    this round (the next one moves the callers); any other fault is the supervisor's.
    """
    lines = services.config.waiting_lines()
    if not lines:
        return

    async def one_round() -> None:
        if open_now(services.config):
            return
        now = datetime.now(UTC)
        for line in lines:
            waiting, _ = await service.waiting_now(services, now, line.name)
            if waiting:
                moved = await send_waiting_to_callback(services, line)
                log.info(
                    "closing time: %d callers in line %s moved to the callback offer",
                    moved,
                    line.name,
                )

    while True:
        await asyncio.sleep(interval or CHECK_SECONDS)
        if owner is not None and not owner.is_set():
            continue
        try:
            await until_stored(one_round, what="the closing-time check", logger=log)
        except AmiError as exc:
            log.warning("closing-time check: AMI unavailable (%s); next round", exc)
