"""Closing a hopper, claiming it, and the rules that decide whether a promise was kept.

``within_norm`` is decided once, in ``close_hopper``, and never changed afterwards: the
figures a team is steered on must not move when someone edits an old hopper.

How each closing reason counts
------------------------------
* ``reached`` (the citizen was called back and answered) and ``solved_by_email``: the
  promise was kept when the hopper closed at or before its deadline.
* ``answered_other_channel`` (the citizen got the answer elsewhere: at the desk, in the
  app, from someone else): needs a note saying where. The promise was a callback, so
  this counts as kept only when the team really tried to call back (an attempt that
  reached or tried the citizen) before the deadline; without such an attempt it counts
  as missed, however early it is closed. Otherwise any hopper could be closed "in time"
  by choosing this reason.
* ``unreachable``: allowed only after ``callbacks.max_attempts`` attempts that really
  tried the citizen (no answer, busy, or the number failed) in at least two dayparts
  (a morning and an afternoon, local time). It counts as kept when enough such
  attempts were made before the deadline, even if the hopper is closed later.
* ``duplicate`` and ``acquisitie``: not a citizen's question of its own; the hopper
  leaves the norm (``counts_for_norm = False``, ``within_norm`` stays empty).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.audit import audit
from cti.errors import DomainError
from cti.hoppers.service import mark_closed, opening_hours
from cti.services import Services
from cti.store.models import CallbackAttempt, Hopper, HopperEvent
from dialplan.config import Config
from dialplan.hours import OpeningHours

CLOSING_REASONS: dict[str, dict[str, str]] = {
    "reached": {"nl": "teruggebeld en bereikt", "en": "called back and reached"},
    "answered_other_channel": {
        "nl": "beantwoord via een ander kanaal",
        "en": "answered through another channel",
    },
    "solved_by_email": {"nl": "opgelost per e-mail", "en": "solved by e-mail"},
    "acquisitie": {"nl": "acquisitie (geen burgervraag)", "en": "sales call (acquisitie)"},
    "duplicate": {"nl": "dubbel verzoek", "en": "duplicate"},
    "unreachable": {"nl": "onbereikbaar na herhaalde pogingen", "en": "unreachable"},
}
# Reasons by which the hopper leaves the norm altogether.
OUT_OF_NORM = ("acquisitie", "duplicate")
# Attempt outcomes that mean "we tried the citizen and did not get them".
FAILED_OUTCOMES = ("no_answer", "busy", "failed")
# Before this local time an attempt is a morning attempt, from it an afternoon one.
NOON = time(12, 0)
# Attempt details that mean the citizen's phone was never (knowingly) tried: the member's
# own phone failed, or our process lost track of the call.
NOT_TRIED = ("member:", "system:")


class CallbackError(DomainError):
    """A request that cannot be carried out, phrased (in Dutch) for the person who asked;
    raised with the status the API answers (400 unless given)."""


def daypart(at: datetime, hours: OpeningHours) -> str:
    """``morning`` or ``afternoon``, by the local (Europe/Amsterdam) clock."""
    return "morning" if at.astimezone(hours.tz).time() < NOON else "afternoon"


def counts_as_tried(attempt: CallbackAttempt) -> bool:
    """Whether an attempt really tried the citizen and failed.

    A member who did not pick up their own phone, or hung up before the citizen's phone
    rang out, did not try the citizen: that never makes a citizen "unreachable".
    """
    return attempt.outcome in FAILED_OUTCOMES and not attempt.detail.startswith(NOT_TRIED)


@dataclass(frozen=True)
class Unreachability:
    """What the attempts so far allow: closing as unreachable, and whether that is kept."""

    tried: int
    dayparts: frozenset[str]
    allowed: bool
    in_time: bool


def unreachability(
    attempts: Iterable[CallbackAttempt], deadline: datetime, max_attempts: int, hours: OpeningHours
) -> Unreachability:
    tried = [a for a in attempts if counts_as_tried(a)]
    parts = frozenset(daypart(a.at, hours) for a in tried)
    before = [a for a in tried if a.at <= deadline]
    before_parts = {daypart(a.at, hours) for a in before}
    return Unreachability(
        tried=len(tried),
        dayparts=parts,
        allowed=len(tried) >= max_attempts and len(parts) >= 2,
        in_time=len(before) >= max_attempts and len(before_parts) >= 2,
    )


async def load_attempts(session: AsyncSession, hopper_id: int) -> Sequence[CallbackAttempt]:
    result = await session.execute(
        select(CallbackAttempt)
        .where(CallbackAttempt.hopper_id == hopper_id)
        .order_by(CallbackAttempt.id)
    )
    return list(result.scalars())


async def close_hopper(
    session: AsyncSession,
    hopper: Hopper,
    reason: str,
    actor: str,
    *,
    config: Config,
    note: str = "",
    now: datetime | None = None,
) -> Hopper:
    """Close an open hopper with a required reason; decide ``within_norm`` once.

    Adds the ``closed`` event and the audit row to ``session``; the caller commits (and
    then calls ``record_closed`` for the metric). Raises CallbackError for a missing or
    unknown reason, a hopper already closed, or ``unreachable`` without enough attempts.
    """
    reason = (reason or "").strip()
    if not reason:
        raise CallbackError("een reden om te sluiten is verplicht")
    if reason not in CLOSING_REASONS:
        raise CallbackError(f"onbekende reden {reason!r}; kies uit {', '.join(CLOSING_REASONS)}")
    if hopper.status != "open":
        raise CallbackError(f"terugbelverzoek {hopper.id} is al gesloten", status=409)
    now = now or datetime.now(UTC)
    hours = opening_hours(config)
    detail: dict[str, object] = {"closing_reason": reason}
    within: bool | None
    if reason in OUT_OF_NORM:
        hopper.counts_for_norm = False
        within = None
    elif reason == "unreachable":
        status = unreachability(
            await load_attempts(session, hopper.id),
            hopper.deadline,
            config.callbacks.max_attempts,
            hours,
        )
        if not status.allowed:
            raise CallbackError(
                f"onbereikbaar kan pas na {config.callbacks.max_attempts} mislukte pogingen "
                f"in de ochtend én de middag (nu {status.tried} pogingen, dagdelen: "
                f"{', '.join(sorted(status.dayparts)) or 'geen'})",
                status=409,
            )
        within = status.in_time
        detail["attempts"] = status.tried
    elif reason == "answered_other_channel":
        if not note.strip():
            raise CallbackError("zeg in de notitie via welk kanaal de burger antwoord kreeg")
        attempts = await load_attempts(session, hopper.id)
        within = any(
            (a.outcome == "reached" or counts_as_tried(a)) and a.at <= hopper.deadline
            for a in attempts
        )
    else:
        within = now <= hopper.deadline
    if note:
        detail["note"] = note[:2000]
    # Decided here and nowhere else: a closed hopper never reaches this line again.
    hopper.within_norm = within if hopper.counts_for_norm else None
    detail["within_norm"] = hopper.within_norm
    mark_closed(session, hopper, reason=reason, actor=actor, now=now, detail=detail)
    audit(
        session,
        actor=actor,
        action="close",
        object_type="hopper",
        object_id=hopper.id,
        detail=reason,
    )
    return hopper


def record_closed(services: Services, hopper: Hopper) -> None:
    """The metric for a hopper that was just closed (after the commit succeeded)."""
    if hopper.counts_for_norm and hopper.within_norm is not None:
        services.metrics.callback_closed(hopper.team_id, hopper.within_norm)


def claim_hopper(session: AsyncSession, hopper: Hopper, actor: str) -> Hopper:
    """Take an open hopper on: the team sees who is calling this citizen back."""
    if hopper.status != "open":
        raise CallbackError(f"terugbelverzoek {hopper.id} is al gesloten", status=409)
    if hopper.claimed_by and hopper.claimed_by != actor:
        raise CallbackError(
            f"terugbelverzoek {hopper.id} is al opgepakt door {hopper.claimed_by}", status=409
        )
    if hopper.claimed_by == actor:
        return hopper
    hopper.claimed_by = actor
    session.add(
        HopperEvent(
            hopper_id=hopper.id, actor=actor, kind="claimed", team_id=hopper.team_id, detail={}
        )
    )
    audit(session, actor=actor, action="claim", object_type="hopper", object_id=hopper.id)
    return hopper
