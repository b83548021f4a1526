"""Reports: the figures per team and employee, the CSV/HTML, the weekly mail queued once, and
the reports screen's weeks, hours of the week, Pareto and CSV; custom periods."""

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

from cti.reports import charts
from cti.reports.figures import PeriodError, add_first_line, build_report, parse_period
from cti.reports.render import to_csv, to_html
from cti.reports.service import Screen, build_screen, teams_of, to_csv_of, weeks_of
from cti.reports.weekly import queue_weekly
from cti.services import build_services
from cti.store.models import Base, Call, Hopper, OutboxMail
from cti.web.i18n import translator
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


def call(
    team: str,
    outcome: str,
    agent: str = "",
    category: str = "",
    at: datetime = DAY,
    wait: float | None = None,
) -> Call:
    return Call(
        wait_seconds=wait,
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
            call("kcc", "abandoned", wait=12.0),  # gave up waiting for a person: missed
            call("kcc", "abandoned", wait=2.0),  # a short abandon: not counted
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
    assert (kcc.calls_offered, kcc.calls_answered, kcc.calls_abandoned) == (4, 2, 2)
    # As on the board: the caller who gave up after 12 s is missed, the 2 s one not counted.
    assert (kcc.norm_met, kcc.norm_decided) == (2, 3)
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
        # With 15 s as the short abandon, the KCC's 12 s hang-up is not counted: KCC 2 of 2.
        report = await build_report(session, parse_period("2026-11"), TEAMS, TZ, NOW, 15.0)
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
    services = build_services(Config.model_validate(CONFIG), maker, home=Path("/nonexistent"))
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


# Monday 9 and Monday 16 November 2026 (ISO weeks 46 and 47), 09:15 in Amsterdam.
MON46 = datetime(2026, 11, 9, 8, 15, tzinfo=UTC)
MON47 = MON46 + timedelta(days=7)
LATER = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SCREEN_CONFIG = Config.model_validate(CONFIG)


def week_call(n: int, outcome: str, at: datetime, wait: float | None, category: str = "") -> Call:
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


def week_hopper(n: int, at: datetime, status: str, within: bool | None, overdue: bool) -> Hopper:
    return Hopper(
        team_id="vergunningen",
        caller=f"0612345{n:03d}",
        reason="no_answer",
        created_at=at,
        deadline=LATER - timedelta(hours=1) if overdue else LATER + timedelta(days=1),
        status=status,
        within_norm=within,
        closed_by="vera" if status == "closed" else "",
        category="dakkapel",
    )


async def seed_weeks(session: AsyncSession) -> None:
    session.add_all(
        [
            # Week 46: two answered (one within 30 s), one abandoned after 40 s.
            week_call(1, "answered_team", MON46, 12.0, "bouwvergunning"),
            week_call(2, "answered_team", MON46 + timedelta(minutes=20), 45.0, "bouwvergunning"),
            week_call(3, "abandoned", MON46 + timedelta(hours=2), 40.0),
            # Week 47: one answered, one abandoned within the short seconds (not counted).
            week_call(4, "answered_team", MON47 + timedelta(days=2), 5.0, "kapvergunning"),
            week_call(5, "abandoned", MON47 + timedelta(days=2), 2.0),
            week_hopper(1, MON46, "closed", True, False),
            week_hopper(2, MON47, "closed", False, False),
            week_hopper(3, MON47, "open", None, True),
        ]
    )
    await session.commit()


async def screen_of(maker: async_sessionmaker[AsyncSession], period: str) -> Screen:
    async with maker() as session:
        await seed_weeks(session)
        return await build_screen(
            session, SCREEN_CONFIG, parse_period(period), "vergunningen", LATER
        )


async def test_weeks_hours_and_pareto_of_a_custom_period(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    screen = await screen_of(maker, "2026-11-09..2026-11-22")
    w46, w47 = screen.weeks
    assert (w46.label, w47.label) == ("2026-W46", "2026-W47")
    assert (w46.in_level, w46.counted) == (1, 3)  # 45 s is past the 30 s; the hang-up counts
    assert (w47.in_level, w47.counted) == (1, 1)  # a 2 s hang-up is a wrong number
    assert (w46.within, w46.late, w46.overdue) == (1, 0, 0)
    assert (w47.within, w47.late, w47.overdue) == (0, 1, 1)
    assert w46.norm == 0.75  # 2 answered + 1 within, of 4: the caller who gave up is missed
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
    screen = await screen_of(maker, "2026-11")
    async with maker() as session:
        cli = await build_report(
            session,
            parse_period("2026-11"),
            teams_of(SCREEN_CONFIG, ["vergunningen"]),
            "Europe/Amsterdam",
            LATER,
        )
        await add_first_line(session, cli, SCREEN_CONFIG)  # as the command does
    assert to_csv_of(screen, "report") == to_csv(cli)
    employees = list(csv.DictReader(io.StringIO(to_csv_of(screen, "employees"))))
    assert {r["employee"]: r["share"] for r in employees} == {"2101": "", "vera": "0.5000"}
    hours = list(csv.DictReader(io.StringIO(to_csv_of(screen, "hours"))))
    assert sum(int(r["offered"]) for r in hours) == 5


async def test_every_chart_has_a_title_and_a_description(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    screen = await screen_of(maker, "2026-11")
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
