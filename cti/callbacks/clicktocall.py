"""Click-to-call: ring the member's own phone, then the citizen, and record what happened.

The flow
--------
1. ``start_callback`` writes a ``pending`` attempt first (so nothing is lost if the AMI
   answer never comes), then sends one AMI ``Originate`` of ``PJSIP/<member extension>``
   into the ``bereik-callback`` dialplan context with the citizen's number as extension.
   The channel variable ``__BEREIK_ATTEMPT`` (inherited by the citizen's channel) carries
   the attempt id; manager.conf lists it in ``channelvars`` so every AMI event of both
   channels names the attempt. An Originate is never resent: the AMI client refuses to
   replay after a reconnect, and a timeout leaves the attempt pending, never retried.
2. When the member answers, the dialplan dials ``PJSIP/<number>@trunk`` showing the
   main number (or ``callbacks.caller_id``) to the citizen.
3. ``subscribe`` reads the outcome from AMI events: ``OriginateResponse`` Failure (the
   member's phone did not answer; does not count as trying the citizen), ``DialEnd``
   (ANSWER = reached, NOANSWER, BUSY, CHANUNAVAIL/CONGESTION = failed, CANCEL = the
   member hung up first) and the member channel's ``Hangup`` for anything left pending.
   Reached closes the hopper (``within_norm`` decided then).

Two ``bereik serve`` processes both see every AMI event; the attempt row is updated with
``WHERE outcome = 'pending'``, so only one of them records the outcome and closes.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from panoramisk.message import Message
from sqlalchemy import select, update

from cti.ami.bus import EventBus, reads
from cti.ami.client import AmiActionFailed, AmiError, AmiNotConnected, AmiTimeout
from cti.audit import audit
from cti.callbacks.service import CallbackError, close_hopper, record_closed
from cti.hoppers.service import HopperError, callback_number
from cti.services import Services
from cti.store.models import CallbackAttempt, Hopper, HopperEvent, User
from dialplan.numbers import formatted

log = logging.getLogger("bereik.callbacks")

CONTEXT = "bereik-callback"
VARIABLE = "BEREIK_ATTEMPT"
ACTION_PREFIX = "bereik-cb-"

# DialEnd DialStatus of the citizen's leg -> attempt outcome.
DIAL_OUTCOMES = {
    "ANSWER": "reached",
    "NOANSWER": "no_answer",
    "BUSY": "busy",
    "CHANUNAVAIL": "failed",
    "CONGESTION": "failed",
    "CANCEL": "cancelled",
}
# OriginateResponse Reason codes (Asterisk's AST_CONTROL_*) for the member's own phone.
ORIGINATE_REASONS = {
    "0": "unavailable",
    "1": "hangup",
    "3": "no_answer",
    "5": "busy",
    "8": "congestion",
}


def attempt_json(attempt: CallbackAttempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "at": attempt.at.isoformat(),
        "member": attempt.member,
        "extension": attempt.extension,
        "outcome": attempt.outcome,
        "detail": attempt.detail,
        "finished_at": attempt.finished_at.isoformat() if attempt.finished_at else None,
    }


def _stale_after(services: Services) -> timedelta:
    """How long an attempt may stay pending before it certainly ended unseen."""
    cb = services.config.callbacks
    return timedelta(seconds=cb.member_ring_seconds + cb.ring_seconds + 60)


async def start_callback(services: Services, hopper_id: int, user: User) -> CallbackAttempt:
    """Record a pending attempt and originate the call; raises CallbackError on refusal."""
    config = services.config
    extension = user.extension
    if not extension:
        raise CallbackError(
            f"{user.name} heeft geen toestel; vraag de beheerder er een te koppelen"
        )
    if extension not in {phone.extension for phone in config.phones}:
        raise CallbackError(f"toestel {extension} van {user.name} staat niet in de configuratie")
    if not config.outbound_trunk:
        raise CallbackError(
            "er is geen uitgaande lijn ingesteld ([trunk] server of asterisk.trunk_contact)", 503
        )
    ami = services.ami
    if ami is None or not ami.connected:
        raise CallbackError(
            "de telefooncentrale is nu niet bereikbaar; probeer het zo opnieuw", 503
        )
    now = datetime.now(UTC)
    async with services.sessions() as session, session.begin():
        # Locked (PostgreSQL) until the attempt is committed: two clicks on two processes
        # take turns, and the second finds the first's pending attempt.
        hopper = await session.get(Hopper, hopper_id, with_for_update=True)
        if hopper is None:
            raise CallbackError(f"terugbelverzoek {hopper_id} bestaat niet", 404)
        if hopper.status != "open":
            raise CallbackError(f"terugbelverzoek {hopper_id} is al gesloten", 409)
        busy = await session.scalar(
            select(CallbackAttempt.id).where(
                CallbackAttempt.hopper_id == hopper_id,
                CallbackAttempt.outcome == "pending",
                CallbackAttempt.at > now - _stale_after(services),
            )
        )
        if busy is not None:
            raise CallbackError(f"er loopt al een terugbelpoging voor verzoek {hopper_id}", 409)
        attempt = CallbackAttempt(
            hopper_id=hopper_id, at=now, member=user.name, extension=extension, outcome="pending"
        )
        session.add(attempt)
        await session.flush()
        attempt.action_id = f"{ACTION_PREFIX}{attempt.id}-{secrets.token_hex(4)}"
        if not hopper.claimed_by:
            # Calling the citizen back is taking the hopper on.
            hopper.claimed_by = user.name
        session.add(
            HopperEvent(
                hopper_id=hopper_id,
                at=now,
                actor=user.name,
                kind="attempt",
                team_id=hopper.team_id,
                detail={"attempt": attempt.id, "stage": "started", "extension": extension},
            )
        )
        audit(
            session,
            actor=user.name,
            action="call",
            object_type="hopper",
            object_id=hopper_id,
            detail=f"attempt {attempt.id} from {extension}",
        )
        try:
            # Hoppers made before the check existed may hold a number we must not dial.
            number = callback_number(hopper.caller, config.callbacks.allowed_prefixes)
        except HopperError as exc:
            raise CallbackError(str(exc), 409) from None
        label = f"Terugbellen #{hopper_id}"
    action = {
        "Action": "Originate",
        "ActionID": attempt.action_id,
        "Channel": f"PJSIP/{extension}",
        "Context": CONTEXT,
        # The citizen's number as the provider wants it (trunk.number_format).
        "Exten": formatted(number, config.trunk.number_format, config.trunk.country_code),
        "Priority": "1",
        "Timeout": str(config.callbacks.member_ring_seconds * 1000),
        # What the member's own display shows while it rings.
        "CallerID": f'"{label}" <{number}>',
        "Variable": f"__{VARIABLE}={attempt.id},BEREIK_HOPPER={hopper_id}",
        "Async": "true",
    }
    try:
        await ami.action(action, timeout=5)
    except AmiTimeout:
        # It may have been carried out; never send it again. The outcome may still
        # arrive by events; if not, the scheduler marks the attempt stale.
        log.warning("Originate for attempt %s: no response in time", attempt.id)
        return attempt
    except (AmiActionFailed, AmiNotConnected, AmiError) as exc:
        await finish_attempt(services, attempt.id, "failed", f"system:{type(exc).__name__}")
        raise CallbackError(f"de telefooncentrale weigerde het gesprek: {exc}", 502) from None
    return attempt


async def finish_attempt(
    services: Services, attempt_id: int, outcome: str, detail: str, at: datetime | None = None
) -> bool:
    """Record an attempt's outcome once; True if this call did it (it was still pending).

    ``reached`` closes the hopper in the same transaction when it is still open.
    """
    at = at or datetime.now(UTC)
    closed: Hopper | None = None
    async with services.sessions() as session, session.begin():
        result = await session.execute(
            update(CallbackAttempt)
            .where(CallbackAttempt.id == attempt_id, CallbackAttempt.outcome == "pending")
            .values(outcome=outcome, detail=detail[:64], finished_at=at)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        attempt = await session.get(CallbackAttempt, attempt_id)
        assert attempt is not None
        hopper = await session.get(Hopper, attempt.hopper_id)
        if hopper is None:
            return True
        session.add(
            HopperEvent(
                hopper_id=hopper.id,
                at=at,
                actor=attempt.member,
                kind="attempt",
                team_id=hopper.team_id,
                detail={"attempt": attempt.id, "outcome": outcome, "detail": detail},
            )
        )
        if outcome == "reached" and hopper.status == "open":
            await close_hopper(
                session, hopper, "reached", attempt.member, config=services.config, now=at
            )
            closed = hopper
    if closed is not None:
        record_closed(services, closed)
    log.info("callback attempt %s: %s (%s)", attempt_id, outcome, detail)
    return True


async def expire_stale_attempts(services: Services, now: datetime | None = None) -> int:
    """Pending attempts whose calls must have ended long ago (events missed while down)."""
    now = now or datetime.now(UTC)
    async with services.sessions() as session:
        ids = list(
            (
                await session.execute(
                    select(CallbackAttempt.id).where(
                        CallbackAttempt.outcome == "pending",
                        CallbackAttempt.at < now - _stale_after(services),
                    )
                )
            ).scalars()
        )
    done = 0
    for attempt_id in ids:
        done += await finish_attempt(services, attempt_id, "failed", "system:no_outcome_seen", now)
    return done


# -- AMI events ---------------------------------------------------------------------------


def _attempt_of(event: Message, prefix: str = "") -> int | None:
    """The attempt id in the event's ChanVariable (or DestChanVariable) headers."""
    values = event.get(f"{prefix}ChanVariable")
    if values is None:
        return None
    for value in values if isinstance(values, list) else [values]:
        name, _, raw = str(value).partition("=")
        if name.strip() == VARIABLE and raw.strip().isdigit():
            return int(raw.strip())
    return None


async def _attempt_by_action(services: Services, action_id: str) -> CallbackAttempt | None:
    async with services.sessions() as session:
        return (
            await session.execute(
                select(CallbackAttempt).where(CallbackAttempt.action_id == action_id)
            )
        ).scalar_one_or_none()


async def handle_event(services: Services, event: Message) -> None:
    name = event.get("Event")
    if name == "OriginateResponse":
        action_id = str(event.get("ActionID", ""))
        if not action_id.startswith(ACTION_PREFIX) or event.get("Response") == "Success":
            return
        attempt = await _attempt_by_action(services, action_id)
        if attempt is not None:
            reason = ORIGINATE_REASONS.get(str(event.get("Reason", "")), "failed")
            await finish_attempt(services, attempt.id, "failed", f"member:{reason}")
    elif name == "DialEnd":
        attempt_id = _attempt_of(event)
        if attempt_id is None:
            return
        status = str(event.get("DialStatus", ""))
        outcome = DIAL_OUTCOMES.get(status, "failed")
        detail = f"member:{status.lower()}" if outcome == "cancelled" else status.lower()
        await finish_attempt(services, attempt_id, outcome, detail)
    elif name == "Hangup":
        attempt_id = _attempt_of(event)
        if attempt_id is None:
            return
        async with services.sessions() as session:
            attempt = await session.get(CallbackAttempt, attempt_id)
        channel = str(event.get("Channel", ""))
        # Only the member's channel ending settles it; the citizen's leg ends via DialEnd.
        if (
            attempt is not None
            and attempt.outcome == "pending"
            and channel.startswith(f"PJSIP/{attempt.extension}-")
        ):
            cause = event.get("Cause", "")
            await finish_attempt(services, attempt_id, "failed", f"member:hangup:{cause}")


def subscribe(services: Services, bus: EventBus) -> None:
    @reads("OriginateResponse", "DialEnd", "Hangup")
    async def on_event(event: Message) -> None:
        if event.get("Event") in ("OriginateResponse", "DialEnd", "Hangup"):
            await handle_event(services, event)

    bus.subscribe(on_event)
