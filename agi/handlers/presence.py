"""Presence feature codes: a member marks themselves present or absent from their phone.

The dialplan calls ``presence?state=on|off`` from the caller's own phone; the extension
comes from the calling endpoint, never from digits the caller keys, so nobody can sign a
colleague out. Absent members are never rung on the team number.
"""

from __future__ import annotations

from agi.server import AgiChannel
from cti.ami.channels import extension_of
from cti.announcements.prompts import prompt
from cti.presence import set_presence
from cti.services import Services


async def presence(channel: AgiChannel, services: Services) -> None:
    state = channel.query.get("state", "")
    extension = extension_of(channel.env.get("channel"))
    members = {m for team in services.config.teams for m in team.members}
    if state not in ("on", "off") or extension not in members:
        text = "Deze code werkt alleen op het toestel van een teamlid."
    else:
        await set_presence(services, extension, state == "on", actor=f"phone:{extension}")
        text = (
            "U bent aangemeld en krijgt weer gesprekken voor uw team."
            if state == "on"
            else "U bent afgemeld. U krijgt geen gesprekken voor uw team tot u zich weer aanmeldt."
        )
        channel.log.info("presence %s for %s", state, extension)
    await channel.answer()
    await channel.stream_file(await prompt(services, text))
    await channel.finish()
