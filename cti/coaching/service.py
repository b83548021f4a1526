"""Coaching: a supervisor, or the lead of the agent's team, listens in on an agent's call.

The flow
--------
1. ``start`` checks who asks (a supervisor or admin: any agent's call; a team lead: the
   calls of their own team's agents), finds the agent's answered leg of the call on the
   live call board (cti/calls/live.py, fed by the call tracker) and the agent's channel
   among Asterisk's live channels, and sends one AMI ``Originate`` of the asker's own
   phone into the ``coaching`` dialplan context (deploy/asterisk/dialplan/coaching.conf.j2)
   with the mode as extension: ChanSpy on the agent's channel, listen (q), whisper (w) or
   barge (B). With several nodes it is sent to the node that carries the agent's channel
   (cti/ami/nodes.py `carrying`): ChanSpy sees only its own Asterisk's channels.
2. With ``[coaching] announce`` (the default) the dialplan first whispers a short tone to
   the agent alone, so an agent always knows when someone joins.
3. The request is audited when Asterisk accepted the Originate ("coach"); the spy's start
   and end are audited from Asterisk's own events (ChanSpyStart and ChanSpyStop of the
   channel whose Uniqueid we gave, ``coach-<session>``), and a phone that was not answered
   from the OriginateResponse. The events are written by the owner of the call tracking
   lease (cti/calls/lease.py) alone, so two ``bereik serve`` processes write one row each.

The audit rows of one session share object ``coaching``/<session>; their detail names the
call, the agent and the mode.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from panoramisk.message import Message
from sqlalchemy import select

from cti.ami.bus import EventBus, reads
from cti.ami.client import AmiActionFailed, AmiClient, AmiError, AmiNotConnected, AmiTimeout
from cti.ami.nodes import AmiNodes, NoNodeAvailable
from cti.audit import audit
from cti.calls.live import AgentCall, LiveCalls
from cti.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unavailable
from cti.services import Services
from cti.store.models import AuditEntry, Call, User
from dialplan.config import KCC_ID, Config

log = logging.getLogger("bereik.coaching")

MODES = ("listen", "whisper", "barge")
CONTEXT = "coaching"
VARIABLE = "BEREIK_COACH_SPY"
# The Uniqueid given to the coach's channel: how its ChanSpy events are known as ours.
CHANNEL_PREFIX = "coach-"
ACTION_PREFIX = "bereik-coach-"
OBJECT = "coaching"
TIMEOUT = 5.0
# How long the coach's own phone rings before the attempt is given up.
RING_SECONDS = 30
UNREACHABLE = "de telefooncentrale is nu niet bereikbaar; probeer het zo opnieuw"


@dataclass(frozen=True)
class Session:
    id: str
    mode: str
    call: str  # the calls row's uniqueid
    agent: str  # the agent's extension
    phone: str  # the coach's extension


def agent_team(config: Config, extension: str) -> str:
    """The team an agent's phone belongs to: the KCC for its agents, else the team that
    lists it as a member; "" for a phone in neither."""
    if extension in config.kcc.agents:
        return KCC_ID
    return next((team.id for team in config.teams if extension in team.members), "")


def may_coach(user: User, team_id: str) -> bool:
    """Supervisors (and admins) coach every agent; a team lead the agents of their team."""
    if user.role in ("supervisor", "admin"):
        return True
    return user.role == "lead" and bool(user.team_id) and user.team_id == team_id


def agent_on(board: LiveCalls, call: Call) -> AgentCall | None:
    """The agent who answered this call and is on it now (the live call board)."""
    keys = {call.uniqueid, call.linkedid} - {""}
    return next(
        (c for c in board.calls.values() if c.linkedid in keys and c.state == "answered"), None
    )


async def find_call(services: Services, key: str) -> Call:
    async with services.sessions() as session:
        call = await session.scalar(
            select(Call).where(Call.id == int(key))
            if key.isdigit() and len(key) <= 12
            else select(Call).where(Call.uniqueid == key)
        )
    if call is None:
        raise NotFound(f"gesprek {key} bestaat niet")
    return call


async def refuse(services: Services, user: User, call: str, why: str) -> None:
    """A refused attempt to listen in, on record (BIO)."""
    async with services.sessions() as session:
        audit(session, user.name, "refuse", "call", call, f"coach: {why}")
        await session.commit()


async def start(services: Services, board: LiveCalls, key: str, mode: str, user: User) -> Session:
    """Ring the user's phone and join it to the agent's leg of call `key` (id or uniqueid)
    in `mode`; raises a DomainError (404 unknown call, 409 no agent on it, 403 not theirs)."""
    if mode not in MODES:
        raise Invalid(f"mode must be one of {', '.join(MODES)}")
    call = await find_call(services, key)
    agent = agent_on(board, call)
    if agent is None:
        raise Conflict(f"gesprek {key} heeft nu geen medewerker om mee te luisteren")
    team = agent_team(services.config, agent.extension)
    if not may_coach(user, team):
        await refuse(services, user, call.uniqueid, f"agent {agent.extension} of team {team}")
        raise Forbidden(
            "alleen een supervisor of de teamleider van deze medewerker mag meeluisteren"
        )
    phone = user.extension
    if not phone or phone not in {p.extension for p in services.config.phones}:
        raise Conflict(f"{user.name} heeft geen toestel in de configuratie om mee te luisteren")
    if phone == agent.extension:
        raise Conflict("dit is uw eigen gesprek")
    ami = services.ami
    if ami is None or not ami.connected:
        raise Unavailable(UNREACHABLE)
    session = Session(
        id=secrets.token_hex(6), mode=mode, call=call.uniqueid, agent=agent.extension, phone=phone
    )
    try:
        node = await _node_of(ami, agent.channel)
        await node.action(
            {
                "Action": "Originate",
                "ActionID": f"{ACTION_PREFIX}{session.id}",
                "ChannelId": f"{CHANNEL_PREFIX}{session.id}",
                "Channel": f"PJSIP/{phone}",
                "Context": CONTEXT,
                "Exten": mode,
                "Priority": "1",
                "Timeout": str(RING_SECONDS * 1000),
                # What the coach's display shows while it rings: whose call to join.
                "CallerID": f'"{_label(mode)} {agent.extension}" <{agent.extension}>',
                "Variable": f"{VARIABLE}={agent.channel}",
                "Async": "true",
            },
            timeout=TIMEOUT,
        )
    except DomainError:
        raise
    except (AmiNotConnected, NoNodeAvailable):
        raise Unavailable(
            "de telefooncentrale is nu niet bereikbaar; probeer het zo opnieuw"
        ) from None
    except AmiTimeout:
        # It may have been carried out; never sent again. Its events still audit it.
        log.warning("coaching Originate %s: no response in time", session.id)
    except (AmiActionFailed, AmiError) as exc:
        raise DomainError(f"de telefooncentrale weigerde het meeluisteren: {exc}", 502) from None
    async with services.sessions() as db:
        audit(db, user.name, "coach", OBJECT, session.id, _detail(session))
        await db.commit()
    log.info("coaching %s: %s rings %s for %s", session.id, mode, phone, agent.channel)
    return session


def _label(mode: str) -> str:
    return {"listen": "Meeluisteren", "whisper": "Fluisteren", "barge": "Inbreken"}[mode]


def _detail(session: Session) -> str:
    return f"{session.mode} call {session.call} agent {session.agent} from phone {session.phone}"


async def _node_of(ami: AmiClient | AmiNodes, channel: str) -> AmiClient | AmiNodes:
    """Where the agent's channel is: the one Asterisk, or with several nodes the node whose
    channel it is (by its Uniqueid's systemname). 409 when the channel is gone."""
    live = await ami.action_list({"Action": "CoreShowChannels"}, timeout=TIMEOUT)
    found = next(
        (c for c in live if c.get("Event") == "CoreShowChannel" and c.get("Channel") == channel),
        None,
    )
    if found is None:
        raise Conflict("dit gesprek is net beëindigd")
    if isinstance(ami, AmiNodes):
        return ami.carrying(str(found.get("Uniqueid", "")))
    return ami


# -- AMI events: the start and end of each session, on record -----------------------------


def session_of(event: Message) -> str:
    """The session id of a coach's spy or originate event; "" for anything else."""
    name = event.get("Event")
    if name in ("ChanSpyStart", "ChanSpyStop"):
        uniqueid = str(event.get("SpyerUniqueid", ""))
        return uniqueid.removeprefix(CHANNEL_PREFIX) if uniqueid.startswith(CHANNEL_PREFIX) else ""
    if name == "OriginateResponse":
        action = str(event.get("ActionID", ""))
        if action.startswith(ACTION_PREFIX) and event.get("Response") != "Success":
            return action.removeprefix(ACTION_PREFIX)
    return ""


async def record_event(services: Services, event: Message) -> None:
    """Audit a session's start (ChanSpyStart), end (ChanSpyStop) or unanswered phone."""
    session_id = session_of(event)
    if not session_id:
        return
    name = event.get("Event")
    async with services.sessions() as db:
        asked = await db.scalar(
            select(AuditEntry)
            .where(
                AuditEntry.object_type == OBJECT,
                AuditEntry.object_id == session_id,
                AuditEntry.action == "coach",
            )
            .limit(1)
        )
        actor = asked.actor if asked is not None else "system"
        detail = asked.detail if asked is not None else ""
        if name == "ChanSpyStart":
            action, detail = "coach_start", f"{detail}: on {event.get('SpyeeChannel', '')}"
        elif name == "ChanSpyStop":
            action = "coach_end"
        else:
            action, detail = "coach_end", f"{detail}: the phone was not answered"
        audit(db, actor, action, OBJECT, session_id, detail)
        await db.commit()
    log.info("coaching %s: %s", session_id, action)


def subscribe(services: Services, bus: EventBus, owner: asyncio.Event | None = None) -> None:
    """Audit the sessions' starts and ends; with `owner` (the call tracking lease) only
    while this process owns it, so each is written once."""

    @reads("ChanSpyStart", "ChanSpyStop", "OriginateResponse")
    async def on_event(event: Message) -> None:
        if owner is not None and not owner.is_set():
            return
        if event.get("Event") in ("ChanSpyStart", "ChanSpyStop", "OriginateResponse"):
            await record_event(services, event)

    bus.subscribe(on_event)


def session_json(session: Session) -> dict[str, Any]:
    return {
        "session": session.id,
        "mode": session.mode,
        "call": session.call,
        "agent": session.agent,
        "phone": session.phone,
        "status": "ringing",
    }
