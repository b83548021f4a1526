"""The service-norm rules of cti.calls.norms, one test per rule, on in-memory SQLite."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from cti.calls.norms import hopper_gauges, norm_ratios, window_starts
from cti.store.models import Base, Call, Hopper, HopperEvent

_CALLERS = itertools.count()

TZ = "Europe/Amsterdam"
# Wednesday 12 June 2024, 14:00 in Amsterdam (CEST, UTC+2).
NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)
TEAMS = ["vergunningen", "parkeren"]
_ids = itertools.count()


@pytest.fixture
async def session() -> AsyncIterator[AsyncSession]:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with async_sessionmaker(engine, expire_on_commit=False)() as s:
        yield s
    await engine.dispose()


def call(
    team: str = "vergunningen",
    outcome: str = "answered_team",
    ago: timedelta = timedelta(hours=1),
    wait: float | None = None,
    category: str = "",
) -> Call:
    return Call(
        uniqueid=f"u{next(_ids)}",
        entry="14070",
        team_id=team,
        outcome=outcome,
        started_at=NOW - ago,
        wait_seconds=wait,
        category=category,
    )


def hopper(
    team: str = "vergunningen",
    status: str = "closed",
    within_norm: bool | None = True,
    deadline_in: timedelta = timedelta(days=2),
    ago: timedelta = timedelta(hours=1),
    counts_for_norm: bool = True,
    call_uniqueid: str = "",
) -> Hopper:
    created = NOW - ago
    return Hopper(
        team_id=team,
        caller=f"07012{next(_CALLERS):05d}",  # one open hopper per caller and team
        reason="no_answer",
        created_at=created,
        deadline=NOW + deadline_in,
        status=status,
        within_norm=within_norm,
        counts_for_norm=counts_for_norm,
        call_uniqueid=call_uniqueid,
    )


async def ratios(session: AsyncSession, *rows: object) -> dict[tuple[str, str], float | None]:
    session.add_all(list(rows))
    await session.commit()
    return await norm_ratios(session, TEAMS, NOW, TZ)


async def test_nothing_decided_gives_none_for_every_team_window_and_kcc(
    session: AsyncSession,
) -> None:
    result = await ratios(session)
    assert set(result) == {(t, w) for t in [*TEAMS, "kcc"] for w in ("today", "7d", "28d")}
    assert all(value is None for value in result.values())


async def test_answered_directly_meets_the_norm(session: AsyncSession) -> None:
    result = await ratios(session, call(), call(team="", outcome="answered_kcc"))
    assert result["vergunningen", "today"] == 1.0
    assert result["kcc", "today"] == 1.0
    assert result["parkeren", "today"] is None


async def test_kcc_is_a_team_id_too(session: AsyncSession) -> None:
    result = await ratios(session, call(team="kcc", outcome="answered_kcc"))
    assert result["kcc", "7d"] == 1.0


async def test_hopper_closed_within_norm_meets_and_outside_misses(session: AsyncSession) -> None:
    result = await ratios(
        session,
        hopper(within_norm=True),
        hopper(within_norm=False),
        hopper(within_norm=False),
        call(),
    )
    # met: 1 answered + 1 hopper in norm; decided: those + 2 hoppers out of norm
    assert result["vergunningen", "today"] == pytest.approx(2 / 4)


async def test_open_hopper_before_deadline_is_left_out(session: AsyncSession) -> None:
    result = await ratios(
        session, call(), hopper(status="open", within_norm=None, deadline_in=timedelta(hours=5))
    )
    assert result["vergunningen", "today"] == 1.0


async def test_only_open_hopper_before_deadline_is_no_sample(session: AsyncSession) -> None:
    result = await ratios(session, hopper(status="open", within_norm=None))
    assert result["vergunningen", "today"] is None


async def test_open_hopper_past_deadline_counts_as_missed(session: AsyncSession) -> None:
    result = await ratios(
        session,
        call(),
        hopper(
            status="open",
            within_norm=None,
            deadline_in=-timedelta(minutes=1),
            ago=timedelta(days=3),
        ),
    )
    assert result["vergunningen", "7d"] == pytest.approx(1 / 2)
    # The hopper is three days old: today only has the answered call.
    assert result["vergunningen", "today"] == 1.0


async def test_closed_hopper_outside_the_norms_scope_is_left_out(session: AsyncSession) -> None:
    result = await ratios(session, call(), hopper(within_norm=None))
    assert result["vergunningen", "today"] == 1.0


async def test_acquisitie_is_excluded(session: AsyncSession) -> None:
    answered_sales = call()
    result = await ratios(
        session,
        call(),
        answered_sales,
        hopper(within_norm=False, counts_for_norm=False),
        hopper(
            status="open", within_norm=None, deadline_in=-timedelta(hours=1), counts_for_norm=False
        ),
        hopper(within_norm=None, counts_for_norm=False, call_uniqueid=answered_sales.uniqueid),
    )
    assert result["vergunningen", "today"] == 1.0
    # Only the one genuine answered call is counted: add a miss and see 1/2, not 2/3.
    session.add(hopper(within_norm=False))
    await session.commit()
    again = await norm_ratios(session, TEAMS, NOW, TZ)
    assert again["vergunningen", "today"] == pytest.approx(1 / 2)


async def test_an_answered_call_categorised_acquisitie_is_out_of_the_norm(
    session: AsyncSession,
) -> None:
    result = await ratios(session, call(category="acquisitie"), hopper(within_norm=False))
    assert result["vergunningen", "today"] == 0.0


async def test_caller_who_hung_up_waiting_for_a_person_counts_as_missed(
    session: AsyncSession,
) -> None:
    result = await ratios(
        session,
        call(team="kcc", outcome="answered_kcc", wait=12.0),
        call(team="kcc", outcome="abandoned", wait=10.0),
        call(team="parkeren", outcome="abandoned", wait=None),
    )
    assert result["kcc", "today"] == pytest.approx(1 / 2)
    assert result["parkeren", "today"] == 0.0


async def test_short_abandon_and_hanging_up_in_the_menu_are_not_counted(
    session: AsyncSession,
) -> None:
    result = await ratios(
        session,
        call(team="kcc", outcome="answered_kcc", wait=3.0),
        call(team="kcc", outcome="abandoned", wait=4.9),
        call(team="", outcome="abandoned", wait=None),
    )
    assert result["kcc", "today"] == 1.0


async def test_other_outcomes_are_not_counted(session: AsyncSession) -> None:
    result = await ratios(
        session,
        call(outcome="hopper"),
        call(outcome="closed"),
        call(outcome="info"),
        call(outcome="transferred"),
    )
    assert all(value is None for value in result.values())


async def test_windows(session: AsyncSession) -> None:
    # Local midnight is 22:00 UTC the day before; 14 h ago is before it, 13 h ago after.
    result = await ratios(
        session,
        call(ago=timedelta(hours=13)),  # today: met
        hopper(within_norm=False, ago=timedelta(hours=14, minutes=30)),  # yesterday evening
        hopper(within_norm=False, ago=timedelta(days=6)),  # in 7d
        call(ago=timedelta(days=7, hours=1)),  # 28d only
        call(ago=timedelta(days=27)),  # 28d only
        hopper(within_norm=False, ago=timedelta(days=29)),  # in no window
        call(ago=-timedelta(minutes=5)),  # after now: in no window
    )
    assert result["vergunningen", "today"] == 1.0
    assert result["vergunningen", "7d"] == pytest.approx(1 / 3)
    assert result["vergunningen", "28d"] == pytest.approx(3 / 5)


def test_today_starts_at_local_midnight_also_in_winter() -> None:
    summer = window_starts(NOW, TZ)["today"]
    assert summer == datetime(2024, 6, 11, 22, 0, tzinfo=UTC)
    winter = window_starts(datetime(2024, 1, 10, 23, 30, tzinfo=UTC), TZ)["today"]
    # 00:30 local on the 11th: the day began at 23:00 UTC on the 10th.
    assert winter == datetime(2024, 1, 10, 23, 0, tzinfo=UTC)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        window_starts(datetime(2024, 6, 12, 12, 0), TZ)


async def test_teams_not_asked_for_get_no_figure(session: AsyncSession) -> None:
    result = await ratios(session, call(team="onbekend"), hopper(team="onbekend"))
    assert not any(team == "onbekend" for team, _ in result)


async def test_hopper_gauges(session: AsyncSession) -> None:
    session.add_all(
        [
            hopper(status="open", within_norm=None),
            hopper(status="open", within_norm=None, deadline_in=-timedelta(hours=1)),
            hopper(
                status="open",
                within_norm=None,
                deadline_in=-timedelta(hours=1),
                counts_for_norm=False,
            ),
            hopper(status="closed", within_norm=False, deadline_in=-timedelta(hours=1)),
            hopper(team="parkeren", status="open", within_norm=None),
        ]
    )
    await session.commit()
    assert await hopper_gauges(session, NOW) == {"vergunningen": (3, 2), "parkeren": (1, 0)}


async def test_a_caller_who_gave_up_in_the_line_and_got_a_hopper_counts_once(
    session: AsyncSession,
) -> None:
    """queue.callback_abandoned makes a KCC hopper seconds after the hang-up; the call keeps
    its outcome "abandoned". It counts through its hopper only: missed while the hopper is
    overdue, met when called back in time, not missed twice."""
    gave_up = call(team="kcc", outcome="abandoned", wait=20.0)
    linked = call(team="kcc", outcome="abandoned", wait=30.0)
    answered = call(team="kcc", outcome="answered_kcc", wait=3.0)
    late = hopper(
        team="kcc",
        status="open",
        within_norm=None,
        deadline_in=-timedelta(minutes=1),
        call_uniqueid=gave_up.uniqueid,
    )
    session.add_all([gave_up, linked, answered, late])
    await session.flush()
    session.add_all(
        [
            HopperEvent(
                hopper_id=late.id, kind="created", team_id="kcc", call_uniqueid=gave_up.uniqueid
            ),
            # The second caller gave up too and was linked to the same open hopper.
            HopperEvent(
                hopper_id=late.id, kind="repeat", team_id="kcc", call_uniqueid=linked.uniqueid
            ),
        ]
    )
    await session.commit()
    result = await norm_ratios(session, TEAMS, NOW, TZ)
    # met: the answered call; decided: it + the overdue hopper (not + two abandoned calls).
    assert result["kcc", "today"] == pytest.approx(1 / 2)
    late.status, late.within_norm = "closed", True
    await session.commit()
    again = await norm_ratios(session, TEAMS, NOW, TZ)
    assert again["kcc", "today"] == 1.0
