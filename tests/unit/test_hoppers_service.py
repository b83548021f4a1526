"""create_hopper's rules: deadline, repeat contact, acquisitie, mail in the same transaction."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cti.hoppers.service import HopperError, create_hopper, reassign_hopper
from cti.services import Services, build_services
from cti.store.db import create_engine, sessions
from cti.store.models import Hopper, HopperEvent, OutboxMail
from tests.support.memory_services import CONFIG, memory_services

# Monday 10 June 2024, 10:00 in Amsterdam (CEST, UTC+2).
MONDAY_10 = datetime(2024, 6, 10, 8, 0, tzinfo=UTC)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(CONFIG, tmp_path) as services:
        yield services


async def count(services: Services, model: type) -> int:
    async with services.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


def created_metric(services: Services, team: str, reason: str) -> float:
    value = services.metrics.registry.get_sample_value(
        "bereik_hoppers_created_total", {"team": team, "reason": reason}
    )
    return value or 0.0


async def test_new_hopper_has_deadline_event_mail_and_metric(services: Services) -> None:
    h = await create_hopper(
        services,
        team_id="vergunningen",
        caller="070 123 45 67",
        reason="no_answer",
        agent="2001",
        category="kapvergunning",
        created_at=MONDAY_10,
    )
    assert h.status == "open" and h.caller == "0701234567" and h.agent == "2001"
    # Two working days after Monday: Wednesday 17:00 Amsterdam = 15:00 UTC.
    assert h.deadline == datetime(2024, 6, 12, 15, 0, tzinfo=UTC)
    async with services.sessions() as s:
        events = (await s.execute(select(HopperEvent))).scalars().all()
        mails = (await s.execute(select(OutboxMail))).scalars().all()
    assert [e.kind for e in events] == ["created"]
    assert len(mails) == 1 and mails[0].recipient == "verg@example.org"
    assert "0701234567" in mails[0].body and "12-06-2024 17:00" in mails[0].body
    assert "KCC Anna (2001)" in mails[0].body and "kapvergunning" in mails[0].body
    assert created_metric(services, "vergunningen", "no_answer") == 1


async def test_team_norm_working_days_used(services: Services) -> None:
    h = await create_hopper(
        services, team_id="stadsbeheer", caller="0612345678", reason="busy", created_at=MONDAY_10
    )
    assert h.deadline == datetime(2024, 6, 13, 15, 0, tzinfo=UTC)


async def test_repeat_contact_links_to_open_hopper(services: Services) -> None:
    first = await create_hopper(
        services,
        team_id="vergunningen",
        caller="0701234567",
        reason="no_answer",
        created_at=MONDAY_10,
    )
    again = await create_hopper(
        services, team_id="vergunningen", caller="070-1234567", reason="busy", note="belt weer"
    )
    assert again.id == first.id and again.repeat_count == 1
    assert again.deadline == first.deadline
    assert await count(services, Hopper) == 1
    async with services.sessions() as s:
        kinds = (await s.execute(select(HopperEvent.kind).order_by(HopperEvent.id))).scalars()
        assert list(kinds) == ["created", "repeat"]
    assert created_metric(services, "vergunningen", "busy") == 0
    # Another team is another piece of work.
    other = await create_hopper(
        services, team_id="stadsbeheer", caller="0701234567", reason="no_answer"
    )
    assert other.id != first.id


async def test_acquisition_closed_at_once_outside_norm(services: Services) -> None:
    h = await create_hopper(
        services,
        team_id="vergunningen",
        caller="0201112222",
        reason="no_answer",
        category="Acquisitie",
    )
    assert h.status == "closed" and h.counts_for_norm is False
    assert h.closing_reason == "acquisitie"
    assert await count(services, OutboxMail) == 0
    # A later real question from the same number is its own hopper.
    real = await create_hopper(
        services, team_id="vergunningen", caller="0201112222", reason="no_answer"
    )
    assert real.id != h.id and real.status == "open"


async def test_bad_input_is_refused(services: Services) -> None:
    with pytest.raises(HopperError):
        await create_hopper(services, team_id="nope", caller="070", reason="no_answer")
    with pytest.raises(HopperError):
        await create_hopper(services, team_id="vergunningen", caller="", reason="no_answer")
    with pytest.raises(HopperError):
        await create_hopper(services, team_id="vergunningen", caller="070", reason="whatever")


async def test_reassign_keeps_clock_and_history(services: Services) -> None:
    h = await create_hopper(
        services,
        team_id="vergunningen",
        caller="0701234567",
        reason="no_answer",
        created_at=MONDAY_10,
    )
    moved = await reassign_hopper(services, h.id, to_team="stadsbeheer", actor="carla")
    assert moved.team_id == "stadsbeheer" and moved.deadline == h.deadline
    async with services.sessions() as s:
        events = (await s.execute(select(HopperEvent).order_by(HopperEvent.id))).scalars().all()
        mails = (await s.execute(select(OutboxMail).order_by(OutboxMail.id))).scalars().all()
    assert [e.kind for e in events] == ["created", "reassigned"]
    assert events[1].actor == "carla" and events[1].detail["from_team"] == "vergunningen"
    assert [m.recipient for m in mails] == ["verg@example.org", "sb@example.org"]
    with pytest.raises(HopperError):
        await reassign_hopper(services, h.id, to_team="stadsbeheer", actor="carla")


async def test_reassign_to_a_team_with_an_open_hopper_for_the_caller_is_refused(
    services: Services,
) -> None:
    first = await create_hopper(
        services, team_id="vergunningen", caller="0701234567", reason="no_answer"
    )
    theirs = await create_hopper(
        services, team_id="stadsbeheer", caller="0701234567", reason="no_answer"
    )
    with pytest.raises(HopperError, match=f"open terugbelverzoek {theirs.id}"):
        await reassign_hopper(services, first.id, to_team="stadsbeheer", actor="carla")
    async with services.sessions() as s:
        assert (await s.get(Hopper, first.id)).team_id == "vergunningen"  # type: ignore[union-attr]


def _take_calls(url: str, calls: int, start: Any, data_dir: str) -> list[int]:
    """One process: `calls` callback requests from one number at once, after `start`."""

    async def run() -> list[int]:
        engine = create_engine(url)
        services = build_services(CONFIG, sessions(engine), home=Path(data_dir))
        try:
            start.wait()
            made = await asyncio.gather(
                *(
                    create_hopper(
                        services, team_id="vergunningen", caller="0701234567", reason="no_answer"
                    )
                    for _ in range(calls)
                )
            )
            return [h.id for h in made]
        finally:
            await engine.dispose()

    return asyncio.run(run())


async def test_calls_from_one_number_at_once_make_one_hopper(
    store_url: str, tmp_path: Path
) -> None:
    # On PostgreSQL three processes take the calls at once; SQLite serves one process.
    processes = 3 if "postgresql" in store_url else 1
    context = multiprocessing.get_context("spawn")
    start = context.Manager().Event()
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [
            pool.submit(_take_calls, store_url, 4, start, str(tmp_path)) for _ in range(processes)
        ]
        start.set()
        made = [i for f in futures for i in f.result(timeout=120)]
    engine = create_engine(store_url)
    services = build_services(CONFIG, sessions(engine), home=tmp_path)
    try:
        assert len(set(made)) == 1
        assert await count(services, Hopper) == 1
        async with services.sessions() as s:
            open_one = await s.get(Hopper, made[0])
            assert open_one is not None and open_one.repeat_count == len(made) - 1
            kinds = list(await s.scalars(select(HopperEvent.kind).order_by(HopperEvent.id)))
        assert kinds == ["created"] + ["repeat"] * (len(made) - 1)
        assert await count(services, OutboxMail) == len(made)  # one mail per contact
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "number",
    [
        "0900 1234567",  # paid information number
        "09061234567",
        "0909-1234567",
        "0841234567",  # personal number, paid
        "+32 2 123 45 67",  # abroad
        "0044 20 7946 0958",
        "112",
        "14070",
        "06123",  # no number at all
    ],
)
async def test_a_callback_number_we_must_not_dial_makes_no_hopper(
    services: Services, number: str
) -> None:
    with pytest.raises(HopperError, match="bellen wij niet terug"):
        await create_hopper(services, team_id="vergunningen", caller=number, reason="no_answer")
    assert await count(services, Hopper) == 0


@pytest.mark.parametrize(
    ("number", "stored"),
    [
        ("070 123 45 67", "0701234567"),
        ("+31 6 1234 5678", "0612345678"),
        ("0031 88 123 4567", "0881234567"),
        ("0800-1234", "08001234"),
    ],
)
async def test_dutch_callback_numbers_are_kept_in_national_form(
    services: Services, number: str, stored: str
) -> None:
    made = await create_hopper(services, team_id="vergunningen", caller=number, reason="busy")
    assert made.caller == stored


async def test_an_allowed_prefix_list_opens_a_country(tmp_path: Path) -> None:
    belgian = CONFIG.model_copy(
        update={
            "callbacks": CONFIG.callbacks.model_copy(update={"allowed_prefixes": ["06", "+32"]})
        }
    )
    async with memory_services(belgian, tmp_path) as services:
        made = await create_hopper(
            services, team_id="vergunningen", caller="+32 2 123 45 67", reason="busy"
        )
        assert made.caller == "+3221234567"
        with pytest.raises(HopperError):
            await create_hopper(
                services, team_id="vergunningen", caller="0701234567", reason="busy"
            )
