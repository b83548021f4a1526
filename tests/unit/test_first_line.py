"""First-line resolution and the callers who gave up waiting, from rows in the store: the
definitions (cti/reports/firstline.py, cti/queue/abandoned.py) case by case. The same
figures from real calls: tests/e2e/test_first_line.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cti.queue import abandoned
from cti.reports import firstline
from cti.reports.figures import add_first_line, build_report, iso_week, parse_period
from cti.reports.render import to_csv, to_text
from cti.services import Services
from cti.store.models import Call, Hopper, HopperEvent, QueueCall
from dialplan.config import ACQUISITION
from tests.support.memory_services import CONFIG, memory_services

# A Tuesday morning, local time 10:00 (a working day).
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def call(uniqueid: str, caller: str, minutes: int, **fields: object) -> Call:
    values: dict[str, object] = {
        "uniqueid": uniqueid,
        "linkedid": uniqueid,
        "entry": "14070",
        "caller": caller,
        "started_at": NOW - timedelta(minutes=minutes),
        "answered_by": "kcc",
        "team_id": "kcc",
        "outcome": "answered_kcc",
        **fields,
    }
    return Call(**values)


def hopper(uniqueid: str, caller: str, team: str, reason: str, **fields: object) -> Hopper:
    return Hopper(
        team_id=team,
        caller=caller,
        reason=reason,
        call_uniqueid=uniqueid,
        created_at=NOW - timedelta(minutes=30),
        deadline=NOW + timedelta(days=2),
        **fields,
    )


async def store(services: Services, *rows: object) -> None:
    async with services.sessions() as session:
        session.add_all(rows)
        await session.commit()


async def test_first_line_counts_handled_transferred_hoppers_and_repeat_callers(
    tmp_path: Path,
) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        await store(
            services,
            call("1", "0611111111", 120),  # handled by the KCC
            call("2", "0622222222", 110, team_id="vergunningen", outcome="answered_team"),
            call("3", "0633333333", 100, team_id="vergunningen", outcome="hopper"),
            # The agent made a hopper by hand for a team: a hopper, not a transfer.
            call("4", "0644444444", 90, team_id="vergunningen", outcome="hopper"),
            hopper("4", "0644444444", "vergunningen", "manual"),
            # Made from the KCC screen after the call had ended: still a hopper.
            call("5", "0655555555", 80),
            hopper("5", "0655555555", "kcc", "manual"),
            # Acquisitie: left out altogether.
            call("6", "0666666666", 70, category=ACQUISITION),
            # Anonymous: answered, but no number to recognise a repeat by.
            call("7", "anonymous", 60),
            # The first caller again, an hour later (hung up in the menu): a repeat.
            call("8", "0611111111", 10, answered_by="", team_id="", outcome="abandoned"),
            # A team answering its own number directly.
            call(
                "9",
                "0699999999",
                50,
                entry="7001",
                answered_by="vergunningen",
                team_id="vergunningen",
                outcome="answered_team",
            ),
        )
        async with services.sessions() as session:
            start = NOW - timedelta(hours=8)
            found = await firstline.first_line(session, CONFIG, start, NOW)
    kcc = found["kcc"]
    assert (kcc.answered, kcc.handled, kcc.passed_on, kcc.hoppers) == (6, 2, 2, 3)
    assert kcc.share == 2 / 6
    assert (kcc.callers, kcc.repeat_callers) == (5, 1)
    team = found["vergunningen"]
    assert (team.answered, team.handled, team.transfers_in) == (1, 1, 2)
    assert team.repeat_callers == 0


async def test_a_repeat_counts_only_within_the_working_days(tmp_path: Path) -> None:
    config = CONFIG.model_copy(update={"norms": CONFIG.norms.model_copy(update={"repeat_days": 1})})
    async with memory_services(config, tmp_path) as services:
        # Answered on Monday 30 November; again on Tuesday (day 1: a repeat) for one
        # caller, on Thursday (day 3: not a repeat within 1 working day) for the other.
        monday = NOW - timedelta(days=1)
        await store(
            services,
            call("1", "0611111111", 0, started_at=monday),
            call("2", "0622222222", 0, started_at=monday),
            call("3", "0611111111", 0, started_at=monday + timedelta(days=1)),
            call("4", "0622222222", 0, started_at=monday + timedelta(days=3)),
        )
        async with services.sessions() as session:
            days = await firstline.first_line_by_day(
                session, config, monday - timedelta(hours=1), monday + timedelta(hours=1)
            )
    (figures,) = days.values()
    assert (figures["kcc"].callers, figures["kcc"].repeat_callers) == (2, 1)


async def test_a_number_answered_all_day_is_one_repeat_caller_and_a_call_seen_twice_none(
    tmp_path: Path,
) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        # 0611111111 answered 300 times, a minute apart; 0622222222's one call recorded
        # twice within a second (the same call seen twice); 0633333333 again after 2 s.
        await store(
            services,
            *(call(f"a{n}", "0611111111", 400 - n) for n in range(300)),
            call("b1", "0622222222", 50),
            call("b2", "0622222222", 50, started_at=NOW - timedelta(minutes=50, seconds=-1)),
            call("c1", "0633333333", 40),
            call("c2", "0633333333", 40, started_at=NOW - timedelta(minutes=40, seconds=-2)),
        )
        async with services.sessions() as session:
            figures = await firstline.first_line(
                session, CONFIG, NOW - timedelta(hours=8), NOW + timedelta(seconds=1)
            )
    assert (figures["kcc"].callers, figures["kcc"].repeat_callers) == (3, 2)
    assert figures["kcc"].answered == 304


async def test_first_line_figures_on_metrics_with_the_target(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        await store(
            services,
            call("1", "0611111111", 30),
            call("2", "0622222222", 20, team_id="vergunningen", outcome="answered_team"),
        )
        await firstline.refresh(services, NOW)
        text = services.metrics.render().decode()
    assert 'bereik_first_line_ratio{team="kcc"} 0.5' in text
    assert 'bereik_first_line_transfers{to_team="vergunningen"} 1.0' in text
    assert "bereik_first_line_target 0.8" in text


async def test_the_live_figures_are_computed_once_for_every_board_within_ten_seconds(
    tmp_path: Path,
) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        now = datetime.now(UTC)
        await store(services, call("1", "0611111111", 0, started_at=now))
        first = await firstline.board_part(services)
        await store(services, call("2", "0622222222", 0, started_at=now))
        second = await firstline.board_part(services)
        moment = await firstline.today(services, now + timedelta(seconds=1))
    kcc = "kcc"
    assert first["teams"][kcc]["answered"] == second["teams"][kcc]["answered"] == 1  # type: ignore[index]
    assert moment[kcc].answered == 2  # a given moment is always computed


def stay(uniqueid: str, caller: str, wait: float, minutes: int) -> QueueCall:
    joined = datetime.now(UTC) - timedelta(minutes=minutes)
    return QueueCall(
        queue="kcc",
        uniqueid=uniqueid,
        caller=caller,
        joined_at=joined,
        left_at=joined + timedelta(seconds=wait),
        outcome="abandoned",
        wait_seconds=wait,
    )


async def test_callers_who_gave_up_get_one_kcc_hopper_each_per_day(tmp_path: Path) -> None:
    config = CONFIG.model_copy(
        update={"queue": CONFIG.queue.model_copy(update={"callback_abandoned": True})}
    )
    async with memory_services(config, tmp_path) as services:
        await store(
            services,
            stay("a1", "0611111111", 20, 9),
            stay("a2", "0611111111", 30, 5),  # the same caller again: no second hopper
            stay("b", "0622222222", 3, 8),  # shorter than short_abandon_seconds: not listed
            stay("c", "anonymous", 40, 7),  # nobody to call back
            stay("d", "0900123456", 40, 6),  # a number the callback rule refuses
            stay("e", "0655555555", 40, 4),  # a known sales caller
            hopper("old", "0655555555", "kcc", "manual", counts_for_norm=False, status="closed"),
        )
        listed = await abandoned.gave_up_today(services)
        assert [s["call"] for s in listed] == ["e", "a2", "d", "c", "a1"]
        made = await abandoned.call_back(services)
        assert await abandoned.call_back(services) == []  # once
        async with services.sessions() as session:
            rows = (await session.execute(select(Hopper).where(Hopper.reason == "abandoned"))).all()
            events = (await session.execute(select(HopperEvent.call_uniqueid))).scalars().all()
        shown = {s["call"]: s["hopper"] for s in await abandoned.gave_up_today(services)}
    assert len(made) == 1 and [(h.caller, h.team_id) for (h,) in rows] == [("0611111111", "kcc")]
    assert list(events) == ["a1"]  # for the first wait of the day
    assert shown == {"a1": made[0], "a2": None, "c": None, "d": None, "e": None}


async def test_a_stay_that_gets_no_callback_is_not_looked_up_again_on_every_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = CONFIG.model_copy(
        update={"queue": CONFIG.queue.model_copy(update={"callback_abandoned": True})}
    )
    looked_up: list[str] = []
    excepted = abandoned._excepted

    async def counted(services: Services, caller: str, uniqueid: str, today: datetime) -> str:
        looked_up.append(uniqueid)
        return await excepted(services, caller, uniqueid, today)

    monkeypatch.setattr(abandoned, "_excepted", counted)
    async with memory_services(config, tmp_path) as services:
        # One caller who gave up 40 times on a bad day: one callback, 39 stays without.
        await store(services, *(stay(f"many{i}", "0687654321", 20, 60 - i) for i in range(40)))
        made = await abandoned.call_back(services)
        first_pass = len(looked_up)
        assert await abandoned.call_back(services) == []
    assert len(made) == 1 and first_pass == 40
    assert len(looked_up) == first_pass  # the next pass asked nothing again


async def test_the_board_shows_the_latest_callers_who_gave_up_and_how_many(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        await store(services, *(stay(f"s{i}", f"06111111{i:02d}", 20, 60 - i) for i in range(55)))
        part = await abandoned.board_part(services)
    assert part["total"] == 55 and len(part["callers"]) == abandoned.BOARD_ROWS
    assert part["callers"][0]["call"] == "s54"  # the latest first


async def test_no_hopper_for_callers_who_gave_up_unless_configured(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        await store(services, stay("a", "0611111111", 20, 3))
        assert await abandoned.call_back(services) == []
        assert [s["caller"] for s in await abandoned.gave_up_today(services)] == ["0611111111"]


async def test_the_monday_mail_and_the_csv_carry_first_line_resolution(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        await store(
            services,
            call("1", "0611111111", 30),
            call("2", "0622222222", 20, team_id="vergunningen", outcome="answered_team"),
        )
        async with services.sessions() as session:
            period = parse_period(iso_week(NOW.date()))
            teams = [("kcc", "KCC"), ("vergunningen", "Vergunningen")]
            report = await build_report(session, period, teams, "Europe/Amsterdam", NOW)
            await add_first_line(session, report, CONFIG)
    kcc, team = report.teams
    mail = to_text(report, kcc)
    assert "Eerstelijnsafhandeling (doel 80 %): 50 %: 1 van 2 aangenomen" in mail
    assert "Opnieuw gebeld binnen 5 werkdagen: 0 van 2 bellers" in mail
    assert "Doorverbonden naar dit team: 1" in to_text(report, team)
    assert ",kcc,(team),first_line_share,0.5000" in to_csv(report)


async def test_the_calls_a_team_did_not_handle_itself_are_listed_with_why(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        await store(
            services,
            call("1", "0611111111", 40),
            call("2", "0622222222", 30, team_id="vergunningen", outcome="answered_team"),
            call("3", "0633333333", 20, team_id="vergunningen", outcome="hopper"),
        )
        async with services.sessions() as session:
            found = await firstline.answered_calls(session, NOW - timedelta(hours=1), NOW, "kcc")
    assert [(c.caller, c.handled, c.passed_on, c.hopper) for c in found] == [
        ("0611111111", True, False, False),
        ("0622222222", False, True, False),
        ("0633333333", False, True, True),
    ]
