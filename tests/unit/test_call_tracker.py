"""The call-outcome state machine, from recorded AMI streams, and the listener's count-once.

``tests/e2e/data/ami_stream.txt`` is the raw AMI of one run of tests/e2e/test_norms.py
(recorded with BEREIK_RECORD_AMI): two KCC calls answered, one abandoned while the KCC
rang, one to the team number answered, one answered by the KCC and cut by an Asterisk
restart (the stream then starts again with Asterisk's banner), one after the restart.
The transfer streams below are written in the same format, from the event sequences
Asterisk 22 sends for a blind and an attended transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from cti.calls.listener import CallListener
from cti.calls.tracker import AgentLeg, Answered, CallTracker, Effect, Ended, Started
from cti.services import Services
from cti.store.models import Base, Call, Hopper, HopperEvent
from cti.tts import engine_for
from dialplan.config import Config
from metrics.registry import BereikMetrics
from tests.support.ami_calls import blind_transfer_to_team, channel, event, kcc_answered
from tests.support.ami_stream import STREAM, blocks, replay, tracker


def ended(effects: list[Effect]) -> dict[str, Ended]:
    return {e.uniqueid: e for e in effects if isinstance(e, Ended)}


def test_recorded_run_gives_one_outcome_per_call() -> None:
    t, effects = replay(STREAM.read_bytes().decode())
    started = [e for e in effects if isinstance(e, Started)]
    outcomes = sorted((e.caller, e.entry) for e in started)
    assert outcomes == sorted(
        [
            ("0612345678", "14070"),
            ("0612345678", "14070"),
            ("0702222222", "14070"),
            ("0703333333", "7101"),
            ("0704444444", "14070"),
            ("0705555555", "14070"),
        ]
    )
    by_caller = {
        s.caller + s.uniqueid: ended(effects)[s.uniqueid] for s in started
    }  # every call started has ended, exactly once
    assert len([e for e in effects if isinstance(e, Ended)]) == 6
    results = sorted((k[:10], v.outcome, v.team) for k, v in by_caller.items())
    assert results == [
        ("0612345678", "answered_kcc", "kcc"),
        ("0612345678", "answered_kcc", "kcc"),
        ("0702222222", "abandoned", "kcc"),
        ("0703333333", "answered_team", "vergunningen"),
        ("0704444444", "answered_kcc", "kcc"),  # ended by the resync after the restart
        ("0705555555", "answered_kcc", "kcc"),
    ]
    answers = [e for e in effects if isinstance(e, Answered)]
    assert sorted(a.team for a in answers) == ["kcc"] * 4 + ["vergunningen"]
    assert all(a.wait_seconds is not None and 0 <= a.wait_seconds < 5 for a in answers)
    assert {a.agent for a in answers} == {"2001", "2101"}
    abandoned = next(e for e in ended(effects).values() if e.outcome == "abandoned")
    assert abandoned.wait_seconds is not None and 1.0 < abandoned.wait_seconds < 5.0
    assert t.calls == {} and t.by_channel == {} and t.by_linkedid == {}
    assert t.waiting() == {"kcc": 0, "vergunningen": 0}


def test_waiting_counts_a_caller_while_the_kcc_rings() -> None:
    t = tracker()
    peak: dict[str, int] = {"kcc": 0, "vergunningen": 0}
    for item in blocks(STREAM.read_bytes().decode()):
        if isinstance(item, str):
            continue
        t.feed(item)
        for team, count in t.waiting().items():
            peak[team] = max(peak[team], count)
    assert peak == {"kcc": 1, "vergunningen": 1}


async def test_replaying_a_recorded_stream_twice_counts_no_call_twice(
    listener: CallListener,
) -> None:
    raw = STREAM.read_bytes().decode()
    _, first = replay(raw, listener.tracker)
    _, second = replay(raw, listener.tracker)
    # Same uniqueids again: the tracker ends each call a second time (it keeps no memory
    # of finished calls); the calls row is what makes the second end count for nothing.
    assert len(ended(first)) == len(ended(second)) == 6
    await listener.apply(*first)
    m = listener.services.metrics
    counted = (
        sample(m, "bereik_calls_offered_total", entry="14070"),
        sample(m, "bereik_calls_offered_total", entry="team"),
        sample(m, "bereik_calls_answered_total", team="kcc"),
        sample(m, "bereik_calls_answered_total", team="vergunningen"),
        sample(m, "bereik_calls_abandoned_total", team="kcc"),
    )
    assert counted == (5, 1, 4, 1, 1)
    await listener.apply(*second)
    assert (
        sample(m, "bereik_calls_offered_total", entry="14070"),
        sample(m, "bereik_calls_offered_total", entry="team"),
        sample(m, "bereik_calls_answered_total", team="kcc"),
        sample(m, "bereik_calls_answered_total", team="vergunningen"),
        sample(m, "bereik_calls_abandoned_total", team="kcc"),
    ) == counted
    async with listener.services.sessions() as session:
        rows = (await session.execute(Call.__table__.select())).all()
    assert len(rows) == 6 and all(row.outcome for row in rows)


def test_blind_transfer_answered_by_the_team() -> None:
    t = tracker()
    effects = kcc_answered(t) + blind_transfer_to_team(t, answer=True)
    answered = [e for e in effects if isinstance(e, Answered)]
    assert answered == [Answered("1.0", "kcc", "2001", 4.0)]  # the first answer only
    (end,) = ended(effects).values()
    assert (end.outcome, end.team, end.agent) == ("answered_team", "vergunningen", "2101")
    assert end.transfers == (("vergunningen", "answered"),)
    assert end.entry_kind == "14070" and end.wait_seconds == 4.0


def test_blind_transfer_nobody_answers() -> None:
    t = tracker()
    effects = kcc_answered(t) + blind_transfer_to_team(t, answer=False)
    (end,) = ended(effects).values()
    assert (end.outcome, end.team) == ("transferred", "vergunningen")
    assert end.transfers == (("vergunningen", "no_answer"),)


def test_ringall_cancels_to_other_phones_are_not_an_abandoned_call() -> None:
    t = tracker()
    caller = channel("2.0", "2.0", "PJSIP/trunk-2", "from-trunk", "7101", Timestamp="10")
    t.feed(event("Newchannel", **caller))
    team = {**caller, "Context": "bereik-team", "Exten": "7101"}
    for leg in ("2.1", "2.2"):
        t.feed(event("Newchannel", **channel(leg, "2.0", f"PJSIP/{leg}", "from-internal", "s")))
        t.feed(event("DialBegin", DestUniqueid=leg, DestChannel=f"PJSIP/21{leg[-1]}-x", **team))
    assert t.waiting()["vergunningen"] == 1
    effects = t.feed(
        event(
            "DialEnd",
            DialStatus="ANSWER",
            DestUniqueid="2.2",
            DestChannel="PJSIP/212-x",
            **{**team, "Timestamp": "17"},
        )
    )
    effects += t.feed(event("DialEnd", DialStatus="CANCEL", DestUniqueid="2.1", **team))
    assert t.waiting()["vergunningen"] == 0
    effects += t.feed(event("CEL", EventName="LINKEDID_END", LinkedID="2.0", Timestamp="30"))
    (end,) = ended(effects).values()
    assert (end.outcome, end.team, end.agent, end.wait_seconds) == (
        "answered_team",
        "vergunningen",
        "212",
        7.0,
    )


def test_attended_transfer_merges_the_consultation_call_by_linkedid() -> None:
    """Agent 2001 talks to the caller (3.0/3.1), calls the team number (3.2 -> 3.3), the
    member answers, the agent completes: 3.3 joins the caller's bridge and takes the older
    linkedid 3.0; the consultation call is not a citizen's call of its own."""
    t = tracker()
    caller = channel("3.0", "3.0", "PJSIP/trunk-3", "from-trunk", "14070", Timestamp="0")
    t.feed(event("Newchannel", **caller))
    kcc = {**caller, "Context": "bereik-kcc", "Exten": "s"}
    t.feed(event("Newchannel", **channel("3.1", "3.0", "PJSIP/2001-a", "from-internal", "s")))
    dial = {**kcc, "DestUniqueid": "3.1", "DestChannel": "PJSIP/2001-a"}
    t.feed(event("DialBegin", **dial))
    effects = t.feed(event("DialEnd", DialStatus="ANSWER", **{**dial, "Timestamp": "2"}))
    consult = channel("3.2", "3.2", "PJSIP/2001-b", "from-internal", "7101", Timestamp="5")
    effects += t.feed(event("Newchannel", **consult))  # a new internal call to the team
    member = channel("3.3", "3.2", "PJSIP/2101-c", "from-internal", "s")
    effects += t.feed(event("Newchannel", **member))
    team = {**consult, "Context": "bereik-team"}
    tdial = {**team, "DestUniqueid": "3.3", "DestChannel": "PJSIP/2101-c"}
    effects += t.feed(event("DialBegin", **tdial))
    effects += t.feed(event("DialEnd", DialStatus="ANSWER", **{**tdial, "Timestamp": "8"}))
    effects += t.feed(
        event(
            "AttendedTransfer",
            Result="Success",
            TransfereeUniqueid="3.0",
            TransferTargetUniqueid="3.3",
            OrigTransfererUniqueid="3.1",
            SecondTransfererUniqueid="3.2",
        )
    )
    # The member's channel now carries the caller's linkedid.
    effects += t.feed(event("BridgeEnter", **{**member, "Linkedid": "3.0"}))
    effects += t.feed(event("Hangup", **channel("3.1", "3.0", "PJSIP/2001-a", "x", "")))
    effects += t.feed(event("Hangup", **channel("3.2", "3.0", "PJSIP/2001-b", "x", "")))
    effects += t.feed(event("CEL", EventName="LINKEDID_END", LinkedID="3.0", Timestamp="60"))
    ends = ended(effects)
    assert list(ends) == ["3.0"]  # one call, the citizen's
    end = ends["3.0"]
    assert (end.outcome, end.team, end.agent) == ("answered_team", "vergunningen", "2101")
    assert ("vergunningen", "answered") in end.transfers
    assert set(end.uniqueids) == {"3.0", "3.1", "3.2", "3.3"}
    assert t.calls == {}


def test_resync_takes_up_a_call_in_progress_with_an_unknown_wait() -> None:
    t = tracker()
    live = [
        {
            "Event": "CoreShowChannel",
            "Uniqueid": "4.0",
            "Linkedid": "4.0",
            "Channel": "PJSIP/trunk-4",
            "Context": "bereik-kcc",
            "Extension": "s",
            "CallerIDNum": "0612345678",
            "BridgeId": "b1",
            "Duration": "00:01:05",
        },
        {
            "Event": "CoreShowChannel",
            "Uniqueid": "4.1",
            "Linkedid": "4.0",
            "Channel": "PJSIP/2001-4",
            "Context": "from-internal",
            "Extension": "",
            "CallerIDNum": "2001",
            "BridgeId": "b1",
            "Duration": "00:01:00",
        },
    ]
    effects = t.resync(live)
    assert effects == [
        Started("4.0", "4.0", "14070", "0612345678", -65.0),
        Answered("4.0", "kcc", "2001", None),
    ]
    effects = t.resync([])  # Asterisk restarted: the call is gone
    (end,) = ended(effects).values()
    assert (end.outcome, end.team, end.wait_seconds) == ("answered_kcc", "kcc", None)


def test_a_call_answered_while_ami_was_cut_is_answered_after_the_resync() -> None:
    """The connection dropped between the agent's ringing and the bridge (the DialEnd was
    never read): the resync finds both legs in one bridge, so the call was answered."""
    t = tracker()
    caller = channel("6.0", "6.0", "PJSIP/trunk-6", "from-trunk", "14070", Timestamp="100")
    t.feed(event("Newchannel", **caller))
    kcc = {**caller, "Context": "bereik-kcc", "Exten": "s"}
    t.feed(event("UserEvent", UserEvent="BereikRoute", Team="kcc", **kcc))
    agent = channel("6.1", "6.0", "PJSIP/2001-6", "from-internal", "s", Timestamp="101")
    t.feed(event("Newchannel", **agent))
    dial = {**kcc, "DestUniqueid": "6.1", "DestChannel": "PJSIP/2001-6", "Timestamp": "101"}
    t.feed(event("DialBegin", **dial))
    live = [
        {"Event": "CoreShowChannel", **kcc, "BridgeId": "b6", "Duration": "00:00:05"},
        {"Event": "CoreShowChannel", **agent, "BridgeId": "b6", "Duration": "00:00:04"},
    ]
    assert t.resync(live) == [Answered("6.0", "kcc", "2001", None)]
    assert t.resync(live) == []  # answered once
    (end,) = ended(t.resync([])).values()
    assert (end.outcome, end.team) == ("answered_kcc", "kcc")


def test_calls_between_extensions_are_not_followed() -> None:
    t = tracker()
    effects = t.feed(
        event("Newchannel", **channel("5.0", "5.0", "PJSIP/2001-z", "from-internal", "2101"))
    )
    assert effects == [] and t.calls == {}


# -- the listener: counted once, by the calls row -------------------------------------------


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
    metrics = BereikMetrics(teams=["vergunningen"])
    services = Services(
        config=config,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        metrics=metrics,
        instance_dir=Path("/nonexistent"),
        tts=engine_for(config.tts),
    )
    yield CallListener(services)
    await engine.dispose()


def sample(metrics: BereikMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


async def test_listener_counts_a_call_once_even_when_its_end_is_seen_twice(
    listener: CallListener,
) -> None:
    t = listener.tracker
    effects = kcc_answered(t) + blind_transfer_to_team(t, answer=True)
    for effect in effects + effects:  # a reconnect replaying the same call
        await listener.apply(effect)
    m = listener.services.metrics
    assert sample(m, "bereik_calls_offered_total", entry="14070") == 1
    assert sample(m, "bereik_calls_answered_total", team="kcc") == 1
    assert sample(m, "bereik_wait_seconds_count", team="kcc") == 1
    assert sample(m, "bereik_transfers_total", to_team="vergunningen", result="answered") == 1
    async with listener.services.sessions() as session:
        row = (await session.execute(Call.__table__.select())).one()
    assert (row.outcome, row.team_id, row.answered_by, row.agent, row.wait_seconds) == (
        "answered_team",
        "vergunningen",
        "kcc",
        "2101",
        4.0,
    )


async def test_listener_outcome_is_hopper_when_one_was_made_of_the_call(
    listener: CallListener,
) -> None:
    t = listener.tracker
    caller = channel("6.0", "6.0", "PJSIP/trunk-6", "from-trunk", "7101", Timestamp="0")
    effects = t.feed(event("Newchannel", **caller))
    team = {**caller, "Context": "bereik-team", "Exten": "7101"}
    t.feed(event("Newchannel", **channel("6.1", "6.0", "PJSIP/2101-6", "from-internal", "s")))
    t.feed(event("DialBegin", DestUniqueid="6.1", **team))
    t.feed(event("DialEnd", DialStatus="NOANSWER", DestUniqueid="6.1", **team))
    for effect in effects:
        await listener.apply(effect)
    async with listener.services.sessions() as session:
        hopper = Hopper(
            team_id="vergunningen",
            caller="0612345678",
            reason="no_answer",
            call_uniqueid="6.0",
            deadline=datetime.now(UTC) + timedelta(days=2),
        )
        session.add(hopper)
        await session.flush()
        # What create_hopper writes with it: the event that names the call.
        session.add(
            HopperEvent(
                hopper_id=hopper.id, kind="created", team_id="vergunningen", call_uniqueid="6.0"
            )
        )
        await session.commit()
    effects = t.feed(event("CEL", EventName="LINKEDID_END", LinkedID="6.0", Timestamp="20"))
    for effect in effects:
        await listener.apply(effect)
    async with listener.services.sessions() as session:
        row = (await session.execute(Call.__table__.select())).one()
    assert (row.outcome, row.team_id) == ("hopper", "vergunningen")
    m = listener.services.metrics
    assert sample(m, "bereik_calls_abandoned_total", team="vergunningen") == 0
    assert sample(m, "bereik_calls_offered_total", entry="team") == 1


async def test_listener_keeps_a_batch_through_an_exhausted_connection_pool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A pool with no free connection raises TimeoutError, not OperationalError: the
    listener keeps the call's events and stores them once a connection is free."""
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}",
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.2,
    )
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    config = Config.model_validate({"phones": [{"extension": "2001"}], "kcc": {"agents": ["2001"]}})
    services = Services(
        config=config,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        metrics=BereikMetrics(teams=[]),
        instance_dir=tmp_path,
        tts=engine_for(config.tts),
    )
    listener = CallListener(services)
    effects = kcc_answered(listener.tracker)
    try:
        async with engine.connect() as busy:  # a long write holds the only connection
            await busy.exec_driver_sql("SELECT 1")
            storing = asyncio.create_task(listener._apply_until_stored([(0.0, e) for e in effects]))
            while "TimeoutError" not in caplog.text:  # the pool gave up at least once
                assert not storing.done(), "the batch was given up while the pool was busy"
                await asyncio.sleep(0.05)
            assert not storing.done(), "the batch was given up while the pool was busy"
        await asyncio.wait_for(storing, timeout=10)
        async with services.sessions() as session:
            rows = (await session.execute(Call.__table__.select())).all()
        assert [(r.uniqueid, r.caller, r.answered_by) for r in rows] == [
            ("1.0", "0612345678", "kcc")
        ]
        assert sample(services.metrics, "bereik_calls_answered_total", team="kcc") == 1
    finally:
        await engine.dispose()


def test_a_virtual_hold_callback_rings_the_agent_as_a_leg_of_its_placeholder() -> None:
    # The exchange originated the placeholder: no call came in, yet the agent's phone
    # rings for it and the popup must show it.
    t = CallTracker("14070", "7000", {}, clock=lambda: 0.0)
    placeholder = "Local/1-400778770-1795992211-0633333333@bereik-vhold-line-00000001;2"
    common = {
        "Channel": placeholder,
        "Uniqueid": "99.2",
        "Linkedid": "99.1",
        "CallerIDNum": "0633333333",
        "DestChannel": "PJSIP/2001-00000005",
        "DestUniqueid": "99.3",
    }
    rung = t.feed(event("DialBegin", **common))
    answered = t.feed(event("DialEnd", DialStatus="ANSWER", **common))
    legs = [e for e in rung + answered if isinstance(e, AgentLeg)]
    assert [(leg.extension, leg.state, leg.caller, leg.caller_channel) for leg in legs] == [
        ("2001", "ringing", "0633333333", placeholder),
        ("2001", "answered", "0633333333", placeholder),
    ]


async def test_a_call_that_ended_just_before_serve_stops_keeps_its_outcome(
    listener: CallListener,
) -> None:
    """The events of its end are in, its row not yet written when `run` is cancelled:
    ``flush`` (bereik serve's stop) writes it."""
    caller = channel("9.0", "9.0", "PJSIP/trunk-9", "from-trunk", "14070", Timestamp="100")
    kcc = {**caller, "Context": "bereik-kcc", "Exten": "s"}
    agent = channel("9.1", "9.0", "PJSIP/2001-9", "from-internal", "s", Timestamp="101")
    dial = {**kcc, "DestUniqueid": "9.1", "DestChannel": "PJSIP/2001-9"}
    for item in (
        event("Newchannel", **caller),
        event("UserEvent", UserEvent="BereikRoute", Team="kcc", **kcc),
        event("Newchannel", **agent),
        event("DialBegin", **{**dial, "Timestamp": "101"}),
        event("DialEnd", DialStatus="ANSWER", **{**dial, "Timestamp": "104"}),
        event("CEL", EventName="LINKEDID_END", LinkedID="9.0", Timestamp="130"),
    ):
        listener.on_event(item)
    writer = asyncio.create_task(listener.run())
    await asyncio.sleep(0)  # it waits for its batch
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    await listener.flush()
    async with listener.services.sessions() as session:
        row = (await session.execute(Call.__table__.select())).one()
    assert (row.uniqueid, row.outcome, row.answered_by) == ("9.0", "answered_kcc", "kcc")
