"""The reports screen's figures: weeks, hours of the week, Pareto, CSV; custom periods."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from cti.reports import charts
from cti.reports.figures import PeriodError, build_report, parse_period
from cti.reports.render import to_csv
from cti.reports.service import build_screen, teams_of, to_csv_of, weeks_of
from cti.store.models import Base, Call, Hopper
from cti.web.i18n import translator
from dialplan.config import Config

CONFIG = Config.model_validate(
    {
        "phones": [{"extension": "2001"}, {"extension": "2101"}],
        "kcc": {"agents": ["2001"]},
        "teams": [
            {
                "id": "vergunningen",
                "name": "Vergunningen",
                "number": "7101",
                "members": ["2101"],
                "mailbox": "v@gemeente.example",
            }
        ],
    }
)
# Monday 9 and Monday 16 November 2026 (ISO weeks 46 and 47), 09:15 in Amsterdam.
MON46 = datetime(2026, 11, 9, 8, 15, tzinfo=UTC)
MON47 = MON46 + timedelta(days=7)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
async def maker() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


def call(n: int, outcome: str, at: datetime, wait: float | None, category: str = "") -> Call:
    return Call(
        uniqueid=f"c{n}",
        entry="14070",
        team_id="vergunningen",
        outcome=outcome,
        agent="2101" if outcome == "answered_team" else "",
        category=category,
        wait_seconds=wait,
        started_at=at,
    )


def hopper(n: int, at: datetime, status: str, within: bool | None, overdue: bool) -> Hopper:
    return Hopper(
        team_id="vergunningen",
        caller=f"0612345{n:03d}",
        reason="no_answer",
        created_at=at,
        deadline=NOW - timedelta(hours=1) if overdue else NOW + timedelta(days=1),
        status=status,
        within_norm=within,
        closed_by="vera" if status == "closed" else "",
        category="dakkapel",
    )


async def seed(session: AsyncSession) -> None:
    session.add_all(
        [
            # Week 46: two answered (one within 30 s), one abandoned after 40 s.
            call(1, "answered_team", MON46, 12.0, "bouwvergunning"),
            call(2, "answered_team", MON46 + timedelta(minutes=20), 45.0, "bouwvergunning"),
            call(3, "abandoned", MON46 + timedelta(hours=2), 40.0),
            # Week 47: one answered, one abandoned within the short seconds (not counted).
            call(4, "answered_team", MON47 + timedelta(days=2), 5.0, "kapvergunning"),
            call(5, "abandoned", MON47 + timedelta(days=2), 2.0),
            hopper(1, MON46, "closed", True, False),
            hopper(2, MON47, "closed", False, False),
            hopper(3, MON47, "open", None, True),
        ]
    )
    await session.commit()


async def test_weeks_hours_and_pareto_of_a_custom_period(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    period = parse_period("2026-11-09..2026-11-22")
    async with maker() as session:
        await seed(session)
        screen = await build_screen(session, CONFIG, period, "vergunningen", NOW)
    w46, w47 = screen.weeks
    assert (w46.label, w47.label) == ("2026-W46", "2026-W47")
    assert (w46.in_level, w46.counted) == (1, 3)  # 45 s is past the 30 s; the hang-up counts
    assert (w47.in_level, w47.counted) == (1, 1)  # a 2 s hang-up is a wrong number
    assert (w46.within, w46.late, w46.overdue) == (1, 0, 0)
    assert (w47.within, w47.late, w47.overdue) == (0, 1, 1)
    assert w46.norm == 1.0  # 2 answered + 1 within, of 3 decided
    assert w47.norm == pytest.approx(1 / 3)
    monday_nine = screen.hours[0][9]  # Monday 09:15 and 09:35 local time
    assert (monday_nine.offered, monday_nine.answered) == (2, 2)
    assert screen.hours[0][11].abandoned == 1
    assert screen.hours[2][9].offered == 2  # Wednesday of week 47
    assert [(c.name, c.count) for c in screen.pareto][:2] == [
        ("dakkapel", 3),
        ("bouwvergunning", 2),
    ]
    assert screen.pareto[-1].cumulative == 1.0


async def test_screen_report_is_bereik_reports_csv(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    period = parse_period("2026-11")
    async with maker() as session:
        await seed(session)
        screen = await build_screen(session, CONFIG, period, "vergunningen", NOW)
        cli = await build_report(
            session, period, teams_of(CONFIG, ["vergunningen"]), "Europe/Amsterdam", NOW
        )
    assert to_csv_of(screen, "report") == to_csv(cli)
    employees = list(csv.DictReader(io.StringIO(to_csv_of(screen, "employees"))))
    assert {r["employee"]: r["share"] for r in employees} == {"2101": "", "vera": "0.5000"}
    hours = list(csv.DictReader(io.StringIO(to_csv_of(screen, "hours"))))
    assert sum(int(r["offered"]) for r in hours) == 5


async def test_every_chart_has_a_title_and_a_description(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async with maker() as session:
        await seed(session)
        screen = await build_screen(session, CONFIG, parse_period("2026-11"), "vergunningen", NOW)
    t = translator("nl")
    for svg in (
        charts.norm_chart(screen.weeks, t),
        charts.callbacks_chart(screen.weeks, t),
        charts.pareto_chart(screen.pareto, t),
        charts.heat_map(screen.hours, "offered", t),
    ):
        assert 'role="img"' in svg and "<title id=" in svg and "<desc id=" in svg
    assert "week 2026-W47: servicenorm 33 %" in charts.norm_chart(screen.weeks, t)


def test_custom_periods_and_their_weeks() -> None:
    period = parse_period("2026-11-04..2026-11-10")
    assert (period.first_day, period.end_day) == (date(2026, 11, 4), date(2026, 11, 11))
    weeks = weeks_of(period)
    assert [(w.label, w.first_day, w.end_day) for w in weeks] == [
        ("2026-W45", date(2026, 11, 4), date(2026, 11, 9)),
        ("2026-W46", date(2026, 11, 9), date(2026, 11, 11)),
    ]
    for bad in ("2026-11-10..2026-11-04", "2026-02-30..2026-03-01", "2025-01-01..2026-06-01"):
        with pytest.raises(PeriodError):
            parse_period(bad)
