"""The post-call survey: the agent or team member hung up first, the caller is still there.

The dialplan comes here after Dial's ``g`` (a team, the KCC ringing all) or Queue's ``c``
(the KCC's line) option kept the caller on the line (deploy/asterisk/dialplan/
survey.conf.j2). The agent has hung up, so they neither hear nor influence the answer.
A share of callers per entry is asked (``survey.shares``); each answer is stored when it is
keyed. A key during the introduction is the first answer (any key cuts a prompt short,
as in the menu); no key in time, or a key out of range, is no answer to that question.
"""

from __future__ import annotations

import re

from agi.protocol import AgiCommandFailed
from agi.server import AgiChannel
from cti.announcements.prompts import prompt
from cti.services import Services
from cti.survey import service

DIGITS = "123456789"
EXTENSION = re.compile(r"[0-9]{2,8}")


async def survey(channel: AgiChannel, services: Services) -> None:
    config = services.config
    team = channel.query.get("team", "")
    agent = channel.query.get("agent", "")
    agent = agent if EXTENSION.fullmatch(agent) else ""
    if not service.chosen(config, team):
        await channel.finish()
        return
    services.metrics.survey_asked(team)
    settings = config.survey
    uniqueid = channel.env.uniqueid
    pending = await _play(channel, await prompt(services, settings.intro))
    for question in settings.questions:
        key = pending
        pending = ""
        if not key:
            try:
                key = await channel.get_data(
                    await prompt(services, question.text), settings.answer_seconds * 1000, 1
                )
            except AgiCommandFailed:
                await channel.command("CHANNEL STATUS")  # AgiHangup: no more answers
                key = ""
        value = service.answer_value(question, key)
        if value is not None:
            await service.record_answer(services, uniqueid, team, agent, question.id, value)
            channel.log.info("survey %s: %s answered", team, question.id)
    await _play(channel, await prompt(services, settings.thanks))
    await channel.finish()


async def _play(channel: AgiChannel, sound: str) -> str:
    try:
        return await channel.stream_file(sound, DIGITS)
    except AgiCommandFailed:
        await channel.command("CHANNEL STATUS")  # raises AgiHangup when the caller left
        return ""
