"""Closing rules, the unreachable rule (attempts and dayparts), the scheduler's due mails."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from cti.callbacks.clicktocall import finish_attempt
from cti.callbacks.scheduler import Due, check, due_mails, queue_once
from cti.callbacks.service import CallbackError, claim_hopper, close_hopper
from cti.services import Services, build_services
from cti.store.models import AuditEntry, Base, CallbackAttempt, Hopper, HopperEvent, OutboxMail
from dialplan.config import Config
from tests.support.memory_services import memory_services

_CALLERS = itertools.count()

# Wednesday 12 June 2024: 09:00 and 14:00 in Amsterdam (CEST, UTC+2).
WED_MORNING = datetime(2024, 6, 12, 7, 0, tzinfo=UTC)
WED_AFTERNOON = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)
DEADLINE = datetime(2024, 6, 12, 15, 0, tzinfo=UTC)  # Wednesday 17:00

CONFIG = Config.model_validate(
    {
        "kcc": {"supervisor_mailbox": "kcc@example.org"},
        "phones": [{"extension": "3001"}],
        "teams": [
            {
                "id": "vergunningen",
                "name": "Vergunningen",
                "number": "7001",
                "members": ["3001"],
                "mailbox": "verg@example.org",
                "lead_mailbox": "lead@example.org",
            }
        ],
        "callbacks": {"max_attempts": 3, "reminder_hour": 8},
    }
)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(CONFIG, tmp_path, metric_teams=["vergunningen", "kcc"]) as services:
        yield services


def hopper(deadline: datetime = DEADLINE, status: str = "open") -> Hopper:
    return Hopper(
        team_id="vergunningen",
        caller=f"06123{next(_CALLERS):05d}",  # one open hopper per caller and team
        reason="no_answer",
        created_at=deadline - timedelta(days=2),
        deadline=deadline,
        status=status,
        counts_for_norm=True,
        repeat_count=0,
        claimed_by="",
    )


async def add(services: Services, h: Hopper, *attempts: tuple[datetime, str, str]) -> int:
    async with services.sessions() as s, s.begin():
        s.add(h)
        await s.flush()
        for at, outcome, detail in attempts:
            s.add(
                CallbackAttempt(
                    hopper_id=h.id,
                    at=at,
                    member="piet",
                    extension="3001",
                    action_id="",
                    outcome=outcome,
                    detail=detail,
                )
            )
        return h.id


async def close(services: Services, hopper_id: int, reason: str, now: datetime) -> Hopper:
    async with services.sessions() as s, s.begin():
        h = await s.get(Hopper, hopper_id)
        assert h is not None
        return await close_hopper(s, h, reason, "piet", config=services.config, now=now)


async def test_reason_is_required_and_must_be_known(services: Services) -> None:
    hid = await add(services, hopper())
    for reason in ("", "  ", "opgelost"):
        with pytest.raises(CallbackError):
            await close(services, hid, reason, WED_MORNING)


async def test_within_norm_decided_once_at_closing(services: Services) -> None:
    in_time = await add(services, hopper())
    late = await add(services, hopper())
    assert (await close(services, in_time, "solved_by_email", DEADLINE)).within_norm is True
    assert (
        await close(services, late, "reached", DEADLINE + timedelta(seconds=1))
    ).within_norm is False
    # A second close is refused and changes nothing.
    with pytest.raises(CallbackError) as refused:
        await close(services, late, "answered_other_channel", WED_MORNING)
    assert refused.value.status == 409
    async with services.sessions() as s:
        h = await s.get(Hopper, late)
        assert h is not None and h.within_norm is False and h.closing_reason == "reached"
        events = await s.scalar(
            select(func.count()).select_from(HopperEvent).where(HopperEvent.kind == "closed")
        )
        audits = await s.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "close")
        )
    assert events == 2 and audits == 2


async def test_answered_other_channel_counts_as_kept_only_after_a_real_attempt(
    services: Services,
) -> None:
    async def close_other(hopper_id: int, note: str) -> Hopper:
        async with services.sessions() as s, s.begin():
            h = await s.get(Hopper, hopper_id)
            assert h is not None
            return await close_hopper(
                s,
                h,
                "answered_other_channel",
                "piet",
                config=services.config,
                note=note,
                now=WED_MORNING,
            )

    untried = await add(services, hopper())
    with pytest.raises(CallbackError):
        await close_other(untried, "")  # which channel? a note is required
    # Closed in time, but nobody tried to call back: the promise was not kept.
    assert (await close_other(untried, "was aan de balie")).within_norm is False
    tried = await add(services, hopper(), (WED_MORNING - timedelta(hours=1), "no_answer", ""))
    assert (await close_other(tried, "belde zelf terug via de app")).within_norm is True
    # The member's own phone failing is no attempt at the citizen.
    member_only = await add(
        services, hopper(), (WED_MORNING - timedelta(hours=1), "no_answer", "member:NOANSWER")
    )
    assert (await close_other(member_only, "aan de balie")).within_norm is False


async def test_duplicate_and_acquisitie_leave_the_norm(services: Services) -> None:
    for reason in ("duplicate", "acquisitie"):
        h = await close(services, await add(services, hopper()), reason, WED_MORNING)
        assert h.counts_for_norm is False and h.within_norm is None


async def test_unreachable_needs_attempts_in_two_dayparts(services: Services) -> None:
    mornings = await add(
        services,
        hopper(),
        (WED_MORNING, "no_answer", "noanswer"),
        (WED_MORNING + timedelta(minutes=30), "busy", "busy"),
        (WED_MORNING + timedelta(hours=1), "no_answer", "noanswer"),
    )
    with pytest.raises(CallbackError, match="middag"):
        await close(services, mornings, "unreachable", WED_AFTERNOON)


async def test_member_side_failures_do_not_count(services: Services) -> None:
    hid = await add(
        services,
        hopper(),
        (WED_MORNING, "no_answer", "noanswer"),
        (WED_AFTERNOON, "failed", "member:no_answer"),
        (WED_AFTERNOON, "cancelled", "member:cancel"),
        (WED_AFTERNOON, "failed", "system:no_outcome_seen"),
        (WED_AFTERNOON, "busy", "busy"),
    )
    with pytest.raises(CallbackError):
        await close(services, hid, "unreachable", WED_AFTERNOON)


async def test_unreachable_in_time_counts_as_kept_even_when_closed_later(
    services: Services,
) -> None:
    hid = await add(
        services,
        hopper(),
        (WED_MORNING, "no_answer", "noanswer"),
        (WED_AFTERNOON, "busy", "busy"),
        (DEADLINE - timedelta(minutes=5), "failed", "chanunavail"),
    )
    h = await close(services, hid, "unreachable", DEADLINE + timedelta(days=1))
    assert h.within_norm is True and h.closing_reason == "unreachable"


async def test_unreachable_with_attempts_after_the_deadline_is_not_kept(
    services: Services,
) -> None:
    hid = await add(
        services,
        hopper(),
        (WED_MORNING, "no_answer", "noanswer"),
        (WED_AFTERNOON, "busy", "busy"),
        (DEADLINE + timedelta(hours=18), "no_answer", "noanswer"),  # Thursday morning
    )
    assert (
        await close(services, hid, "unreachable", DEADLINE + timedelta(days=1))
    ).within_norm is False


async def test_reached_attempt_closes_once_and_counts_the_metric(services: Services) -> None:
    hid = await add(services, hopper(deadline=datetime.now(UTC) + timedelta(days=1)))
    async with services.sessions() as s, s.begin():
        attempt = CallbackAttempt(hopper_id=hid, member="piet", extension="3001", outcome="pending")
        s.add(attempt)
    assert await finish_attempt(services, attempt.id, "reached", "answer")
    # The same event seen by a second process changes nothing.
    assert not await finish_attempt(services, attempt.id, "no_answer", "noanswer")
    async with services.sessions() as s:
        h = await s.get(Hopper, hid)
        a = await s.get(CallbackAttempt, attempt.id)
    assert h is not None and h.status == "closed" and h.within_norm is True
    assert a is not None and a.outcome == "reached"
    rendered = services.metrics.render().decode()
    assert 'team="vergunningen",within_norm="true"} 1.0' in rendered


async def test_claim(services: Services) -> None:
    hid = await add(services, hopper())
    async with services.sessions() as s, s.begin():
        h = await s.get(Hopper, hid)
        assert h is not None
        claim_hopper(s, h, "piet")
        claim_hopper(s, h, "piet")  # idempotent for the same person
        with pytest.raises(CallbackError):
            claim_hopper(s, h, "karin")
    assert h.claimed_by == "piet"


# -- the scheduler's timers ------------------------------------------------------------


def test_due_mails_by_time() -> None:
    h = hopper()
    h.id = 7
    assert due_mails(h, CONFIG, DEADLINE - timedelta(hours=10)) == []  # Wednesday 07:00
    reminder = due_mails(h, CONFIG, WED_MORNING)  # 09:00
    assert [(m.key, m.recipient) for m in reminder] == [("reminder:7", "verg@example.org")]
    assert "Verloopt vandaag om 17:00" in reminder[0].subject
    assert "0612345678" not in reminder[0].body  # masked in mail
    assert due_mails(h, CONFIG, DEADLINE) == reminder  # the closing minute is still in time
    escalation = due_mails(h, CONFIG, DEADLINE + timedelta(seconds=1))
    assert [(m.key, m.recipient) for m in escalation] == [
        ("escalation:7:lead", "lead@example.org"),
        ("escalation:7:kcc", "kcc@example.org"),
    ]
    h.status = "closed"
    assert due_mails(h, CONFIG, DEADLINE + timedelta(days=1)) == []


async def test_queue_once_is_decided_by_the_unique_key(services: Services) -> None:
    mail = Due("reminder:1", "verg@example.org", "s", "b")
    assert await queue_once(services, mail)
    assert not await queue_once(services, mail)


async def test_check_queues_each_timer_once(services: Services) -> None:
    await add(services, hopper())
    assert await check(services, WED_MORNING) == ["reminder:1"]
    assert await check(services, WED_MORNING + timedelta(minutes=1)) == []
    assert sorted(await check(services, DEADLINE + timedelta(minutes=1))) == [
        "escalation:1:kcc",
        "escalation:1:lead",
    ]
    assert await check(services, DEADLINE + timedelta(hours=1)) == []
    async with services.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(OutboxMail)) == 3


async def test_hoppers_due_lists_today_and_overdue_per_team(tmp_path: Path) -> None:
    from sqlalchemy import create_engine as create_sync_engine

    from cti.callbacks.cli import due_today

    url = f"sqlite:///{tmp_path / 'due.db'}"
    sync = create_sync_engine(url)
    Base.metadata.create_all(sync)
    sync.dispose()
    config = CONFIG.model_copy(update={"database": CONFIG.database.model_copy(update={"url": url})})
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'due.db'}")
    services = build_services(
        config, async_sessionmaker(engine, expire_on_commit=False), home=tmp_path
    )
    overdue = await add(services, hopper(deadline=DEADLINE - timedelta(days=1)))
    today = await add(services, hopper(deadline=DEADLINE))
    await add(services, hopper(deadline=DEADLINE + timedelta(days=1)))
    await add(services, hopper(deadline=DEADLINE, status="closed"))
    await engine.dispose()
    items = await due_today(config, WED_MORNING)
    assert [(i.id, i.overdue) for i in items] == [(overdue, True), (today, False)]
