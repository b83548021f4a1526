"""Hoppers: creating, linking, reassigning and listing callback requests.

Every path that makes a hopper (a team number nobody answered, the after-hours menu, a
KCC agent by hand, the API) goes through ``create_hopper`` so the rules hold everywhere:

* **Deadline** from the callback clock: the team's ``norm_working_days`` (the KCC: 2)
  counted in working days from the moment of creation.
* **Repeat contact**: while a hopper for the same caller number and team is still open,
  a new request does *not* make a second hopper (it is not a second piece of work). The
  open one gets ``repeat_count + 1`` and a ``repeat`` event with what the new contact
  brought (reason, agent, category, note, call); the open hopper is returned. Its
  deadline does not move: the citizen was promised a callback by the first deadline. The
  group mailbox gets a short "herhaald contact" mail so the team sees the caller is
  waiting. No ``hoppers_created`` count: the metric counts pieces of work.
* **Acquisitie** (sales calls): the hopper is written for the record, but closed at once
  with ``counts_for_norm = False``; no mail, no metric, never linked as a repeat.
* **Group mailbox**: the mail is queued in the ``outbox`` table in the same transaction
  as the hopper and its ``created`` event, so a crash loses neither; ``cti.outbox``
  sends it.
* **Reassign** (wrong team): the clock keeps running from the first creation (the
  deadline is not recomputed); a ``reassigned`` event says who passed it from which team
  to which, and the new team's mailbox gets the mail.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from cti.callback_clock import deadline as compute_deadline
from cti.errors import Conflict, DomainError, NotFound
from cti.privacy import mask_number
from cti.services import Services
from cti.store.models import Hopper, HopperEvent, OutboxMail, QuestionRecording
from dialplan import clock
from dialplan.config import ACQUISITION, KCC_ID, Config
from dialplan.hours import OpeningHours, cached_opening_hours

KCC_TEAM = KCC_ID
KCC_NORM_WORKING_DAYS = 2
REASONS = ("no_answer", "busy", "nobody_present", "after_hours", "manual", "abandoned")
STATUSES = ("open", "closed")

REASON_TEXT_NL = {
    "no_answer": "niet opgenomen",
    "busy": "alle medewerkers in gesprek",
    "nobody_present": "niemand aanwezig",
    "after_hours": "buiten openingstijden",
    "manual": "aangemaakt door het KCC",
    "abandoned": "opgehangen in de wachtrij",
}


class HopperError(DomainError):
    """A request that cannot be carried out, phrased for the person who asked (a 400)."""


class HopperNotFound(HopperError, NotFound):
    """No hopper with that number (a 404)."""


class HopperNotOpen(HopperError, Conflict):
    """The hopper is closed, or already where it should go (a 409)."""


@dataclass(frozen=True)
class TeamInfo:
    id: str
    name: str
    mailbox: str
    norm_working_days: int


def team_info(config: Config, team_id: str) -> TeamInfo:
    """The team a hopper can belong to: a configured team, or the KCC itself."""
    if team_id == KCC_TEAM:
        return TeamInfo(
            KCC_TEAM, "Klantcontactcentrum", config.kcc.supervisor_mailbox, KCC_NORM_WORKING_DAYS
        )
    try:
        team = config.team(team_id)
    except KeyError:
        raise HopperError(f"onbekend team: {team_id!r}") from None
    return TeamInfo(team.id, team.name, team.mailbox, team.norm_working_days)


def normalise_number(raw: str) -> str:
    """A caller number as we store and compare it: digits, with a leading + kept.

    Keyed numbers and caller IDs arrive with spaces, dashes or a display name; the repeat
    rule must see "070 123 4567" and "0701234567" as the same caller.
    """
    raw = (raw or "").strip()
    # Only the first number in the text counts: a caller ID such as '0612345678";
    # `touch /tmp/x 7`' is that number, not every digit of the text strung together.
    found = _NUMBER.search(raw)
    if found is None:
        return ""
    plus = found.group(0).startswith("+")
    digits = re.sub(r"\D", "", found.group(0))
    return ("+" + digits if plus and digits else digits)[:32]


def callback_number(raw: str, allowed_prefixes: Sequence[str]) -> str:
    """The number a callback may dial, in its national form; HopperError otherwise.

    The one check for every path that takes a number to call back (the callback offer,
    the after-hours menu, the KCC screen, the API, click-to-call): Dutch numbers with an
    allowed prefix (`callbacks.allowed_prefixes`), "+31" and "0031" written as "0";
    abroad only for a "+<country>" entry. The prefix is what keeps paid and foreign
    numbers out; the length check (6 to 15 digits, as numbers were keyed before) only
    refuses what cannot be a number at all.
    """
    number = normalise_number(raw)
    if not number:
        raise HopperError("geen telefoonnummer om terug te bellen")
    if number.startswith("+31"):
        number = "0" + number[3:]
    elif number.startswith("0031"):
        number = "0" + number[4:]
    elif number.startswith("00"):
        number = "+" + number[2:]
    allowed = any(number.startswith(prefix) for prefix in allowed_prefixes)
    digits = len(number.lstrip("+"))
    right_length = 6 <= digits <= 15
    if not (allowed and right_length):
        raise HopperError(
            f"{mask_number(number)} bellen wij niet terug: alleen Nederlandse nummers "
            "(geen 0900-, 0906-, 0909-, 084-, 087- of buitenlandse nummers)"
        )
    return number


# A number as it is written: an optional +, then digits with spaces, dashes, dots,
# slashes or brackets between them ("+31 (0)70-123 45 67").
_NUMBER = re.compile(r"\+?\s*\(?\d[\d ()./-]*")


def opening_hours(config: Config) -> OpeningHours:
    """The exchange's hours, built once per configuration (holiday tables are cached inside)."""
    return cached_opening_hours(config.hours, config.exchange.timezone)


def open_now(config: Config, at: datetime | None = None) -> bool:
    """The one "are we open" of every route decision (the IVR, a team number, a waiting
    line, its closing-time worker): the configured hours, holidays and closures, on the
    exchange's clock (dialplan/clock.py), so a test clock moves every path alike."""
    return opening_hours(config).is_open(at or clock.now())


async def create_hopper(
    services: Services,
    *,
    team_id: str,
    caller: str,
    reason: str,
    agent: str = "",
    category: str = "",
    note: str = "",
    call_uniqueid: str = "",
    actor: str = "system",
    created_at: datetime | None = None,
) -> Hopper:
    """Create a hopper (or link a repeat contact) and queue its mail, in one transaction.

    Returns the hopper that now carries the request: a new one, or the open one a repeat
    contact was linked to (then ``hopper.repeat_count`` went up), as it was stored (not
    attached to a session). Raises HopperError for an unknown team, an unknown reason, an
    unknown question category or a missing caller number. These are the rules of every way
    a hopper is made (IVR, API, KCC screen). The transaction goes through the call path's
    writer (cti/store/writer.py): it may share its commit with other callers', and this
    returns only after that commit.
    """
    config = services.config
    team = team_info(config, team_id)
    if reason not in REASONS:
        raise HopperError(f"onbekende reden: {reason!r} (kies uit {', '.join(REASONS)})")
    number = callback_number(caller, config.callbacks.allowed_prefixes)
    now = created_at or clock.now()
    if now.tzinfo is None:
        raise HopperError("created_at must be timezone-aware")
    category = category.strip().lower()[:64]
    acquisition = category == ACQUISITION
    if category and category not in config.known_categories():
        raise HopperError(f"onbekende vraagcategorie: {category!r}")

    # Two calls from one number ending at the same moment (in this process or in another
    # on the same database) must not both make a hopper: a unique index allows one open
    # hopper per caller and team. The one that loses the race gets an IntegrityError,
    # tries again, and then finds the other's hopper open and links to it. The same retry
    # settles two repeat contacts racing for one hopper's next mail key.
    contact = _Contact(
        team=team,
        number=number,
        reason=reason,
        agent=agent,
        category=category,
        note=note,
        call_uniqueid=call_uniqueid,
        actor=actor,
        now=now,
    )
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            hopper, new = await services.writer.transaction(
                functools.partial(_create_or_link, config=config, c=contact)
            )
            break
        except IntegrityError:
            if attempt == _ATTEMPTS:
                raise
    if new and not acquisition:
        services.metrics.hopper_created(team.id, reason)
    return hopper


_ATTEMPTS = 3

# The tables, for the call path's Core statements: a hopper costs five statements, which
# the ORM's unit of work, identity map and per-statement compilation made several times
# dearer than the statements themselves (bench/README.md, profile per part).
HOPPERS = cast(Table, Hopper.__table__)
HOPPER_EVENTS = cast(Table, HopperEvent.__table__)
OUTBOX = cast(Table, OutboxMail.__table__)
RECORDINGS = cast(Table, QuestionRecording.__table__)

# Built once: a statement object keeps its cache key, so each execution finds its compiled
# form in the engine's cache without walking the statement again. Bound parameters are
# named apart from the columns (an UPDATE reserves the column names for its SET clause).
_OPEN_HOPPER = (
    select(HOPPERS)
    .where(
        HOPPERS.c.caller == bindparam("p_caller"),
        HOPPERS.c.team_id == bindparam("p_team"),
        HOPPERS.c.status == "open",
    )
    .order_by(HOPPERS.c.created_at)
    .limit(1)
    # PostgreSQL: two repeat contacts for one hopper take turns (SQLite: one writer).
    .with_for_update()
)
_INSERT_HOPPER = insert(HOPPERS).returning(HOPPERS.c.id)
_INSERT_EVENT = insert(HOPPER_EVENTS)
_INSERT_MAIL = insert(OUTBOX)
_COUNT_REPEAT = (
    update(HOPPERS)
    .where(HOPPERS.c.id == bindparam("p_id"))
    .values(repeat_count=bindparam("p_count"), category=bindparam("p_category"))
)
# One statement links and tells the length (RETURNING: SQLite ≥ 3.35, PostgreSQL), where
# a separate read cost the hopper path another round trip.
_LINK_RECORDINGS = (
    update(RECORDINGS)
    .where(
        RECORDINGS.c.call_uniqueid == bindparam("p_call"),
        RECORDINGS.c.hopper_id.is_(None),
    )
    .values(hopper_id=bindparam("p_hopper"))
    .returning(RECORDINGS.c.seconds)
)


@dataclass(frozen=True)
class _Contact:
    """One request for a callback, as create_hopper checked it."""

    team: TeamInfo
    number: str
    reason: str
    agent: str
    category: str
    note: str
    call_uniqueid: str
    actor: str
    now: datetime

    @property
    def acquisition(self) -> bool:
        return self.category == ACQUISITION


def _create_or_link(conn: Connection, *, config: Config, c: _Contact) -> tuple[Hopper, bool]:
    """The hopper that carries the request, and whether it is new (in ``conn``'s
    transaction)."""
    team = c.team
    if not c.acquisition:
        found = conn.execute(_OPEN_HOPPER, {"p_caller": c.number, "p_team": team.id}).first()
        if found is not None:
            open_one = Hopper(**found._mapping)
            _link_recordings(conn, open_one.id, c.call_uniqueid)
            _link_repeat(conn, open_one, team, config, c)
            return open_one, False

    values: dict[str, Any] = {
        "team_id": team.id,
        "caller": c.number,
        "reason": c.reason,
        "agent": c.agent[:32],
        "category": c.category,
        "note": c.note[:4000],
        "call_uniqueid": c.call_uniqueid[:64],
        "created_at": c.now,
        "deadline": compute_deadline(c.now, team.norm_working_days, opening_hours(config)),
        "status": "open",
        "claimed_by": "",
        "closed_at": None,
        "closed_by": "",
        "closing_reason": "",
        "within_norm": None,
        "counts_for_norm": not c.acquisition,
        "repeat_of_id": None,
        "repeat_count": 0,
    }
    if c.acquisition:
        # Sales calls are not a citizen's question: on record, out of the norm.
        values.update(_closed_values(ACQUISITION, c.actor, c.now))
    hopper_id = conn.execute(_INSERT_HOPPER, values).scalar_one()
    hopper = Hopper(id=hopper_id, **values)
    recorded = _link_recordings(conn, hopper_id, c.call_uniqueid)
    events = [
        _event_values(
            hopper,
            at=c.now,
            actor=c.actor,
            kind="created",
            call_uniqueid=c.call_uniqueid[:64],
            detail={
                "reason": c.reason,
                "agent": c.agent,
                "category": c.category,
                "call_uniqueid": c.call_uniqueid,
            },
        )
    ]
    if c.acquisition:
        events.append(
            _event_values(
                hopper,
                at=c.now,
                actor=c.actor,
                kind="closed",
                detail={"closing_reason": ACQUISITION},
            )
        )
    conn.execute(_INSERT_EVENT, events)
    if team.mailbox and not c.acquisition:
        mail = _new_hopper_mail(
            hopper, team, config, key=f"hopper-{hopper_id}-created", recorded=recorded
        )
        conn.execute(_INSERT_MAIL, _mail_values(mail))
    return hopper, True


def _event_values(
    hopper: Hopper,
    *,
    at: datetime,
    actor: str,
    kind: str,
    detail: dict[str, object],
    call_uniqueid: str = "",
) -> dict[str, Any]:
    return {
        "hopper_id": hopper.id,
        "at": at,
        "actor": actor,
        "kind": kind,
        "team_id": hopper.team_id,
        "detail": detail,
        "call_uniqueid": call_uniqueid,
    }


def _mail_values(mail: OutboxMail) -> dict[str, Any]:
    return {
        "key": mail.key,
        "recipient": mail.recipient,
        "subject": mail.subject,
        "body": mail.body,
    }


def _link_recordings(conn: Connection, hopper_id: int, call_uniqueid: str) -> float | None:
    """The question this call recorded (agi/handlers/question.py) belongs to the hopper
    that carries the call's request: linked in the hopper's own transaction. Returns the
    recording's length in seconds (for the hopper's mail), None if the call recorded none.
    """
    if not call_uniqueid:
        return None
    linked = conn.execute(_LINK_RECORDINGS, {"p_call": call_uniqueid[:64], "p_hopper": hopper_id})
    seconds = linked.scalars().first()
    return None if seconds is None else float(seconds)


def _recording_line(seconds: float | None) -> list[str]:
    """The mail names the recording and where to hear it; never the audio itself."""
    if seconds is None:
        return []
    return [
        "",
        f"De beller heeft de vraag ingesproken ({round(seconds)} s). Beluister die bij het "
        "verzoek in de groepsinbox (na aanmelden):",
    ]


def _closed_values(reason: str, actor: str, now: datetime) -> dict[str, Any]:
    """A hopper's fields once closed (mark_closed's, for a hopper written whole)."""
    return {"status": "closed", "closed_at": now, "closed_by": actor, "closing_reason": reason}


def mark_closed(
    session: AsyncSession,
    hopper: Hopper,
    *,
    reason: str,
    actor: str,
    now: datetime,
    detail: dict[str, object],
) -> None:
    """Record that ``hopper`` is closed: status, when, by whom and why, and its ``closed`` event.

    The one place a team's close goes through (an acquisitie is written closed at creation,
    with the same fields and event: `_closed_values`, `_event_values`). The hopper must
    have its id (be flushed); ``detail`` is the event's detail. The caller has checked the
    reason and decided ``within_norm``; nothing commits here.
    """
    for name, value in _closed_values(reason, actor, now).items():
        setattr(hopper, name, value)
    session.add(
        HopperEvent(**_event_values(hopper, at=now, actor=actor, kind="closed", detail=detail))
    )


async def _open_hopper(session: AsyncSession, caller: str, team_id: str) -> Hopper | None:
    result = await session.execute(
        select(Hopper)
        .where(Hopper.caller == caller, Hopper.team_id == team_id, Hopper.status == "open")
        .order_by(Hopper.created_at)
        .limit(1)
        # PostgreSQL: two repeat contacts for one hopper take turns (SQLite: one writer).
        .with_for_update()
    )
    return result.scalar_one_or_none()


def _link_repeat(
    conn: Connection, hopper: Hopper, team: TeamInfo, config: Config, c: _Contact
) -> None:
    hopper.repeat_count = (hopper.repeat_count or 0) + 1
    # Keep what the first contact did not know yet.
    if c.category and not hopper.category:
        hopper.category = c.category
    conn.execute(
        _COUNT_REPEAT,
        {"p_id": hopper.id, "p_count": hopper.repeat_count, "p_category": hopper.category},
    )
    conn.execute(
        _INSERT_EVENT,
        _event_values(
            hopper,
            at=c.now,
            actor=c.actor,
            kind="repeat",
            call_uniqueid=c.call_uniqueid[:64],
            detail={
                "reason": c.reason,
                "agent": c.agent,
                "category": c.category,
                "note": c.note,
                "call_uniqueid": c.call_uniqueid,
                "repeat_count": hopper.repeat_count,
            },
        ),
    )
    if team.mailbox:
        local = c.now.astimezone(opening_hours(config).tz)
        body = (
            f"{hopper.caller} heeft opnieuw contact gezocht met {team.name} "
            f"op {local:%d-%m-%Y %H:%M} ({REASON_TEXT_NL.get(c.reason, c.reason)}).\n"
            f"Dit hoort bij terugbelverzoek #{hopper.id}; er is geen nieuw verzoek gemaakt.\n"
            f"Aantal herhaalde contacten: {hopper.repeat_count}.\n"
        )
        if c.note:
            body += f"Notitie: {c.note}\n"
        body += _link(config, hopper.id)
        conn.execute(
            _INSERT_MAIL,
            {
                "key": f"hopper-{hopper.id}-repeat-{hopper.repeat_count}",
                "recipient": team.mailbox,
                "subject": f"Herhaald contact bij terugbelverzoek #{hopper.id} - {hopper.caller}",
                "body": body,
            },
        )


def _link(config: Config, hopper_id: int) -> str:
    base = config.server.public_url.rstrip("/")
    return f"\n{base}/team/hoppers/{hopper_id}\n" if base else ""


def _new_hopper_mail(
    hopper: Hopper, team: TeamInfo, config: Config, *, key: str, recorded: float | None = None
) -> OutboxMail:
    tz = opening_hours(config).tz
    lines = [
        f"Nieuw terugbelverzoek voor {team.name}.",
        "",
        f"Terugbellen:   {hopper.caller}",
        f"Reden:         {REASON_TEXT_NL.get(hopper.reason, hopper.reason)}",
        f"Aangemaakt:    {hopper.created_at.astimezone(tz):%d-%m-%Y %H:%M}",
        f"Uiterlijk:     {hopper.deadline.astimezone(tz):%d-%m-%Y %H:%M}",
    ]
    if hopper.agent:
        name = next((p.name for p in config.phones if p.extension == hopper.agent), "")
        who = f"{name} ({hopper.agent})" if name else hopper.agent
        lines.append(f"Doorverbonden door KCC-medewerker: {who}")
    if hopper.category:
        lines.append(f"Vraagcategorie: {hopper.category}")
    if hopper.note:
        lines += ["", "Notitie:", hopper.note]
    lines += _recording_line(recorded)
    lines.append(_link(config, hopper.id))
    return OutboxMail(
        key=key,
        recipient=team.mailbox,
        subject=f"Terugbelverzoek #{hopper.id} - {hopper.caller} - "
        f"uiterlijk {hopper.deadline.astimezone(tz):%d-%m %H:%M}",
        body="\n".join(lines),
    )


async def reassign_hopper(
    services: Services, hopper_id: int, *, to_team: str, actor: str, note: str = ""
) -> Hopper:
    """Pass an open hopper to another team; the deadline stays that of the first creation."""
    config = services.config
    target = team_info(config, to_team)
    async with services.sessions() as session, session.begin():
        hopper = await session.get(Hopper, hopper_id)
        if hopper is None:
            raise HopperNotFound(f"terugbelverzoek {hopper_id} bestaat niet")
        if hopper.status != "open":
            raise HopperNotOpen(f"terugbelverzoek {hopper_id} is al gesloten")
        if hopper.team_id == target.id:
            raise HopperError(f"terugbelverzoek {hopper_id} hoort al bij {target.name}")
        other = await _open_hopper(session, hopper.caller, target.id)
        if other is not None:
            # One open hopper per caller and team (a unique index): the team's own is the
            # one to work on, this one is closed or stays where it is.
            raise HopperError(
                f"{target.name} heeft al open terugbelverzoek {other.id} voor {hopper.caller}"
            )
        previous = hopper.team_id
        hopper.team_id = target.id
        hopper.claimed_by = ""  # the old team's claim means nothing to the new team
        session.add(
            HopperEvent(
                hopper_id=hopper.id,
                actor=actor,
                kind="reassigned",
                team_id=target.id,
                detail={"from_team": previous, "to_team": target.id, "note": note},
            )
        )
        if target.mailbox:
            events = await session.scalar(
                select(HopperEvent.id)
                .where(HopperEvent.hopper_id == hopper.id, HopperEvent.kind == "reassigned")
                .order_by(HopperEvent.id.desc())
                .limit(1)
            )
            mail = _new_hopper_mail(hopper, target, config, key=f"hopper-{hopper.id}-to-{events}")
            mail.subject = f"Doorgestuurd: {mail.subject}"
            mail.body = (
                f"Doorgestuurd door {actor} (was: {previous}).\n"
                + (f"Toelichting: {note}\n" if note else "")
                + "\n"
                + mail.body
            )
            session.add(mail)
    return hopper


async def list_hoppers(
    session: AsyncSession,
    *,
    teams: Sequence[str] | None = None,
    status: str | None = None,
    limit: int = 500,
) -> list[Hopper]:
    """Hoppers, oldest deadline first; ``teams=None`` means every team."""
    query = select(Hopper).options(selectinload(Hopper.events))
    if teams is not None:
        query = query.where(Hopper.team_id.in_(list(teams)))
    if status:
        query = query.where(Hopper.status == status)
    query = query.order_by(Hopper.deadline, Hopper.id).limit(limit)
    return list((await session.execute(query)).scalars())


def hopper_json(hopper: Hopper, *, with_events: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": hopper.id,
        "team": hopper.team_id,
        "caller": hopper.caller,
        "reason": hopper.reason,
        "agent": hopper.agent,
        "category": hopper.category,
        "note": hopper.note,
        "call_uniqueid": hopper.call_uniqueid,
        "created_at": hopper.created_at.isoformat(),
        "deadline": hopper.deadline.isoformat(),
        "status": hopper.status,
        "claimed_by": hopper.claimed_by,
        "closed_at": hopper.closed_at.isoformat() if hopper.closed_at else None,
        "closing_reason": hopper.closing_reason,
        "counts_for_norm": hopper.counts_for_norm,
        "within_norm": hopper.within_norm,
        "repeat_count": hopper.repeat_count,
    }
    if with_events:
        data["history"] = [
            {
                "at": e.at.isoformat(),
                "actor": e.actor,
                "kind": e.kind,
                "team": e.team_id,
                "detail": e.detail,
            }
            for e in hopper.events
        ]
    return data
