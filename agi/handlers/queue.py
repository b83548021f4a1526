"""The FastAGI handlers of the waiting line: a caller entering it, and an agent's codes.

``queue_entry`` runs in ``bereik-kcc`` (and a team line's ``bereik-team-line``) just
before ``Queue()``; ``?queue=`` names the line. It decides the overflow rules that need the
database (closed, nobody signed in, line full), records the stay from the caller's arrival
(the moment the dialplan also made the caller's ``QUEUE_PRIO`` from, passed as
``arrival``: an earlier caller is always put ahead, whatever the length of what each heard
first), plays the line's announcements (``team:kcc`` or ``team:<id>``) and, to a caller who
will wait, the expected wait when the figures support it, and (the KCC's line only) the
virtual-hold offer. The place in line is said by app_queue itself on joining and every
``position_every_seconds`` (in Bereik's voice, cti/queue/sounds.py), so the caller never
leaves the line to hear it.

``agent_code`` is the feature codes of a KCC phone: sign in, sign out, pause (with the
reason's number after the code: *331 = the first reason in the TOML), ready.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from agi.handlers.hopper import ask_callback_number, digit_prompts, own_number
from agi.handlers.ivr import Conversation
from agi.handlers.quality import ask as ask_quality_consent
from agi.server import AgiChannel
from cti.ami.channels import extension_of
from cti.announcements.prompts import prompt, spoken
from cti.announcements.service import playable
from cti.hoppers.service import HopperError, open_now
from cti.queue import service, vhold
from cti.queue.events import LINE_FULL, NOBODY_PRESENT, arrive, line_now
from cti.queue.figures import expected_wait_minutes, queue_figures
from cti.services import Services

WAIT_TEXT = {
    "nl": "De verwachte wachttijd is ongeveer {n} {unit}.",
    "en": "The expected waiting time is about {n} {unit}.",
}
MINUTE = {"nl": ("minuut", "minuten"), "en": ("minute", "minutes")}
VHOLD_OFFER = (
    "Wilt u liever teruggebeld worden zonder uw plaats in de wachtrij te verliezen? Toets 1."
)
VHOLD_PROMISE = "U wordt teruggebeld zodra u aan de beurt bent"
VHOLD_KEY = "1"
CLOSED = "CLOSING"
# Why a caller was not let into the line (QUEUESTATUS-like) -> the hopper's reason.
HOPPER_REASON = {CLOSED: "after_hours", NOBODY_PRESENT: "nobody_present", LINE_FULL: "busy"}


async def queue_entry(channel: AgiChannel, services: Services) -> None:
    config = services.config
    uniqueid = channel.env.uniqueid
    line = service.line_named(config, channel.query.get("queue", service.KCC_QUEUE))
    arrival = _arrival(channel.query.get("arrival", ""))
    arrived = datetime.fromtimestamp(arrival, UTC)
    if not open_now(config):
        refused = CLOSED
        position, views = 0, []
    else:
        # The agents' states, the rules that need the database, the place in line and the
        # stay's row: one job of the call path's writer (cti/queue/events.py).
        entry = await arrive(services, line, uniqueid, channel.env.get("callerid"), arrived)
        refused, position, views = entry.refused, entry.position, entry.views
    if refused:
        status, reason = refused, HOPPER_REASON[refused]
        channel.log.info("queue %s: not entered (%s)", line.name, status)
        await channel.set_variable("BEREIK_QUEUE_SKIP", status)
        await channel.set_variable("BEREIK_HOPPER_REASON", reason)
        await channel.finish()
        return
    talk = Conversation(channel, services)
    if await playable(services, f"team:{line.name}"):
        await talk.announcements(f"team:{line.name}")
        # Seconds of messages later the line and the agents have moved on: asked again.
        # (Without them, the answers above are a few milliseconds old.)
        position, views = await line_now(services, line, arrived)
    free = sum(1 for view in views if view.state == "available")
    working = sum(1 for view in views if view.state in ("available", "on_call", "wrapup"))
    if position > free:
        language = config.exchange.language
        async with services.sessions() as session:
            figures = await queue_figures(
                session,
                line.name,
                datetime.now(UTC),
                config.exchange.timezone,
                config.queue,
            )
        minutes = expected_wait_minutes(position, working, figures.handle_seconds)
        if minutes is not None:
            unit = MINUTE[language][0 if minutes == 1 else 1]
            await talk.play(
                await prompt(services, WAIT_TEXT[language].format(n=minutes, unit=unit)),
                "queue_wait",
                str(minutes),
            )
        if config.queue.virtual_hold and not line.team:
            key = await talk.play(await prompt(services, VHOLD_OFFER), "queue_vhold_offer")
            if key == VHOLD_KEY:
                # Pressed before joining the line: the same path as a key in the line.
                await channel.set_variable("BEREIK_VHOLD_KEY", VHOLD_KEY)
                await channel.finish()
                return
    await ask_quality_consent(channel, services, line.name)
    await channel.finish()


def _arrival(given: str) -> float:
    """The arrival the dialplan stamped (epoch seconds, to the hundredth), or now."""
    try:
        moment = float(given)
    except ValueError:
        return time.time()
    # A stamp from another clock (minutes off) would misplace the caller; now is closer.
    return moment if abs(time.time() - moment) < 60 else time.time()


async def virtual_hold(channel: AgiChannel, services: Services) -> None:
    """The caller pressed 1 while waiting: confirm the number, keep the place, hang up.

    Sets BEREIK_ROUTE=hangup when the callback is promised, and BEREIK_ROUTE=back when there
    is no number to call (the caller goes back into the line at the same place: the
    channel still has its QUEUE_PRIO).
    """
    # The callback rule first: a paid or foreign caller ID is told why and asked for
    # another number; with none, the caller keeps waiting in their place.
    caller_id, refused = own_number(channel.env.get("callerid"), services)
    # Read before the question: a caller who hangs up after speaking it keeps the callback.
    priority = int(await channel.get_variable("QUEUE_PRIO") or 0)
    number = await ask_callback_number(channel, services, VHOLD_PROMISE, caller_id, refused)
    if not number or not await _requested(channel, services, number, priority):
        await channel.set_variable("BEREIK_ROUTE", "back")
        await channel.finish()
        return
    channel.log.info("virtual hold: called back on %s when it is their turn", number[-4:])
    goodbye = [
        "Dank u wel. U behoudt uw plaats en wordt teruggebeld op",
        *digit_prompts(number),
        "Tot ziens.",
    ]
    async with spoken(services, goodbye) as sound:
        await channel.stream_file(sound)
    await channel.set_variable("BEREIK_ROUTE", "hangup")
    await channel.finish()


async def _requested(channel: AgiChannel, services: Services, number: str, priority: int) -> bool:
    """The virtual hold recorded; False (the caller goes back in line) if the rule refused."""
    try:
        await vhold.request(services, channel.env.uniqueid, number, priority, datetime.now(UTC))
    except HopperError as exc:
        channel.log.warning("virtual hold refused: %s", exc)
        return False
    return True


AGENT_TEXT = {
    "sign_in": "U bent aangemeld bij de wachtrij.",
    "sign_out": "U bent afgemeld bij de wachtrij.",
    "pause": "U heeft pauze: {reason}.",
    "ready": "U bent weer beschikbaar.",
    "refused": "Dat lukt niet: {why}",
}


async def agent_code(channel: AgiChannel, services: Services) -> None:
    """?action=sign_in|sign_out|pause|ready[&reason=<n>] from the agent's own phone."""
    query = channel.query
    action = query.get("action", "")
    extension = extension_of(channel.env.get("channel"))
    reason = ""
    if action == "pause" and query.get("reason", ""):
        reasons = list(services.config.queue.pause_reasons)
        index = query.get("reason", "")
        reason = (
            reasons[int(index) - 1]
            if index.isdigit() and 0 < int(index) <= len(reasons)
            else f"#{index}"
        )
    try:
        await service.change_state(services, extension, action, f"phone:{extension}", reason)
        label = service.pause_reasons(services).get(reason, reason) if action == "pause" else ""
        if action == "pause" and not reason:
            label = next(iter(services.config.queue.pause_reasons.values()))
        text = AGENT_TEXT[action].format(reason=label)
    except service.QueueError as exc:
        channel.log.info("agent code %s from %s refused: %s", action, extension, exc)
        text = AGENT_TEXT["refused"].format(why=str(exc))
    await channel.answer()
    await channel.stream_file(await prompt(services, text))
    await channel.finish()
