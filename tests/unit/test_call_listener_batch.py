"""The call listener's writer on a batch of many calls (cti/calls/listener.py `apply`: the
ends' rows and hoppers read once per batch, each answer and end one guarded update), and
the tracker's waiting counts, kept per event, against a count of the open offers."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from cti.calls.listener import CallListener
from cti.calls.tracker import CallTracker, Effect
from cti.services import Services
from cti.store.models import Base, Call, Hopper, HopperEvent
from cti.tts import engine_for
from dialplan.config import Config
from metrics.registry import BereikMetrics
from tests.support.ami_calls import channel, event
from tests.support.ami_stream import STREAM, blocks, tracker


@pytest.fixture
async def listener() -> AsyncIterator[CallListener]:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    config = Config.model_validate(
        {
            "phones": [{"extension": "2001"}, {"extension": "2101"}],
            "kcc": {"agents": ["2001"]},
            "teams": [
                {
                    "id": "vergunningen",
                    "name": "Vergunningen",
                    "number": "7101",
                    "members": ["2101"],
                    "mailbox": "v@example.org",
                }
            ],
        }
    )
    services = Services(
        config=config,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        metrics=BereikMetrics(teams=["vergunningen"]),
        instance_dir=Path("/nonexistent"),
        tts=engine_for(config.tts),
    )
    yield CallListener(services)
    await engine.dispose()


def sample(metrics: BereikMetrics, name: str, **labels: str) -> float:
    return float(metrics.registry.get_sample_value(name, labels) or 0.0)


def team_call(t: CallTracker, n: int, answer: bool) -> list[Effect]:
    """A call to team number 7101 (uniqueids n.0 caller, n.1 member 2101), answered or
    not; not ended."""
    caller = channel(f"{n}.0", f"{n}.0", f"PJSIP/trunk-{n}", "from-trunk", "7101", Timestamp="0")
    out = t.feed(event("Newchannel", **caller))
    member = channel(f"{n}.1", f"{n}.0", f"PJSIP/2101-{n}", "from-internal", "s", Timestamp="1")
    out += t.feed(event("Newchannel", **member))
    dial = {
        **caller,
        "Context": "bereik-team",
        "DestUniqueid": f"{n}.1",
        "DestChannel": f"PJSIP/2101-{n}",
    }
    out += t.feed(event("DialBegin", **{**dial, "Timestamp": "1"}))
    status = "ANSWER" if answer else "NOANSWER"
    out += t.feed(event("DialEnd", DialStatus=status, **{**dial, "Timestamp": "5"}))
    return out


def end(t: CallTracker, n: int) -> list[Effect]:
    return t.feed(event("CEL", EventName="LINKEDID_END", LinkedID=f"{n}.0", Timestamp="30"))


async def test_a_batch_of_ends_takes_each_calls_newest_hopper_and_counts_each_call_once(
    listener: CallListener,
) -> None:
    t = listener.tracker
    started: list[Effect] = []
    for n in (1, 2, 3):
        started += team_call(t, n, answer=False)
    await listener.apply(*started)
    async with listener.services.sessions() as session:
        for n in (1, 2):
            hopper = Hopper(
                team_id="vergunningen",
                caller=f"061234567{n}",  # one open hopper per caller and team
                reason="no_answer",
                call_uniqueid=f"{n}.0",
                deadline=datetime.now(UTC) + timedelta(days=2),
            )
            session.add(hopper)
            await session.flush()
            # Call 1 made a hopper; call 2 (through its member's channel, then its own)
            # first made one and was then linked to an older one: the newest event counts.
            kinds = [("created", f"{n}.0")] if n == 1 else [("created", "2.1"), ("repeat", "2.0")]
            for kind, uniqueid in kinds:
                session.add(
                    HopperEvent(
                        hopper_id=hopper.id,
                        kind=kind,
                        team_id="vergunningen",
                        call_uniqueid=uniqueid,
                    )
                )
                await session.flush()
        await session.commit()
    # Call 4 is answered and ends in the same batch: its end reads the agent its answer wrote.
    batch = team_call(t, 4, answer=True)
    for n in (1, 2, 3, 4):
        batch += end(t, n)
    await listener.apply(*batch)
    await listener.apply(*batch)  # a batch written twice (a retry): counted once
    async with listener.services.sessions() as session:
        rows = {
            row.uniqueid: (row.outcome, row.team_id, row.agent)
            for row in (await session.execute(Call.__table__.select())).all()
        }
    assert rows == {
        "1.0": ("hopper", "vergunningen", ""),
        "2.0": ("repeat", "vergunningen", ""),
        "3.0": ("abandoned", "vergunningen", ""),
        "4.0": ("answered_team", "vergunningen", "2101"),
    }
    m = listener.services.metrics
    assert sample(m, "bereik_calls_offered_total", entry="team") == 4
    assert sample(m, "bereik_calls_abandoned_total", team="vergunningen") == 1
    assert sample(m, "bereik_calls_answered_total", team="vergunningen") == 1


def test_the_waiting_counts_are_the_open_offers_after_every_event() -> None:
    t = tracker()
    for item in blocks(STREAM.read_bytes().decode()):
        if isinstance(item, str):
            t.resync([])
            continue
        t.feed(item)
        offers = (call.open_offer() for call in t.calls.values())
        expected = collections.Counter(o.team for o in offers if o is not None)
        assert t.waiting() == {team: expected[team] for team in t.teams}


async def test_a_row_decided_by_another_writer_meanwhile_is_not_counted_by_this_one(
    listener: CallListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = listener.tracker
    batch = team_call(t, 1, answer=True) + team_call(t, 2, answer=True)
    answers = listener._answers

    def raced(connection: Any, *args: Any) -> Any:
        # Another writer (a replay of set-aside events) answers call 2 after this batch
        # read its row and before its update.
        decided = answers(connection, *args)
        connection.execute(update(Call).where(Call.uniqueid == "2.0").values(answered_by="kcc"))
        return decided

    monkeypatch.setattr(listener, "_answers", raced)
    await listener.apply(*batch)
    async with listener.services.sessions() as session:
        rows = {
            row.uniqueid: (row.answered_by, row.agent)
            for row in (await session.execute(Call.__table__.select())).all()
        }
    assert rows == {"1.0": ("vergunningen", "2101"), "2.0": ("kcc", "")}
    m = listener.services.metrics
    assert sample(m, "bereik_calls_answered_total", team="vergunningen") == 1
