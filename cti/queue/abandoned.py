"""Callers who gave up waiting: today's callers who hung up in the KCC's line after more
than ``queue.short_abandon_seconds`` (sooner is a wrong number, not a caller kept waiting,
as in the service level and the norm), listed on the board; and with
``queue.callback_abandoned = true`` a KCC hopper for each (reason ``abandoned``), so
somebody calls them back.

The hopper is made by ``cti.hoppers.service.create_hopper``, the one path with its rules
(callback-number rule, repeat contact, mail to the KCC's mailbox, the 2-working-day
clock). On top of those: once per caller per day (a caller who gives up three times gets
one callback), never for an anonymous number, never for an acquisitie caller (a call
categorised ``acquisitie``, or a number that had an acquisitie hopper).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, select

from cti.calls.norms import window_starts
from cti.hoppers.service import HopperError, create_hopper
from cti.queue.service import KCC_QUEUE
from cti.services import Services
from cti.store.faults import every, store_or_set_aside
from cti.store.models import Call, Hopper, HopperEvent, QueueCall, SetAside
from dialplan.config import ACQUISITION

log = logging.getLogger("bereik.queue")

REASON = "abandoned"
# The name its refused callbacks are set aside under (cti/store/faults.py).
SOURCE = "abandoned callback"
INTERVAL_SECONDS = 5.0
BOARD_ROWS = 50  # a wall screen shows the latest; the count says how many there were
# A number we can call back at all: at least six digits ("anonymous", "" and short internal
# extensions are not).
KNOWN_NUMBER = re.compile(r"^\+?\d{6,}$")


@dataclass
class _NoCallback:
    """Today's stays that get no callback, as (uniqueid, caller): the callback rule refused
    the number, or `_excepted` said why not (none of its reasons goes away later in the
    day). Not looked at again on every pass: on a day when many callers give up again and
    again, each such stay cost two queries every few seconds. Per process, emptied when
    the day changes."""

    day: datetime | None = None
    stays: set[tuple[str, str]] = field(default_factory=set)

    def of(self, day: datetime) -> set[tuple[str, str]]:
        if day != self.day:
            self.day, self.stays = day, set()
        return self.stays


_NO_CALLBACK = _NoCallback()


async def gave_up_today(services: Services, now: datetime | None = None) -> list[dict[str, Any]]:
    """Today's callers who hung up in the KCC's line after the short-abandon seconds, the
    latest first, with the KCC hopper made for them (its id) if any."""
    now = now or datetime.now(UTC)
    config = services.config
    today = window_starts(now, config.exchange.timezone)["today"]
    zone = ZoneInfo(config.exchange.timezone)
    # The hopper this stay made, or the open one it was linked to as a repeat contact.
    hopper = (
        select(HopperEvent.hopper_id)
        .where(
            HopperEvent.call_uniqueid == QueueCall.uniqueid,
            HopperEvent.kind.in_(("created", "repeat")),
        )
        .limit(1)
        .scalar_subquery()
    )
    async with services.reads() as session:
        rows = (
            await session.execute(
                select(
                    QueueCall.uniqueid,
                    QueueCall.caller,
                    QueueCall.joined_at,
                    QueueCall.left_at,
                    QueueCall.wait_seconds,
                    hopper,
                )
                .where(
                    QueueCall.queue == KCC_QUEUE,
                    QueueCall.outcome == "abandoned",
                    QueueCall.wait_seconds >= config.queue.short_abandon_seconds,
                    QueueCall.joined_at >= today,
                )
                .order_by(QueueCall.joined_at.desc())
            )
        ).all()
    return [
        {
            "call": uniqueid,
            "caller": caller,
            "joined_at": joined.isoformat(),
            "at": f"{joined.astimezone(zone):%H:%M}",
            "left_at": left.isoformat() if left else None,
            "wait_seconds": round(wait or 0.0, 1),
            "hopper": hopper_id,
        }
        for uniqueid, caller, joined, left, wait, hopper_id in rows
    ]


async def board_part(services: Services) -> dict[str, Any]:
    """The board's list, the latest BOARD_ROWS (numbers in full: the board masks them per
    role), and how many there were today."""
    callers = await gave_up_today(services)
    return {
        "callers": callers[:BOARD_ROWS],
        "total": len(callers),
        "short_abandon_seconds": services.config.queue.short_abandon_seconds,
        "callback": services.config.queue.callback_abandoned,
    }


async def _excepted(services: Services, caller: str, uniqueid: str, today: datetime) -> str:
    """Why this caller gets no hopper ("" when they get one)."""
    if not KNOWN_NUMBER.match(caller):
        return "anonymous"
    async with services.reads() as session:
        sales = await session.scalar(
            select(
                exists().where(Call.uniqueid == uniqueid, Call.category == ACQUISITION)
                | exists().where(Hopper.caller == caller, Hopper.counts_for_norm.is_(False))
            )
        )
        if sales:
            return "acquisitie"
        # Another stay of this caller today already made (or joined) a hopper.
        done = await session.scalar(
            select(
                exists().where(
                    and_(
                        QueueCall.caller == caller,
                        QueueCall.joined_at >= today,
                        HopperEvent.call_uniqueid == QueueCall.uniqueid,
                        HopperEvent.kind.in_(("created", "repeat")),
                    )
                )
            )
        )
    return "already today" if done else ""


async def _set_aside_stays(services: Services) -> set[str]:
    """The stays whose callback the store refused and that wait for `bereik events retry`:
    not tried again on every pass, nor set aside a second time after a restart."""
    async with services.reads() as session:
        payloads = await session.execute(
            select(SetAside.payload).where(
                SetAside.source == SOURCE, SetAside.replayed_at.is_(None)
            )
        )
        return {str(payload.get("uniqueid", "")) for payload in payloads.scalars()}


async def _make(
    services: Services,
    stay: Mapping[str, Any],
    made: list[int],
    refused: set[tuple[str, str]] | None = None,
) -> None:
    """The KCC hopper for one stay; a number the callback rule refuses is remembered in
    `refused` (the day's stays that get no callback, `_NO_CALLBACK`)."""
    try:
        hopper = await create_hopper(
            services,
            team_id="kcc",
            caller=str(stay["caller"]),
            reason=REASON,
            note=f"Opgehangen na {float(stay['wait_seconds']):.0f} s in de wachtrij van het KCC.",
            call_uniqueid=str(stay["uniqueid"]),
            actor="system",
        )
    except HopperError as exc:
        # A number the callback rule refuses (0900, abroad): nobody can call it back.
        log.info("no callback for a caller who gave up waiting: %s", exc)
        if refused is not None:
            refused.add((str(stay["uniqueid"]), str(stay["caller"])))
        return
    made.append(hopper.id)


async def call_back(services: Services, now: datetime | None = None) -> list[int]:
    """A KCC hopper for each of today's callers who gave up and has none yet; their ids.
    A hopper the store refuses is set aside with its stay (cti/store/faults.py), so one bad
    row neither stops the callers after it nor is tried again on every pass."""
    if not services.config.queue.callback_abandoned:
        return []
    now = now or datetime.now(UTC)
    today = window_starts(now, services.config.exchange.timezone)["today"]
    made: list[int] = []
    decided = _NO_CALLBACK.of(today)
    stays = [
        stay
        for stay in reversed(await gave_up_today(services, now))
        if stay["hopper"] is None and (stay["call"], stay["caller"]) not in decided
    ]
    aside = await _set_aside_stays(services) if stays else set()
    # Oldest first: the one a caller gets is for their first wait of the day.
    for stay in stays:
        if stay["call"] in aside:
            continue
        why_not = await _excepted(services, stay["caller"], stay["call"], today)
        if why_not:
            decided.add((stay["call"], stay["caller"]))
            continue
        payload = {
            "uniqueid": stay["call"],
            "caller": stay["caller"],
            "wait_seconds": stay["wait_seconds"],
        }
        await store_or_set_aside(
            services.sessions,
            SOURCE,
            payload,
            functools.partial(_make, services, payload, made, decided),
            metrics=services.metrics,
            logger=log,
        )
    return made


async def replay(services: Services, payload: Mapping[str, Any]) -> None:
    """`bereik events retry`: make the set-aside callback, unless the stay has one by now
    (a hopper made by hand, or a repeat contact linked meanwhile)."""
    async with services.reads() as session:
        has_one = await session.scalar(
            select(
                exists().where(
                    HopperEvent.call_uniqueid == str(payload["uniqueid"]),
                    HopperEvent.kind.in_(("created", "repeat")),
                )
            )
        )
    if not has_one:
        await _make(services, payload, [])


async def run(
    services: Services, interval: float | None = None, owner: asyncio.Event | None = None
) -> None:
    """`owner`: set while this process owns the call tracking (cti/calls/lease.py); with
    several processes only that one makes the hoppers, so no caller gets two. Each pass by
    the store's policy: waited out while the store is down, any other fault the
    supervisor's (cti/supervisor.py)."""
    if not services.config.queue.callback_abandoned:
        return

    async def one_pass() -> None:
        if owner is None or owner.is_set():
            await call_back(services)

    await every(
        interval or INTERVAL_SECONDS,
        one_pass,
        what="the callbacks for callers who gave up",
        logger=log,
    )
