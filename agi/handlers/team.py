"""A team number: which present members to ring, and how (all at once, or in order).

The dialplan (deploy/asterisk/dialplan/team.conf.j2) rings ``BEREIK_DIAL_1`` ..
``BEREIK_DIAL_<BEREIK_DIALS>`` one after another, each for ``BEREIK_RING`` seconds.
Ring-all is one entry naming every present member (``PJSIP/a&PJSIP/b``); linear is one
entry per member, in the configured order. Doing the loop in the dialplan keeps Asterisk
in charge of the ringing: nothing here waits on a ringing phone, and when no one answers
the dialplan goes to the hopper path with the reason it saw (no_answer or busy).
No present member at all: ``BEREIK_DIALS=0`` and the reason ``nobody_present``.
Outside opening hours (a citizen who dialled the team number directly, or a late
transfer) nobody is rung either: the reason is ``after_hours``, and the hopper's clock
starts on the next working day.
"""

from __future__ import annotations

from agi.handlers.ivr import Conversation
from agi.server import AgiChannel
from cti.announcements.service import playable
from cti.hoppers.service import opening_hours
from cti.presence import present_members
from cti.services import Services
from dialplan import clock
from dialplan.config import Team


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
    is_open = opening_hours(services.config).is_open(clock.now())
    present = await present_members(services, found.members) if is_open else []
    targets = dial_plan(found, present)
    await channel.set_variable("BEREIK_TEAM", found.id)
    await channel.set_variable("BEREIK_RING", found.ring_seconds)
    await channel.set_variable("BEREIK_DIALS", len(targets))
    for index, target in enumerate(targets, start=1):
        await channel.set_variable(f"BEREIK_DIAL_{index}", target)
    await channel.set_variable("BEREIK_DIAL", targets[0] if targets else "")
    if not targets:
        reason = "nobody_present" if is_open else "after_hours"
        await channel.set_variable("BEREIK_HOPPER_REASON", reason)
    channel.log.info(
        "team %s: %d of %d members present, %s%s",
        found.id,
        len(present),
        len(found.members),
        found.strategy,
        "" if is_open else " (closed)",
    )
    await channel.finish()
