"""The journey of a call: the tracker's steps kept at the end of the call, put together with
the line, the hopper, its callback attempts and the survey, in time order; who may see it.
The same from real calls: tests/e2e/test_journey.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cti.calls.tracker import Ended
from cti.journey import service
from cti.journey.pages import describe
from cti.store.models import (
    Call,
    CallbackAttempt,
    Hopper,
    HopperEvent,
    QueueCall,
    SurveyAnswer,
    User,
)
from cti.web.i18n import translator
from tests.support.ami_calls import blind_transfer_to_team, event, kcc_answered
from tests.support.ami_stream import tracker
from tests.support.memory_services import CONFIG, memory_services


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_the_tracker_keeps_menu_offers_transfers_and_phones_rung_in_order() -> None:
    t = tracker()
    out = t.feed(
        event("Newchannel", Uniqueid="1.0", Linkedid="1.0", Channel="PJSIP/trunk-1",
              Context="from-trunk", Exten="14070", CallerIDNum="0612345678", Timestamp="99")
    )  # fmt: skip
    out += t.feed(
        event("UserEvent", UserEvent="BereikIvrRoute", Route="kcc", Uniqueid="1.0",
              Linkedid="1.0", Timestamp="99.5")
    )  # fmt: skip
    out += kcc_answered(t) + blind_transfer_to_team(t, answer=False)
    (end,) = [e for e in out if isinstance(e, Ended)]
    kinds = [(s["kind"], s.get("team") or s.get("extension") or s.get("route")) for s in end.steps]
    assert kinds == [
        ("menu", "kcc"),
        ("offered", "kcc"),
        ("rung", "2001"),
        ("offered", "vergunningen"),
        ("rung", "2101"),
    ]
    kcc, team = (s for s in end.steps if s["kind"] == "offered")
    assert (kcc["result"], kcc["answered_at"], kcc["agent"]) == ("answered", 104.0, "2001")
    assert (team["how"], team["result"]) == ("blind", "no_answer")
    rung = [s for s in end.steps if s["kind"] == "rung"]
    assert [s["answered_at"] for s in rung] == [104.0, None]


async def test_a_journey_from_the_line_to_the_callback_and_the_survey(tmp_path: Path) -> None:
    t = tracker()
    (end,) = [
        e for e in kcc_answered(t) + blind_transfer_to_team(t, answer=False) if isinstance(e, Ended)
    ]
    async with memory_services(CONFIG, tmp_path) as services:
        async with services.sessions() as session:
            call = Call(
                uniqueid="1.0", linkedid="1.0", entry="14070", caller="0612345678",
                started_at=at(100), ended_at=at(120), outcome="hopper", team_id="vergunningen",
                answered_by="kcc", agent="2001", steps=list(end.steps),
            )  # fmt: skip
            hopper = Hopper(
                team_id="vergunningen", caller="0612345678", reason="no_answer",
                call_uniqueid="1.0", created_at=at(119), deadline=at(119) + timedelta(days=2),
                status="closed", closing_reason="reached", within_norm=True,
            )  # fmt: skip
            session.add_all([call, hopper])
            await session.flush()
            session.add_all(
                [
                    QueueCall(
                        queue="kcc",
                        uniqueid="1.0",
                        caller="0612345678",
                        joined_at=at(100.5),
                        left_at=at(104),
                        outcome="answered",
                        wait_seconds=3.5,
                        agent="2001",
                        position=2,
                    ),
                    HopperEvent(
                        hopper_id=hopper.id,
                        at=at(119),
                        kind="created",
                        team_id="vergunningen",
                        call_uniqueid="1.0",
                    ),
                    HopperEvent(
                        hopper_id=hopper.id,
                        at=at(500),
                        kind="claimed",
                        actor="carla",
                        team_id="vergunningen",
                    ),
                    CallbackAttempt(
                        hopper_id=hopper.id,
                        at=at(600),
                        member="carla",
                        outcome="reached",
                        finished_at=at(640),
                    ),
                    HopperEvent(
                        hopper_id=hopper.id, at=at(650), kind="closed", team_id="vergunningen"
                    ),
                    SurveyAnswer(
                        call_uniqueid="1.0", team_id="kcc", question="q1", value=4, at=at(118)
                    ),
                ]
            )
            await session.commit()
            journey = await service.journey_of(session, CONFIG, call)
            agent = User(name="anna", role="agent", extension="2001", team_id="")
            other = User(name="bert", role="agent", extension="2002", team_id="")
            member = User(name="carla", role="member", team_id="vergunningen")
            outsider = User(name="sam", role="member", team_id="stadsbeheer")
            boss = User(name="sofie", role="supervisor")
            seen = [await service.may_see(session, u, journey) for u in (agent, other, member,
                                                                      outsider, boss)]  # fmt: skip
    kinds = [step.kind for step in journey.steps]
    assert kinds == [
        "arrived",
        "offered",  # to the KCC, as the caller came to it
        "line_joined",
        "rung",
        "answered",
        "line_left",
        "transfer",
        "rung",
        "survey",
        "hopper_created",
        "ended",
        "hopper_claimed",
        "callback_attempt",
        "hopper_closed",
    ]
    times = [step.at for step in journey.steps]
    assert times == sorted(times)
    assert seen == [True, False, True, False, True]
    t_nl = translator("nl")
    teams = {"vergunningen": "Vergunningen", "kcc": "KCC"}
    said = [describe(step, t_nl, teams) for step in journey.steps]
    assert "Doorverbonden (direct) naar Vergunningen: niet opgenomen" in said
    assert "Toestel KCC Anna (2001) ging over en nam op" in said
    assert "Teruggebeld door carla: bereikt" in said
    assert "In de wachtrij, plaats 2" in said
    in_english = [describe(step, translator("en"), teams) for step in journey.steps]
    assert "Transferred (blind) to Vergunningen: not answered" in in_english
    assert "Called back by carla: reached" in in_english
