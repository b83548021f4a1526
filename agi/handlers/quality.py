"""Asking a caller's consent to record the call for quality, just before it is put through.

Called by the team handler (a team's ring group), the waiting line's entry handler (the KCC's
or a team's line) and, for the KCC ringing every agent, by the dialplan itself
(``/quality?team=kcc``, kcc.conf.j2). A share of callers (``quality_share``) hears
``quality_recording.prompt``; whoever presses ``refuse_key`` during it or within
``answer_seconds`` after it is not recorded (and hears ``refused``). Otherwise MixMonitor
records the caller's channel while it is bridged (option ``b``), so the file holds the
conversation only. A caller is asked once per call: a transfer to a team does not ask again.
"""

from __future__ import annotations

import contextlib

from agi.protocol import AgiCommandFailed
from agi.server import AgiChannel
from cti.announcements.prompts import prompt
from cti.health import disk_low
from cti.services import Services
from cti.tts import TtsError
from cti.voice import quality

# Set on the caller's channel (inherited by nothing): "asked" once the question was put.
ASKED = "BEREIK_QUALITY_ASKED"


async def ask(channel: AgiChannel, services: Services, team: str) -> None:
    """Choose, ask and (with consent) start the recording. A hang-up propagates (AgiHangup)
    as in any handler; anything else leaves the call unrecorded and goes on."""
    if not quality.chosen(services, team) or disk_low(services):
        return
    if await channel.get_variable(ASKED):
        return
    await channel.set_variable(ASKED, "1")
    settings = services.config.quality_recording
    await channel.answer()  # a team number dialled straight in is not answered yet
    try:
        key = await channel.get_data(
            await prompt(services, settings.prompt), settings.answer_seconds * 1000, 1
        )
    except TtsError:
        channel.log.warning("quality recording not asked: the prompt could not be made")
        return
    except AgiCommandFailed:
        await channel.command("CHANNEL STATUS")  # AgiHangup when the caller left
        return
    if key == settings.refuse_key:
        channel.log.info("quality recording refused by the caller (%s)", team)
        services.metrics.quality_recording(team, "refused")
        with contextlib.suppress(AgiCommandFailed, TtsError):
            await channel.stream_file(await prompt(services, settings.refused), "")
        return
    path = await quality.prepare(services, channel.env.uniqueid, team)
    try:
        started = await channel.exec("MixMonitor", f"{services.asterisk_path(path)},b")
    except AgiCommandFailed:
        started = None
    if started is None or started.result_int < 0:  # -2: no such application loaded
        channel.log.warning("quality recording could not start")
        return
    services.metrics.quality_recording(team, "recorded")
    channel.log.info("quality recording of a %s call", team)


async def quality_handler(channel: AgiChannel, services: Services) -> None:
    """``/quality?team=kcc``: the KCC ringing every agent asks here (the dialplan has no
    other handler between the menu and its Dial)."""
    await ask(channel, services, channel.query.get("team", ""))
    await channel.finish()
