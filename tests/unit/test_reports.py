"""Reports: the figures per team and employee, the CSV/HTML, and the weekly mail queued once."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from cti.reports.figures import PeriodError, build_report, parse_period
from cti.reports.render import to_csv, to_html
from cti.reports.weekly import queue_weekly
from cti.services import build_services
from cti.store.models import Base, Call, Hopper, OutboxMail
from dialplan.config import Config

_CALLERS = itertools.count()

TZ = "Europe/Amsterdam"
# Tuesday 10 November 2026, in ISO week 46.
DAY = datetime(2026, 11, 10, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TEAMS = [("kcc", "KCC"), ("vergunningen", "Vergunningen")]
_ids = itertools.count()

CONFIG = {
    "phones": [{"extension": "2001"}, {"extension": "2101"}, {"extension": "2102"}],
    "kcc": {"agents": ["2001"]},
    "teams": [
        {
            "id": "vergunningen",
            "name": "Vergunningen",
            "number": "7101",
            "members": ["2101", "2102"],
            "mailbox": "vergunningen@gemeente.example",
            "lead_mailbox": "lead@gemeente.example",
        },
        {"id": "parkeren", "name": "Parkeren", "number": "7102", "mailbox": "p@example.org"},
    ],
}


@pytest.fixture
async def maker() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


def call(team: str, outcome: str, agent: str = "", category: str = "", at: datetime = DAY) -> Call:
    return Call(
        uniqueid=f"c{next(_ids)}",
        entry="14070",
        team_id=team,
        outcome=outcome,
        agent=agent,
        category=category,
        started_at=at,
    )


def hopper(
    team: str,
    status: str = "closed",
    within: bool | None = True,
    closed_by: str = "",
    overdue: bool = False,
    counts: bool = True,
    at: datetime = DAY,
) -> Hopper:
    deadline = (NOW - timedelta(hours=1)) if overdue else at + timedelta(days=2)
    return Hopper(
        team_id=team,
        caller=f"06123{next(_CALLERS):05d}",  # one open hopper per caller and team
        reason="no_answer",
        created_at=at,
        deadline=deadline,
        status=status,
        within_norm=within if status == "closed" else None,
        closed_by=closed_by,
        counts_for_norm=counts,
        category="paspoort",
    )


async def seed(session: AsyncSession) -> None:
    session.add_all(
        [
            call("kcc", "answered_kcc", "2001", "afval"),
            call("kcc", "answered_kcc", "2001", "afval"),
            call("kcc", "abandoned"),
            call("vergunningen", "answered_team", "2101", "bouwvergunning"),
            call("vergunningen", "answered_team", "2102", "bouwvergunning"),
            call("vergunningen", "hopper"),
            # Outside November: not in the report.
            call(
                "vergunningen",
                "answered_team",
                "2101",
                at=datetime(2026, 10, 31, 22, 30, tzinfo=UTC),
            ),
            hopper("vergunningen", closed_by="vera", within=True),
            hopper("vergunningen", closed_by="vera", within=False),
            hopper("vergunningen", status="open", overdue=True),
            hopper("vergunningen", status="open", at=NOW - timedelta(hours=1)),  # not due yet
            hopper("vergunningen", closed_by="vera", counts=False),  # acquisitie
        ]
    )
    await session.commit()


async def test_month_figures_per_team_and_employee(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async with maker() as session:
        await seed(session)
        report = await build_report(session, parse_period("2026-11"), TEAMS, TZ, NOW)
    kcc, verg = report.teams
    assert (kcc.calls_offered, kcc.calls_answered, kcc.calls_abandoned) == (3, 2, 1)
    assert kcc.norm_share == 1.0  # abandoned without a hopper is not owed a callback
    assert kcc.employees["2001"].calls_answered == 2
    assert (verg.calls_offered, verg.calls_answered) == (3, 2)
    assert (verg.hoppers_created, verg.hoppers_handled, verg.hoppers_within_norm) == (5, 3, 1)
    assert verg.hoppers_open_overdue == 1
    # met: 2 answered + 1 within norm; decided: + 1 late + 1 overdue (acquisitie left out)
    assert (verg.norm_met, verg.norm_decided) == (3, 5)
    assert verg.employees["vera"].hoppers_handled == 3
    assert verg.employees["2101"].calls_answered == 1  # October's call is not in November
    assert verg.categories["bouwvergunning"] == 2 and verg.categories["paspoort"] == 5


async def test_an_answered_sales_call_counts_as_answered_but_not_in_the_norm(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async with maker() as session:
        session.add_all(
            [
                call("kcc", "answered_kcc", "2001", "acquisitie"),
                call("kcc", "answered_kcc", "2001", "afval"),
                hopper("kcc", within=False),
            ]
        )
        await session.commit()
        report = await build_report(session, parse_period("2026-11"), TEAMS, TZ, NOW)
    kcc = report.teams[0]
    assert kcc.calls_answered == 2 and kcc.categories["acquisitie"] == 1
    assert (kcc.norm_met, kcc.norm_decided) == (1, 2)


async def test_csv_has_a_row_per_figure_and_html_is_dutch(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async with maker() as session:
        await seed(session)
        report = await build_report(session, parse_period("2026-11"), TEAMS, TZ, NOW)
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    by_key = {(r["team"], r["employee"], r["figure"]): r["value"] for r in rows}
    assert by_key["vergunningen", "(team)", "share_within_norm"] == "0.6000"
    assert by_key["vergunningen", "vera", "hoppers_handled"] == "3"
    assert by_key["kcc", "2001", "calls_answered"] == "2"
    assert by_key["kcc", "(team)", "category:afval"] == "2"
    page = to_html(report, "Gemeente Rijswijk")
    assert "Stuurinformatie" in page and "Servicenorm" in page and "60 %" in page
    assert 'class="norm red"' in page and 'class="norm green"' in page


def test_periods() -> None:
    assert parse_period("2026-11").bounds(TZ) == (
        datetime(2026, 10, 31, 23, 0, tzinfo=UTC),
        datetime(2026, 11, 30, 23, 0, tzinfo=UTC),
    )
    week = parse_period("2026-W46")
    assert (week.first_day, week.end_day) == (date(2026, 11, 9), date(2026, 11, 16))
    for bad in ("2026-13", "2026-W54", "november"):
        with pytest.raises(PeriodError):
            parse_period(bad)


async def test_weekly_mail_to_the_team_lead_is_queued_once(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async with maker() as session:
        await seed(session)
    services = build_services(
        Config.model_validate(CONFIG), maker, home=Path("/nonexistent")
    )
    monday = datetime(2026, 11, 16, 7, 0, tzinfo=UTC)  # week 47 has begun: mail week 46
    assert await queue_weekly(services, monday) == 1
    assert await queue_weekly(services, monday + timedelta(hours=1)) == 0
    async with maker() as session:
        mails = (await session.scalars(select(OutboxMail))).all()
    assert [(m.key, m.recipient) for m in mails] == [
        ("weekly:vergunningen:2026-W46", "lead@gemeente.example")
    ]
    # On that Monday the open hopper was not yet overdue: 3 met of 4 decided.
    assert "Servicenorm (doel 90 %): 75 %" in mails[0].body
    assert "vera: 0 / 3 / 1" in mails[0].body  # the acquisitie hopper is not in the norm
