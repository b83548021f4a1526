"""Nobody answered the team number: offer a callback and make the hopper.

The caller hears that the team calls back within the norm on the number they call from,
presses 1 to confirm or 2 to key another number. Silence counts as "yes, on this
number": the citizen called the team and heard the promise. A caller who hangs up during
the message still gets the hopper on their caller ID, for the same reason; an anonymous
caller who keys no number gets none (there is nobody to call back).

A caller whose own number the callback rule refuses (0900/0906/0909, abroad) hears why and
may key another; one who keys none has no number a hopper may carry, so while the exchange
is open a person takes the call instead (`_person`): a team's offer sends them to the KCC
(BEREIK_ROUTE=kcc: the dialplan's own fallback path to a person), the KCC's own offer back
into its line at their place (BEREIK_ROUTE=line, as the virtual hold does) or, when the KCC
rings every agent, to another round of ringing.

A KCC agent who consults the team (attended transfer) and hears no answer is told so
and gets their caller back on the phone; the agent makes the hopper, with a note, on
the screen (POST /api/hoppers). No automatic hopper there: the agent's own number is
not the citizen's.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import select

from agi.handlers.question import record_question
from agi.protocol import AgiCommandFailed, AgiHangup
from agi.server import AgiChannel
from cti.ami.channels import extension_of
from cti.announcements.prompts import prompt, spoken
from cti.hoppers.service import (
    KCC_TEAM,
    HopperError,
    callback_number,
    create_hopper,
    normalise_number,
    open_now,
)
from cti.services import Services
from cti.store.models import Call
from dialplan.config import Config

# What Dial's DIALSTATUS means for the hopper's reason.
REASON_BY_DIALSTATUS = {
    "NOANSWER": "no_answer",
    "BUSY": "busy",
    "CONGESTION": "busy",
    "CHANUNAVAIL": "no_answer",
}
# Where Asterisk 22 leaves the transferring channel's name on the transferred channel:
# BLINDTRANSFER (REFER, AMI BlindTransfer), ATTENDEDTRANSFER, and TRANSFERERNAME (set on
# the channel that runs the dialplan after a blind transfer). BEREIK_TRANSFER_AGENT is
# ours, set by the API before it asks Asterisk to transfer.
TRANSFER_VARIABLES = (
    "BEREIK_TRANSFER_AGENT",
    "TRANSFERERNAME",
    "BLINDTRANSFER",
    "ATTENDEDTRANSFER",
)
MAX_DIGITS = 15


def reason_for(query_reason: str, dialstatus: str) -> str:
    if query_reason in ("no_answer", "busy", "nobody_present", "after_hours"):
        return query_reason
    return REASON_BY_DIALSTATUS.get(dialstatus.upper(), "no_answer")


async def transferring_agent(channel: AgiChannel) -> str:
    """The extension of whoever transferred this call here, or "": the variables in one
    GET FULL VARIABLE (one round trip, not one per variable; a channel name holds no "|")."""
    joined = "|".join(f"${{{name}}}" for name in TRANSFER_VARIABLES)
    response = await channel.command("GET FULL VARIABLE", joined)
    values = response.data.split("|") if response.result == "1" else []
    for name, value in zip(TRANSFER_VARIABLES, values, strict=False):
        if not value:
            continue
        if value.isdigit():
            return value
        extension = extension_of(value)
        if extension:
            channel.log.info("transferred by %s (from %s=%s)", extension, name, value)
            return extension
    return ""


def digit_prompts(number: str) -> list[str]:
    """A number as one prompt per digit: eleven cached files serve every caller, where a
    whole sentence with the number in it would cost a speech synthesis per call. `say`
    plays them joined with the sentences around them, in one command."""
    return ["plus" if char == "+" else char for char in number if char.isdigit() or char == "+"]


async def say(channel: AgiChannel, services: Services, texts: list[str], escape: str) -> str:
    """Play prompts in turn as one sound (one STREAM FILE, `spoken`); a key in `escape`
    ends it early and is returned. A sound that cannot be played is logged and skipped:
    the call goes on, AgiHangup if the caller left."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            sound = await stack.enter_async_context(spoken(services, texts))
        except OSError as exc:
            # The joined file could not be written (disk full, permissions): the parts
            # still play, one command each.
            channel.log.warning("cannot join prompts (%s); playing them one by one", exc)
        else:
            return await _play(channel, sound, escape)
    for text in texts:
        key = await _play(channel, await prompt(services, text), escape)
        if key:
            return key
    return ""


async def _play(channel: AgiChannel, sound: str, escape: str) -> str:
    try:
        return await channel.stream_file(sound, escape)
    except AgiCommandFailed:
        await channel.command("CHANNEL STATUS")  # raises AgiHangup if the caller left
        channel.log.warning("could not play %s", sound)
        return ""


async def hopper(channel: AgiChannel, services: Services) -> None:
    config = services.config
    query = channel.query
    found = config.team_by_number(query.get("number", ""))
    team_id = found.id if found else KCC_TEAM
    team_name = found.name if found else "het klantcontactcentrum"
    reason = reason_for(query.get("reason", ""), query.get("dialstatus", ""))
    days = found.norm_working_days if found else 2
    env = channel.env

    own = extension_of(env.get("channel"))
    if own and own in config.kcc.agents:
        # A consultation call from a KCC agent: the agent decides, on the screen.
        await channel.stream_file(
            await prompt(
                services,
                f"{team_name} neemt niet op. U krijgt uw beller terug. "
                "Maak zo nodig een terugbelverzoek met een notitie op het scherm.",
            )
        )
        await channel.set_variable("BEREIK_ROUTE", "hangup")
        await channel.finish()
        return

    agent = await transferring_agent(channel)
    # A category is set by the agent who had the call, on the screen: a call no agent
    # transferred has none, and the hopper path spares the read.
    category = await _category(services, env.uniqueid, env.get("linkedid")) if agent else ""
    caller_id, refused = own_number(env.get("callerid"), services)
    number = caller_id
    try:
        number = await _ask_number(channel, services, team_name, days, caller_id, refused)
    except AgiHangup:
        # The caller heard (part of) the promise and hung up: keep it on their caller ID.
        channel.log.info("caller hung up during the callback offer")
        await _make(services, channel, team_id, number, reason, agent, category)
        raise
    made = await _make(services, channel, team_id, number, reason, agent, category)
    person = _person(config, found is not None, reason) if refused and not number else None
    if person is not None:
        # No number we may dial, but the question must not be lost: a person takes it.
        route, said = person
        channel.log.info("refused caller ID and no number keyed: %s", route)
        with contextlib.suppress(AgiCommandFailed):
            await say(channel, services, [said], escape="")
        await channel.set_variable("BEREIK_ROUTE", route)
        await channel.finish()
        return
    if made:
        goodbye = [f"Dank u wel. {team_name} belt u terug op", *digit_prompts(number), "Tot ziens."]
    else:
        goodbye = [NO_NUMBER]
    with contextlib.suppress(AgiHangup, AgiCommandFailed):
        await say(channel, services, goodbye, escape="")
    await channel.set_variable("BEREIK_ROUTE", "hangup")
    await channel.finish()


async def _ask_number(
    channel: AgiChannel,
    services: Services,
    team_name: str,
    days: int,
    caller_id: str,
    refused: bool,
) -> str:
    """The number to call back on: the caller ID, or one keyed after pressing 2."""
    when = "twee werkdagen" if days == 2 else f"{days} werkdagen"
    promise = (
        f"Er is op dit moment niemand van {team_name} beschikbaar. "
        f"{team_name} belt u binnen {when} terug"
    )
    return await ask_callback_number(channel, services, promise, caller_id, refused)


# Said when the caller ID is a number the callback rule refuses (paid, personal, abroad):
# the caller hears why before being asked to key another number.
NOT_CALLABLE = (
    "Naar het nummer waarmee u belt, bellen wij niet terug: "
    "geen betaalde nummers en geen buitenlandse nummers."
)

# Said to a caller whose number was refused and who keyed none, before the KCC takes over.
TO_KCC = "U wordt doorverbonden met het klantcontactcentrum."
# The same at the KCC's own offer: back into its waiting line at the caller's place, or
# (kcc.mode = "ringall") every agent rung once more.
BACK_IN_LINE = "U blijft in de wachtrij, op uw plaats."
RING_AGAIN = "Wij proberen u nog een keer door te verbinden."
# Said when there is no number a hopper may carry and no person to take the call.
NO_NUMBER = "Er is geen nummer om u terug te bellen. Belt u later nog eens. Tot ziens."


def _person(config: Config, team: bool, reason: str) -> tuple[str, str] | None:
    """Where a caller goes whose caller ID the rule refused and who keyed no number: the
    (BEREIK_ROUTE, what they hear) that still reaches a person, or None when nobody can
    take the call now (closed; at the KCC's line also nobody signed in, or the line full).

    A team's offer: the KCC. The KCC's own offer: its line again at the caller's place
    (QUEUE_PRIO stays on the channel) after the longest wait (no_answer: agents are signed
    in and there is room, since the caller just left it); with kcc.mode = "ringall" every
    agent once more (the dialplan's BEREIK_KCC_TRIED ends the call after that round)."""
    if not open_now(config):
        return None
    if team:
        return "kcc", TO_KCC
    if config.kcc.mode == "queue":
        return ("line", BACK_IN_LINE) if reason == "no_answer" else None
    return "kcc", RING_AGAIN


def own_number(callerid: str, services: Services) -> tuple[str, bool]:
    """The caller ID as a number a callback may dial, and whether the callback rule
    (cti.hoppers.service.callback_number) refused it.

    Every in-call path that offers a callback starts here (the team's offer, the virtual
    hold): a 0900 or foreign caller ID is never confirmed nor dialled. ("", False) for an
    anonymous caller: there is no number to refuse, only one to ask for."""
    number = normalise_number(callerid)
    if number in ("", "0") or callerid.lower() in ("unknown", "anonymous"):
        return "", False
    try:
        return callback_number(number, services.config.callbacks.allowed_prefixes), False
    except HopperError:
        return "", True


async def ask_callback_number(
    channel: AgiChannel,
    services: Services,
    promise: str,
    caller_id: str,
    refused: bool = False,
) -> str:
    """Say `promise` "op het nummer" and the caller ID, then 1 confirms (or silence), 2 lets
    the caller key another number. Also the virtual hold's question (agi/handlers/queue.py).
    `caller_id` has passed the callback rule (`own_number`); `refused`: the caller's own
    number was refused, which the caller is told before keying another.

    The one path that confirms a callback in a call: once there is a number, the caller
    may speak their question (agi/handlers/question.py); the hopper links it later."""
    number = await _confirmed_number(channel, services, promise, caller_id, refused)
    if number:
        await record_question(channel, services)
    return number


async def _confirmed_number(
    channel: AgiChannel, services: Services, promise: str, caller_id: str, refused: bool
) -> str:
    if caller_id:
        offer = [
            f"{promise} op het nummer",
            *digit_prompts(caller_id),
            "Toets 1 om dit te bevestigen, of toets 2 om een ander nummer in te toetsen.",
        ]
        choice = await say(channel, services, offer, escape="12")
        if not choice:
            try:
                choice = await channel.wait_for_digit(5000)
            except AgiCommandFailed:
                # result=-1: the caller hung up (CHANNEL STATUS raises AgiHangup, and the
                # hopper is made on the caller ID as promised) or the wait failed.
                await channel.command("CHANNEL STATUS")
                choice = ""
        if choice != "2":
            return caller_id
    else:
        said = f"{promise}. {NOT_CALLABLE}" if refused else f"{promise}."
        await _get_data(channel, await prompt(services, said), 100, 1)
    ask = await prompt(
        services, "Toets het nummer waarop wij u kunnen bellen, en sluit af met een hekje."
    )
    for _ in range(2):
        keyed = await _get_data(channel, ask, 10000, MAX_DIGITS)
        try:
            return callback_number(keyed, services.config.callbacks.allowed_prefixes)
        except HopperError:
            ask = await prompt(
                services,
                "Dat nummer kunnen wij niet terugbellen. Toets een Nederlands nummer, "
                "en sluit af met een hekje.",
            )
    return caller_id


async def _get_data(channel: AgiChannel, sound: str, timeout_ms: int, digits: int) -> str:
    """GET DATA; "" if the prompt could not play, AgiHangup if the caller left."""
    try:
        return await channel.get_data(sound, timeout_ms, digits)
    except AgiCommandFailed:
        # result=-1 is a hang-up or a missing file; CHANNEL STATUS tells which (it raises
        # AgiHangup when the caller is gone), and a missing file must not cost the hopper.
        await channel.command("CHANNEL STATUS")
        channel.log.warning("could not play %s", sound)
        return ""


async def _make(
    services: Services,
    channel: AgiChannel,
    team_id: str,
    number: str,
    reason: str,
    agent: str,
    category: str,
) -> bool:
    if not number:
        channel.log.warning("no number to call back; no hopper for team %s", team_id)
        return False
    try:
        made = await create_hopper(
            services,
            team_id=team_id,
            caller=number,
            reason=reason,
            agent=agent,
            category=category,
            call_uniqueid=channel.env.uniqueid,
            actor="exchange",
        )
    except HopperError as exc:
        channel.log.error("no hopper: %s", exc)
        return False
    # The call's outcome ("hopper") and the transfer metrics are the call tracker's
    # (cti.calls.listener): it finds this hopper by call_uniqueid when the call ends.
    channel.log.info(
        "hopper %s for team %s (%s, agent %s, repeat %s)",
        made.id,
        team_id,
        reason,
        agent or "-",
        made.repeat_count,
    )
    return True


async def _category(services: Services, uniqueid: str, linkedid: str) -> str:
    """The question category an agent set on this call (web screen), if any."""
    async with services.sessions() as session:
        row = await session.scalar(
            select(Call.category)
            .where(Call.uniqueid.in_([uniqueid, linkedid or uniqueid]), Call.category != "")
            .limit(1)
        )
    return row or ""
