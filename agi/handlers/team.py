"""A team number: which present members to ring, and how (all at once, or in order).

The dialplan (deploy/asterisk/dialplan/team.conf.j2) rings ``BEREIK_DIAL_1`` ..
``BEREIK_DIAL_<BEREIK_DIALS>`` one after another, each for ``BEREIK_RING`` seconds.
Ring-all is one entry naming every present member (``PJSIP/a&PJSIP/b``); linear is one
entry per member, in the configured order. Doing the loop in the dialplan keeps Asterisk
in charge of the ringing: nothing here waits on a ringing phone, and when no one answers
the dialplan goes to the hopper path with the reason it saw (no_answer or busy).
No present member at all: ``BEREIK_DIALS=0`` and the reason ``nobody_present``; present
members who are all on a call (or in a KCC wrap-up) are not rung either: reason ``busy``.
Outside opening hours (a citizen who dialled the team number directly, or a late
transfer) nobody is rung either: the reason is ``after_hours``, and the hopper's clock
starts on the next working day.
"""

from __future__ import annotations

from agi.handlers.ivr import Conversation
from agi.handlers.quality import ask as ask_quality_consent
from agi.server import AgiChannel
from cti.announcements.service import playable
from cti.hoppers.service import open_now
from cti.presence import present_members
from cti.queue.service import unavailable_agents
from cti.services import Services
from dialplan.config import Team

# Device states of a phone that must not get another call: it is in a call, on hold, or
# already ringing for one while in a call. Call waiting on a team number rings a member
# who is talking to a citizen; a second ringing call on an idle phone is fine.
BUSY_DEVICE_STATES = ("INUSE", "BUSY", "ONHOLD", "RINGINUSE")


async def free_members(channel: AgiChannel, services: Services, members: list[str]) -> list[str]:
    """Of `members`, those not in a call now and not in a KCC wrap-up.

    The device state comes from Asterisk (DEVICE_STATE of the phone); the wrap-up from
    the waiting line's agent states, so an agent who is also a team member is not rung in
    the seconds the queue grants them after a call.
    """
    if not members:
        return []
    busy = await unavailable_agents(services, members)
    # Every member's state in one GET FULL VARIABLE (one round trip; a state holds no "|").
    joined = "|".join(f"${{DEVICE_STATE(PJSIP/{member})}}" for member in members)
    response = await channel.command("GET FULL VARIABLE", joined)
    states = response.data.split("|") if response.result == "1" else []
    states += [""] * (len(members) - len(states))
    free = []
    for member, state in zip(members, states, strict=False):
        if state in BUSY_DEVICE_STATES or member in busy:
            channel.log.info("team member %s not rung: %s", member, state or "wrap-up")
            continue
        free.append(member)
    return free


def dial_plan(team: Team, present: list[str]) -> list[str]:
    """The Dial() targets to try in turn."""
    if not present:
        return []
    if team.strategy == "linear":
        return [f"PJSIP/{member}" for member in present]
    return ["&".join(f"PJSIP/{member}" for member in present)]


async def _team_announcements(channel: AgiChannel, services: Services, team_id: str) -> None:
    """What the operators announced for this team ("team:<id>"), before it rings."""
    talk = Conversation(channel, services)
    if await playable(services, f"team:{team_id}"):
        await channel.answer()  # a call dialled straight in is not answered yet
        await talk.announcements(f"team:{team_id}")


async def team(channel: AgiChannel, services: Services) -> None:
    number = channel.query.get("number", "")
    found = services.config.team_by_number(number)
    if found is None:
        # An unknown number here means the dialplan and the config disagree: let the
        # static fallback ring whatever the dialplan knows.
        channel.log.error("team number %s is not configured", number)
        return
    await _team_announcements(channel, services, found.id)
    is_open = open_now(services.config)
    present = await present_members(services, found.members) if is_open else []
    free = await free_members(channel, services, present)
    targets = dial_plan(found, free)
    await channel.set_variable("BEREIK_TEAM", found.id)
    await channel.set_variable("BEREIK_RING", found.ring_seconds)
    await channel.set_variable("BEREIK_DIALS", len(targets))
    for index, target in enumerate(targets, start=1):
        await channel.set_variable(f"BEREIK_DIAL_{index}", target)
    await channel.set_variable("BEREIK_DIAL", targets[0] if targets else "")
    if not targets:
        reason = ("busy" if present else "nobody_present") if is_open else "after_hours"
        await channel.set_variable("BEREIK_HOPPER_REASON", reason)
    else:
        # Only a call that will ring someone is asked to be recorded.
        await ask_quality_consent(channel, services, found.id)
    channel.log.info(
        "team %s: %d of %d members present, %d free, %s%s",
        found.id,
        len(present),
        len(free),
        len(found.members),
        found.strategy,
        "" if is_open else " (closed)",
    )
    await channel.finish()
