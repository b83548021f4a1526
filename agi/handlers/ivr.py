"""The 14070 entry: records the call, speaks to the caller and chooses its route.

What a caller hears, in order (every prompt can be cut short by pressing a key, and that
key is taken as the menu choice):

* open hours: greeting, the active announcements for everyone (outage before news),
  "we call you back before <date>" when the number has an open hopper, then the menu.
  Announcements of scope ``menu:<key>`` play after that key is chosen.
* closed hours: the announcements, why we are closed, the opening hours, and the offer
  to leave a callback request (key 1: a hopper with reason ``after_hours`` for the KCC).

The handler ends by setting BEREIK_ROUTE (``kcc``, ``team-<number>`` or ``hangup``);
the dialplan (main.conf.j2) does the rest, and takes the KCC if this handler fails.
"""

from __future__ import annotations

from sqlalchemy import select

from agi import menu
from agi.handlers.hopper import NO_NUMBER, ask_callback_number, own_number
from agi.handlers.question import record_question
from agi.protocol import AgiCommandFailed
from agi.server import AgiChannel
from cti.announcements.prompts import prompt
from cti.announcements.service import playable
from cti.hoppers.callers import open_callers
from cti.hoppers.service import HopperError, create_hopper, normalise_number
from cti.services import Services
from cti.store.models import Hopper
from dialplan import clock
from dialplan.config import MenuOption
from dialplan.hours import OpeningHours, cached_opening_hours

ROUTE_VARIABLE = "BEREIK_ROUTE"
# Two tries at a menu, then the KCC: a caller who cannot choose still reaches a person.
ATTEMPTS = 2
# Before "not to the number you call from" (agi.handlers.hopper.NOT_CALLABLE), after hours.
AFTER_HOURS_PROMISE = "Wij bellen u terug"


async def ivr(channel: AgiChannel, services: Services) -> None:
    talk = Conversation(channel, services)
    route = await _conversation(talk)
    # calls.route: where the IVR sent the call; "closed" and "info" for calls it ended itself
    # were told before those were spoken (a caller who hangs up while hearing them is not
    # counted as abandoned).
    if route and not talk.ended_as and route != talk.decided:
        await talk.decide(route)
    # The route and the result in one command: the dialplan reads both after the AGI.
    await channel.finish(**{ROUTE_VARIABLE: route})


def _caller_number(channel: AgiChannel) -> str:
    number = channel.env.get("callerid").strip()
    return "" if number.lower() in ("", "unknown", "anonymous", "restricted") else number


class Conversation:
    """One caller's way through the IVR: plays prompts and reports them to AMI."""

    def __init__(self, channel: AgiChannel, services: Services) -> None:
        self.channel = channel
        self.services = services
        self.config = services.config
        self.ended_as = ""  # "closed" or "info" when the IVR itself ends the call
        self.decided = ""  # the route last told to the call tracker

    async def decide(self, route: str) -> None:
        """Tell where the call goes (calls.route), through Asterisk to the call tracker.

        The handler does not write the calls row: the AMI listener is its one writer, and
        this decision arrives there in order with the call's other events.
        """
        self.ended_as = route if route in ("closed", "info") else ""
        self.decided = route
        await self.channel.exec("UserEvent", f"BereikIvrRoute,Route: {route}")

    async def play(self, sound: str, what: str, ident: str = "") -> str:
        """Play one file; return the key that cut it short, or ""."""
        try:
            response = await self.channel.play(sound, menu.ALL_KEYS)
        except AgiCommandFailed:
            # result=-1: the caller hung up (then the probe raises AgiHangup) or the file
            # is missing, which must not cost the caller the menu.
            await self.channel.command("CHANNEL STATUS")
            self.channel.log.warning("could not play %s (%s)", sound, what)
            return ""
        key = chr(response.result_int) if response.result_int > 0 else ""
        await self._played(what, ident, response.extra.get("endpos", "0"), key)
        return key

    async def say(self, text: str, what: str, ident: str = "") -> str:
        return await self.play(await prompt(self.services, text), what, ident)

    async def ask(self, text: str, what: str, timeout_s: int | None = None) -> str:
        """Say `text` and wait for one key; "" when none came in time."""
        sound = await prompt(self.services, text)
        timeout_ms = 1000 * (timeout_s or self.config.menu.timeout_seconds)
        try:
            key = await self.channel.get_data(sound, timeout_ms, 1)
        except AgiCommandFailed:
            await self.channel.command("CHANNEL STATUS")  # AgiHangup when the caller left
            key = ""
        await self._played(what, "", "", key)
        return key

    async def _played(self, what: str, ident: str, endpos: str, key: str) -> None:
        # A UserEvent after Asterisk answered the STREAM FILE: what it played and how far
        # (endpos, in samples), for monitoring and for the end-to-end tests.
        await self.channel.exec(
            "UserEvent",
            f"BereikPlayed,What: {what},Id: {ident},Endpos: {endpos},Key: {key}",
        )

    async def announcements(self, scope: str) -> str:
        for ident, path in await playable(self.services, scope):
            key = await self.play(path, "announcement", str(ident))
            self.services.metrics.announcements_played.labels(scope.partition(":")[0]).inc()
            if key:
                return key
        return ""


async def _conversation(talk: Conversation) -> str:
    config, channel = talk.config, talk.channel
    hours = cached_opening_hours(config.hours, config.exchange.timezone)
    closed = hours.closure_reason(clock.now())
    if closed is not None:
        return await _closed(talk, hours, closed)
    key = await talk.say(config.menu.greeting, "greeting") if config.menu.greeting else ""
    key = key or await talk.announcements("all")
    if not key:
        _, key = await _repeat_caller(talk, _caller_number(channel))
    if not config.menu.options:
        return "kcc"
    return await _menu(
        talk,
        config.menu.options,
        menu.menu_prompt(config, config.menu.options, config.menu.prompt),
        path="",
        pending=key,
    )


async def _menu(
    talk: Conversation, options: list[MenuOption], prompt_text: str, path: str, pending: str
) -> str:
    config = talk.config
    for attempt in range(ATTEMPTS):
        key = pending or await talk.ask(prompt_text, f"menu{path}")
        pending = ""
        choice = menu.choose(config, options, key) if key else None
        counted = talk.services.metrics.ivr_choices
        if choice is None or choice.kind == "invalid":
            last = attempt + 1 >= ATTEMPTS
            counted.labels("invalid" if key else "none", "kcc" if last else "retry").inc()
            if attempt + 1 < ATTEMPTS:
                # A key pressed during "that is not a valid choice" is the next try.
                which = "invalid" if key else "no_choice"
                pending = await talk.say(menu.text(config, which), which)
            continue
        counted.labels(
            f"{path}{key}",
            choice.option.team if choice.option and choice.option.team else choice.kind,
        ).inc()
        scope = f"menu:{path}{key}"
        after = await talk.announcements(scope) if choice.option is not None else ""
        if choice.kind in ("kcc", "team"):
            return choice.route
        assert choice.option is not None
        if choice.kind == "submenu":
            sub = choice.option
            return await _menu(
                talk,
                sub.submenu,
                menu.menu_prompt(config, sub.submenu, sub.prompt),
                path=f"{path}{key}.",
                pending=after,
            )
        # Channel steering: the caller heard where to go; 0 still reaches a person.
        await talk.decide("info")
        after = after or await talk.ask(choice.option.info, f"info:{path}{key}")
        if after == menu.KCC_KEY:
            await talk.decide("kcc")
            return "kcc"
        await talk.say(menu.text(config, "goodbye"), "goodbye")
        return "hangup"
    return "kcc"


async def _open_hopper(talk: Conversation, number: str) -> Hopper | None:
    if not number:
        return None
    caller = normalise_number(number)
    # Asked on every call, "yes" for few: the set of callers with an open hopper is kept
    # in memory (cti/store/cache.py); only a caller in it costs a query.
    services = talk.services
    known = await services.caches.get(services.writer, "hoppers", open_callers)
    if caller not in known.callers:
        return None
    async with services.sessions() as session:
        hopper = await session.scalar(
            select(Hopper)
            .where(Hopper.caller == caller, Hopper.status == "open")
            .order_by(Hopper.deadline)
            .limit(1)
        )
    return hopper


async def _repeat_caller(
    talk: Conversation, number: str, which: str = "repeat"
) -> tuple[bool, str]:
    """Tell a caller with an open hopper when they will be called back.

    Returns whether there was one to tell about, and the key that cut the sentence short.
    """
    hopper = await _open_hopper(talk, number)
    if hopper is None:
        return False, ""
    config = talk.config
    sentence = menu.text(
        config,
        which,
        who=menu.who_calls_back(config, hopper.team_id),
        when=menu.spoken_moment(hopper.deadline, config.exchange.timezone, menu.lang(config)),
    )
    return True, await talk.say(sentence, "repeat")


async def _closed(talk: Conversation, hours: OpeningHours, reason: str) -> str:
    """Closed: why, the opening hours and the offer of a callback request.

    The only question here is "press 1"; a key pressed during any message before it cuts
    that message short and is the answer, so a caller who knows the way need not listen.
    """
    config = talk.config
    website = config.exchange.website
    await talk.decide("closed")
    key = await talk.announcements("all")
    # The event names the kind of closure (holiday, closed_period, weekday, after_hours).
    kind = reason.partition(":")[0]
    key = key or await talk.say(menu.closed_sentence(config, reason), "closed", kind)
    number = _caller_number(talk.channel)
    told, _ = await _repeat_caller(talk, number, "repeat_closed")
    closed_calls = talk.services.metrics.ivr_closed_calls
    if told:
        closed_calls.labels("repeat").inc()
        # Already promised a callback: the promise is what they need, not a second request.
        await talk.say(menu.text(config, "goodbye"), "goodbye")
        return "hangup"
    key = key or await talk.say(hours.describe(menu.lang(config)), "hours")
    if not number:
        await talk.say(menu.text(config, "anonymous"), "anonymous")
        await talk.say(menu.text(config, "website", website=website), "website")
        return "hangup"
    key = key or await talk.ask(
        menu.text(config, "callback_offer", website=website), "callback_offer"
    )
    if key != menu.CALLBACK_KEY:
        closed_calls.labels("none").inc()
        await talk.say(menu.text(config, "goodbye"), "goodbye")
        return "hangup"
    closed_calls.labels("callback").inc()
    team_id = "kcc"
    subjects = menu.callback_subjects(config)
    if subjects:
        # Straight to the right group mailbox; anything else (0, no key) goes to the KCC.
        key = await talk.ask(menu.subject_prompt(config), "callback_subject")
        team_id = next((team for k, _, team in subjects if k == key), "kcc")
    _, refused = own_number(number, talk.services)
    if refused:
        # A paid or foreign caller ID is never called back: the caller hears why and keys
        # a Dutch number (then speaks the question, as on every offer), or hears that
        # there is no number to call; nobody is there to take the call after hours.
        number = await ask_callback_number(
            talk.channel, talk.services, AFTER_HOURS_PROMISE, "", refused=True
        )
        if not number:
            await talk.say(NO_NUMBER, "no_number")
            return "hangup"
    else:
        # The request is confirmed: the question in the caller's words, for the team.
        await record_question(talk.channel, talk.services)
    try:
        hopper = await create_hopper(
            talk.services,
            team_id=team_id,
            caller=number,
            reason="after_hours",
            call_uniqueid=talk.channel.env.uniqueid,
            actor="ivr",
        )
    except HopperError as exc:
        talk.channel.log.error("no after-hours hopper for this call: %s", exc)
        await talk.say(menu.text(config, "callback_failed"), "callback_failed")
        return "hangup"
    sentence = menu.text(
        config,
        "callback_done",
        who=menu.who_calls_back(config, hopper.team_id),
        when=menu.spoken_moment(hopper.deadline, config.exchange.timezone, menu.lang(config)),
    )
    await talk.say(sentence, "callback_done")
    return "hangup"
