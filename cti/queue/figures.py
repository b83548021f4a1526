"""The waiting line's figures from the database: today's service level and ASA, the last
hour's arrivals and handling time, the expected wait a caller is told, and the forecast.

Definitions (also in docs/kcc.md):

* offered: every stay decided today (answered, abandoned, overflow, callback), by
  ``queue_calls.joined_at`` since local midnight.
* service level: answered within ``service_level_seconds`` / (answered + abandoned after
  ``short_abandon_seconds`` + overflowed). Short abandons are left out of both: someone who
  hangs up within seconds dialled wrongly; they were not kept waiting.
* ASA: the average wait of the answered.
* handling time: talk seconds of the calls that ended in the last hour, plus the wrap-up.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.calls.norms import count_if, window_starts
from cti.queue import service
from cti.queue.erlang import agents_needed
from cti.services import Services
from cti.store.faults import every
from cti.store.models import QueueCall, VirtualHold
from dialplan.config import Queue as QueueSettings

log = logging.getLogger("bereik.queue")

INTERVAL_SECONDS = 5.0
# Below this many calls handled in the last hour an average handling time is too unsure
# to promise a caller a wait, or to plan staff on.
MIN_SAMPLES = 10


@dataclass(frozen=True)
class QueueFigures:
    offered: int
    answered: int
    answered_in_level: int
    abandoned: int
    short_abandoned: int
    overflow: int
    callbacks: int
    service_level: float | None
    asa_seconds: float | None
    arrivals_last_hour: int
    handled_last_hour: int
    handle_seconds: float | None  # talk + wrap-up, None below MIN_SAMPLES
    callbacks_made: int = 0  # virtual holds for which an agent took the placeholder
    callbacks_reached: int = 0


async def queue_figures(
    session: AsyncSession, queue: str, now: datetime, tz: str, settings: QueueSettings
) -> QueueFigures:
    today = window_starts(now, tz)["today"]
    short = settings.short_abandon_seconds
    answered = QueueCall.outcome == "answered"
    abandoned = QueueCall.outcome == "abandoned"
    is_short = and_(abandoned, QueueCall.wait_seconds < short)
    row = (
        await session.execute(
            select(
                count_if(QueueCall.outcome.in_(("answered", "abandoned", "overflow", "callback"))),
                count_if(answered),
                count_if(and_(answered, QueueCall.wait_seconds <= settings.service_level_seconds)),
                count_if(abandoned),
                count_if(is_short),
                count_if(QueueCall.outcome == "overflow"),
                count_if(QueueCall.outcome == "callback"),
                func.avg(QueueCall.wait_seconds).filter(answered),
            ).where(
                QueueCall.queue == queue, QueueCall.joined_at >= today, QueueCall.joined_at <= now
            )
        )
    ).one()
    offered, n_answered, in_level, n_abandoned, n_short, n_overflow, n_callback, asa = row
    counted = int(n_answered) + int(n_abandoned) - int(n_short) + int(n_overflow)
    hour_ago = now - timedelta(hours=1)
    arrivals = await session.scalar(
        select(func.count()).where(QueueCall.queue == queue, QueueCall.joined_at >= hour_ago)
    )
    handled, talk = (
        await session.execute(
            select(func.count(), func.avg(QueueCall.talk_seconds)).where(
                QueueCall.queue == queue,
                QueueCall.left_at >= hour_ago,
                QueueCall.talk_seconds.is_not(None),
            )
        )
    ).one()
    made, reached = (
        await session.execute(
            select(
                count_if(
                    or_(VirtualHold.attempts > 0, VirtualHold.status.in_(("calling", "reached")))
                ),
                count_if(VirtualHold.status == "reached"),
            ).where(VirtualHold.queue == queue, VirtualHold.requested_at >= today)
        )
    ).one()
    handle = (
        float(talk) + settings.wrapup_seconds
        if talk is not None and int(handled) >= MIN_SAMPLES
        else None
    )
    return QueueFigures(
        offered=int(offered),
        answered=int(n_answered),
        answered_in_level=int(in_level),
        abandoned=int(n_abandoned),
        short_abandoned=int(n_short),
        overflow=int(n_overflow),
        callbacks=int(n_callback),
        service_level=int(in_level) / counted if counted else None,
        asa_seconds=float(asa) if asa is not None else None,
        arrivals_last_hour=int(arrivals or 0),
        handled_last_hour=int(handled),
        handle_seconds=handle,
        callbacks_made=int(made),
        callbacks_reached=int(reached),
    )


def expected_wait_minutes(position: int, agents: int, handle_seconds: float | None) -> int | None:
    """Whole minutes a caller at `position` can expect, or None when we cannot say.

    With N agents working, one frees up every h/N seconds on average, so the caller at
    position p waits about p·h/N. Said only when the handling time rests on enough calls
    (``handle_seconds`` is None otherwise), some agent is working, and it is between one
    and thirty minutes: "about 45 minutes" helps nobody and is rarely right.
    """
    if handle_seconds is None or agents <= 0 or position <= 0:
        return None
    minutes = math.ceil(position * handle_seconds / agents / 60)
    return minutes if 1 <= minutes <= 30 else None


def forecast(figures: QueueFigures, settings: QueueSettings) -> int | None:
    """Agents needed next hour (Erlang C), or None without a sure handling time."""
    if figures.handle_seconds is None:
        return None
    return agents_needed(
        figures.arrivals_last_hour,
        figures.handle_seconds,
        settings.service_level_target,
        settings.service_level_seconds,
    )


async def refresh(services: Services, now: datetime | None = None) -> QueueFigures | None:
    """Every line's gauges from the database; the KCC's figures (None: no KCC line)."""
    now = now or datetime.now(UTC)
    kcc = None
    for line in services.config.waiting_lines():
        figures = await refresh_line(services, line.name, now)
        if line.name == service.KCC_QUEUE:
            kcc = figures
    return kcc


async def refresh_line(services: Services, queue: str, now: datetime) -> QueueFigures:
    config = services.config
    async with services.reads() as session:
        figures = await queue_figures(session, queue, now, config.exchange.timezone, config.queue)
    views = await service.agent_views(services, now, queue)
    metrics = services.metrics.queue
    counts: dict[str, int] = {}
    for view in views:
        counts[view.state] = counts.get(view.state, 0) + 1
    metrics.set_agents(queue, counts)
    metrics.set_ratio(metrics.service_level, queue, figures.service_level)
    metrics.set_ratio(metrics.asa, queue, figures.asa_seconds)
    needed = forecast(figures, config.queue)
    metrics.set_ratio(metrics.agents_needed, queue, None if needed is None else float(needed))
    return figures


async def run(services: Services, interval: float | None = None) -> None:
    if not services.config.waiting_lines():
        return
    await every(
        interval or INTERVAL_SECONDS,
        lambda: refresh(services),
        what="the queue figures",
        logger=log,
    )
