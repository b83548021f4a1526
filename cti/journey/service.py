"""The journey of a call: one record from the first ring to the last callback, put together
from what is already stored, each part from its own table (no second copy):

* ``calls``: arrival (number dialled, caller), the end and its outcome, and ``steps``, the
  call tracker's view kept when the call ended: the menu's decision, announcements and
  channel-steering texts heard, each team offered the call (by the menu or the number
  dialled, a blind or an attended transfer) and what became of it, each phone rung and when
  it answered;
* ``queue_calls``: the stay in a waiting line (place on joining, wait, how it ended);
* ``virtual_holds``: a callback that kept the caller's place;
* ``hoppers`` with their events and ``callback_attempts``: the callback request made of the
  call (or the open one it was linked to), claims, attempts and their outcome, the close;
* ``survey_answers``: the post-call survey.

Steps are in time order. The caller's number is masked for roles that do not call citizens
back (cti.web.auth.mask_number, as on every screen). Who may see which call is ``may_see``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.privacy import own_call
from cti.store.models import (
    Announcement,
    Call,
    CallbackAttempt,
    Hopper,
    HopperEvent,
    QueueCall,
    SurveyAnswer,
    User,
    VirtualHold,
)
from dialplan.config import KCC_ID, Config

# Roles that see every call's journey (the board, the reports); the others see the calls
# that reached them (may_see).
ALL_CALLS = ("supervisor", "admin")


@dataclass
class Step:
    at: datetime
    kind: str  # arrived menu heard line_joined line_left offered rung answered ...
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, **self.detail}


@dataclass
class Journey:
    call: Call
    steps: list[Step]
    teams: set[str]  # every team the call or its hoppers reached (for may_see)

    def as_json(self, caller: str) -> dict[str, Any]:
        return {
            "call": self.call.id,
            "uniqueid": self.call.uniqueid,
            "caller": caller,
            "entry": self.call.entry,
            "started_at": self.call.started_at.isoformat(),
            "ended_at": self.call.ended_at.isoformat() if self.call.ended_at else None,
            "outcome": self.call.outcome,
            "steps": [step.as_json() for step in self.steps],
        }


def _at(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


async def find_call(session: AsyncSession, key: str) -> Call | None:
    """A call by its id (digits) or its uniqueid."""
    key = key[:64]
    if key.isdigit() and len(key) <= 12:
        found = await session.scalar(select(Call).where(Call.id == int(key)))
        if found is not None:
            return found
    found = await session.scalar(select(Call).where(Call.uniqueid == key))
    if found is not None:
        return found
    # A leg's uniqueid (a hopper may name any channel of its call): the call it belongs to.
    return await session.scalar(
        select(Call).where(Call.linkedid == key).order_by(Call.started_at).limit(1)
    )


async def journey_of(session: AsyncSession, config: Config, call: Call) -> Journey:
    names = {phone.extension: phone.name for phone in config.phones}
    steps = [Step(call.started_at, "arrived", {"entry": call.entry})]
    teams: set[str] = {call.team_id or KCC_ID} if call.outcome else set()
    steps += await _tracked(session, config, call, names, teams)
    keys = [call.uniqueid] + ([call.linkedid] if call.linkedid != call.uniqueid else [])
    for stay in await session.scalars(select(QueueCall).where(QueueCall.uniqueid.in_(keys))):
        steps.append(
            Step(stay.joined_at, "line_joined", {"queue": stay.queue, "position": stay.position})
        )
        if stay.left_at is not None:
            steps.append(
                Step(
                    stay.left_at,
                    "line_left",
                    {
                        "queue": stay.queue,
                        "outcome": stay.outcome,
                        "wait_seconds": stay.wait_seconds,
                        "agent": stay.agent,
                        "name": names.get(stay.agent, ""),
                    },
                )
            )
    for hold in await session.scalars(
        select(VirtualHold).where(VirtualHold.call_uniqueid.in_(keys))
    ):
        steps.append(Step(hold.requested_at, "callback_in_line", {"status": hold.status}))
        if hold.reached_at is not None:
            steps.append(Step(hold.reached_at, "callback_in_line_reached", {"agent": hold.agent}))
    steps += await _hoppers(session, keys, teams)
    for answer in await session.scalars(
        select(SurveyAnswer).where(SurveyAnswer.call_uniqueid.in_(keys))
    ):
        steps.append(
            Step(answer.at, "survey", {"question": answer.question, "value": answer.value})
        )
    if call.ended_at is not None:
        steps.append(Step(call.ended_at, "ended", {"outcome": call.outcome}))
    # Stable: steps of the same moment keep the order they were added in (arrival first).
    steps.sort(key=lambda step: step.at)
    return Journey(call, steps, teams)


def menu_label(config: Config, path: str) -> str:
    """The label of the menu option at a key path ("2", "3.1"), "" if there is none now."""
    options, label = config.menu.options, ""
    for key in path.split("."):
        option = next((o for o in options if o.key == key), None)
        if option is None:
            return ""
        options, label = option.submenu, option.label
    return label


async def _tracked(
    session: AsyncSession,
    config: Config,
    call: Call,
    names: dict[str, str],
    teams: set[str],
) -> list[Step]:
    """The tracker's steps (calls.steps), with the answer of an offer as its own step."""
    steps = []
    announcements = {
        item["item"].split(":", 1)[1]
        for item in call.steps or []
        if item.get("kind") == "heard" and str(item.get("item", "")).startswith("announcement:")
    }
    texts: dict[int, str] = {}
    if announcements:
        ids = [int(i) for i in announcements if i.isdigit()]
        found = await session.execute(
            select(Announcement.id, Announcement.text).where(Announcement.id.in_(ids))
        )
        texts = dict(found.tuples().all())
    for raw in call.steps or []:
        kind = str(raw.get("kind", ""))
        at = _at(raw.get("at", 0))
        if kind == "menu":
            steps.append(Step(at, "menu", {"route": raw.get("route", "")}))
        elif kind == "heard":
            item = str(raw.get("item", ""))
            ident = item.split(":", 1)[1] if ":" in item else ""
            if item.startswith("info:"):
                text = menu_label(config, ident)  # a channel-steering text: its menu option
            else:
                text = texts.get(int(ident), "") if ident.isdigit() else ""
            steps.append(Step(at, "heard", {"item": item, "text": text}))
        elif kind == "offered":
            team = str(raw.get("team", ""))
            teams.add(team)
            how = str(raw.get("how", ""))
            step_kind = "transfer" if how in ("blind", "attended", "transfer") else "offered"
            steps.append(
                Step(at, step_kind, {"team": team, "how": how, "result": raw.get("result", "")})
            )
            if raw.get("answered_at") is not None:
                agent = str(raw.get("agent", ""))
                steps.append(
                    Step(
                        _at(raw["answered_at"]),
                        "answered",
                        {"team": team, "extension": agent, "name": names.get(agent, "")},
                    )
                )
        elif kind == "rung":
            extension = str(raw.get("extension", ""))
            answered = raw.get("answered_at")
            steps.append(
                Step(
                    at,
                    "rung",
                    {
                        "extension": extension,
                        "name": names.get(extension, ""),
                        "answered": answered is not None,
                    },
                )
            )
    return steps


async def _hoppers(session: AsyncSession, keys: list[str], teams: set[str]) -> list[Step]:
    """The hopper made of the call (or the open one it was linked to), its history and the
    callback attempts with their outcome."""
    linked = select(HopperEvent.hopper_id).where(
        HopperEvent.call_uniqueid.in_(keys), HopperEvent.kind.in_(("created", "repeat"))
    )
    hoppers = list(
        await session.scalars(
            select(Hopper).where(or_(Hopper.call_uniqueid.in_(keys), Hopper.id.in_(linked)))
        )
    )
    steps = []
    for hopper in hoppers:
        teams.add(hopper.team_id)
        events = await session.scalars(
            select(HopperEvent).where(HopperEvent.hopper_id == hopper.id).order_by(HopperEvent.id)
        )
        for event in events:
            if event.kind == "attempt":
                continue  # the attempts below say it with their outcome
            if event.kind in ("created", "repeat") and event.call_uniqueid not in keys:
                continue  # another call's contact with this hopper
            detail: dict[str, Any] = {"hopper": hopper.id, "team": event.team_id}
            if event.kind == "created":
                detail |= {"reason": hopper.reason, "deadline": hopper.deadline.isoformat()}
            elif event.kind == "closed":
                detail |= {
                    "closing_reason": hopper.closing_reason,
                    "within_norm": hopper.within_norm,
                }
            elif event.kind == "claimed":
                detail |= {"by": event.actor}
            steps.append(Step(event.at, f"hopper_{event.kind}", detail))
        for attempt in await session.scalars(
            select(CallbackAttempt)
            .where(CallbackAttempt.hopper_id == hopper.id)
            .order_by(CallbackAttempt.id)
        ):
            steps.append(
                Step(
                    attempt.at,
                    "callback_attempt",
                    {
                        "hopper": hopper.id,
                        "by": attempt.member,
                        "outcome": attempt.outcome,
                        "finished_at": (
                            attempt.finished_at.isoformat() if attempt.finished_at else None
                        ),
                    },
                )
            )
    return steps


async def may_see(session: AsyncSession, user: User, journey: Journey) -> bool:
    """Supervisors and admins: every call. A team's members and lead: calls that reached
    their team (offered, transferred, or a hopper of theirs). An agent: the call at their
    phone now or the one before it (cti.privacy.own_call), as the popup."""
    if user.role in ALL_CALLS:
        return True
    if user.role in ("member", "lead"):
        return bool(user.team_id) and user.team_id in journey.teams
    if user.role == "agent":
        return await own_call(session, user.extension, journey.call.uniqueid) is not None
    return False
