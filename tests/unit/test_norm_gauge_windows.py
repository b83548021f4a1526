"""The norm gauges' worker: the 7- and 28-day windows' part before today is read once a
minute, today's every round, and the sum is the ratio read whole."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cti.calls.gauges import Gauges
from cti.calls.norms import WINDOWS, norm_ratios
from cti.services import Services
from cti.store.models import Call, Hopper
from tests.support.memory_services import CONFIG, memory_services

TZ = "Europe/Amsterdam"
# Wednesday 12 June 2024, 14:00 in Amsterdam.
NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)
_ids = itertools.count()


def call(
    outcome: str = "answered_team", ago: timedelta = timedelta(hours=1), wait: float | None = None
) -> Call:
    return Call(
        uniqueid=f"u{next(_ids)}",
        entry="14070",
        team_id="vergunningen",
        outcome=outcome,
        started_at=NOW - ago,
        wait_seconds=wait,
    )


def hopper(within_norm: bool = True, ago: timedelta = timedelta(hours=1)) -> Hopper:
    return Hopper(
        team_id="vergunningen",
        caller=f"07012{next(_ids):05d}",  # one open hopper per caller and team
        reason="no_answer",
        created_at=NOW - ago,
        deadline=NOW + timedelta(days=2),
        status="closed",
        within_norm=within_norm,
        counts_for_norm=True,
    )


def shown(services: Services) -> dict[tuple[str, str], float | None]:
    teams = [team.id for team in CONFIG.teams] + ["kcc"]
    return {
        (team, window): services.metrics.registry.get_sample_value(
            "bereik_service_norm_ratio", {"team": team, "window": window}
        )
        for team in teams
        for window in WINDOWS
    }


async def whole(services: Services) -> dict[tuple[str, str], float | None]:
    async with services.sessions() as session:
        return await norm_ratios(session, [team.id for team in CONFIG.teams], NOW, TZ)


async def add(services: Services, *rows: object) -> None:
    async with services.sessions() as session:
        session.add_all(list(rows))
        await session.commit()


async def test_the_wide_windows_move_with_todays_calls_between_their_reads_of_the_past(
    tmp_path: Path,
) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        await add(
            services,
            call(ago=timedelta(days=3)),
            call(outcome="abandoned", wait=30, ago=timedelta(days=10)),
            hopper(within_norm=False, ago=timedelta(days=20)),
            call(ago=timedelta(hours=1)),
        )
        gauges = Gauges(services)
        await gauges.refresh(NOW)
        read_at = gauges.before_at
        assert shown(services) == await whole(services)

        # Today moves on: an abandoned call and a hopper closed in the norm.
        await add(services, call(outcome="abandoned", wait=30), hopper(ago=timedelta(minutes=5)))
        await gauges.refresh(NOW)
        assert gauges.before_at == read_at  # the four weeks before today were not read again
        assert shown(services) == await whole(services)
        assert shown(services)[("vergunningen", "28d")] == 3 / 6
