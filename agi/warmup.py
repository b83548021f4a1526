"""A worker that speaks every fixed IVR sentence once at start-up.

Why: a prompt is synthesized on first use, which takes a few hundred milliseconds; a key
the caller presses in that gap (between two AGI commands) is lost. Making them before
the first call keeps the menu responsive from the first caller on.
"""

from __future__ import annotations

import logging

from agi.handlers.operator import SAY
from agi.menu import all_prompts
from cti.announcements.prompts import prompt
from cti.services import Services
from cti.tts import TtsError
from dialplan.hours import OpeningHours

log = logging.getLogger("bereik.announcements")


async def run(services: Services) -> None:
    config = services.config
    texts = all_prompts(config)
    texts.append(
        OpeningHours(config.hours, config.exchange.timezone).describe(config.exchange.language)
    )
    texts.extend(text for text in SAY.values() if "{" not in text)
    # The question invitation and the survey: a key pressed while they are made is lost.
    texts.append(config.question_recording.prompt)
    # Said when the disk is full: it cannot be made then.
    texts.append(config.question_recording.no_room)
    # Asking consent to record for quality: the refusing key must not be lost either.
    if config.kcc.quality_share or any(team.quality_share for team in config.teams):
        texts += [config.quality_recording.prompt, config.quality_recording.refused]
    survey = config.survey
    if any(survey.shares.values()):
        texts += [survey.intro, *(q.text for q in survey.questions), survey.thanks]
    failed = 0
    texts = list(dict.fromkeys(texts))
    for text in texts:
        try:
            await prompt(services, text)
        except TtsError as exc:
            failed += 1
            log.error("cannot synthesize the IVR prompt %r: %s", text[:60], exc)
    log.info("IVR prompts ready: %d, failed: %d", len(texts) - failed, failed)
