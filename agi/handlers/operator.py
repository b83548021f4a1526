"""An announcement recorded by phone: the operator's feature code (operators.record_code).

From an internal phone: PIN, record after the beep (# ends), hear it back, keep it (1) or
record again (2), choose the kind and how many hours it is valid, and it is live for the
next caller of 14070. Every step is said in Dutch; the recording goes straight into the
announcements directory in the format Asterisk plays, so no conversion and no reload.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from agi import menu
from agi.protocol import AgiCommandFailed
from agi.server import AgiChannel
from cti.ami.channels import extension_of
from cti.announcements import pinlock
from cti.announcements.prompts import prompt
from cti.announcements.service import (
    AnnouncementError,
    Draft,
    audio_dir,
    audio_file,
    create,
)
from cti.health import disk_low
from cti.services import Services
from dialplan.private import restrict

PIN_TRIES = 3
RECORD_TRIES = 3
MAX_RECORD_SECONDS = 180
SILENCE_SECONDS = 5  # a pause this long ends the recording, as # does
MIN_SAMPLES = 8000 // 2  # under half a second is a slip of the finger, not a message
MAX_HOURS = 720  # 30 days; longer-lived texts belong in the web form with an end date
KINDS_BY_KEY = {"1": "outage", "2": "news", "3": "closure"}

SAY = {
    "not_set_up": "Opnemen per telefoon is niet ingesteld. Tot ziens.",
    "pin": "Toets uw pincode, gevolgd door hekje.",
    "wrong_pin": "Die pincode is onjuist.",
    "locked": "Opnemen is voor dit toestel tijdelijk geblokkeerd. Tot ziens.",
    "record": "Spreek na de toon uw bericht in. Toets hekje als u klaar bent.",
    "nothing": "Er is niets opgenomen.",
    "keep": "Toets 1 om dit bericht te bewaren, of 2 om opnieuw in te spreken.",
    "kind": "Toets 1 voor een storing, 2 voor nieuws, of 3 voor een sluiting.",
    "hours": "Toets hoeveel uur het bericht moet gelden, gevolgd door hekje. "
    "Toets alleen hekje voor de rest van vandaag.",
    "live": "Het bericht staat nu aan, tot {until}. Tot ziens.",
    "failed": "Het bericht kon niet worden opgeslagen. Probeer het opnieuw of gebruik de website.",
    "goodbye": "Tot ziens.",
    "no_room": "Er is nu geen ruimte om een bericht op te nemen. Maak de melding op de "
    "website, of probeer het later. Tot ziens.",
}


def valid_until(hours_keyed: str, now: datetime, timezone: str) -> datetime:
    """The end of validity for the keyed number of hours; none keyed: end of today."""
    if hours_keyed.isdigit() and 0 < int(hours_keyed) <= MAX_HOURS:
        return now + timedelta(hours=int(hours_keyed))
    local = now.astimezone(ZoneInfo(timezone))
    end_of_day = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=local.tzinfo)
    return end_of_day.astimezone(UTC)


async def operator(channel: AgiChannel, services: Services) -> None:
    session = Recording(channel, services)
    try:
        await session.run()
    finally:
        session.discard()
    await channel.finish()


class Recording:
    def __init__(self, channel: AgiChannel, services: Services) -> None:
        self.channel = channel
        self.services = services
        self.name = f"phone-{secrets.token_hex(6)}"
        self.kept = False

    async def say(self, which: str, **values: str) -> None:
        await self.channel.stream_file(await prompt(self.services, SAY[which].format(**values)))

    async def ask(self, which: str, digits: int, timeout_s: int = 6) -> str:
        sound = await prompt(self.services, SAY[which])
        try:
            return await self.channel.get_data(sound, timeout_s * 1000, digits)
        except AgiCommandFailed:
            await self.channel.command("CHANNEL STATUS")  # AgiHangup when they hung up
            return ""

    async def event(self, step: str, **fields: str) -> None:
        extra = "".join(f",{k}: {v}" for k, v in fields.items())
        await self.channel.exec("UserEvent", f"BereikOperator,Step: {step}{extra}")

    def discard(self) -> None:
        """A recording that was not kept leaves no file behind."""
        if not self.kept:
            audio_file(self.services, self.name).unlink(missing_ok=True)

    async def run(self) -> None:
        config = self.services.config
        pin = config.operators.pin
        extension = extension_of(self.channel.env.get("channel"))
        if not pin:
            await self.say("not_set_up")
            return
        if not extension or await pinlock.is_locked(self.services, extension):
            # Locked after repeated wrong PINs (or not an internal phone): no more tries.
            await self.event("pin_locked", Extension=extension)
            await self.say("locked")
            return
        for _ in range(PIN_TRIES):
            keyed = await self.ask("pin", 12)
            if keyed and hmac.compare_digest(keyed.encode(), pin.encode()):
                await pinlock.clear(self.services, extension)
                break
            if await pinlock.count_failure(self.services, extension):
                self.channel.log.warning("announcement by phone: extension %s locked", extension)
                await self.event("pin_locked", Extension=extension)
                await self.say("locked")
                return
            await self.say("wrong_pin")
        else:
            # Each wrong PIN is in the audit log (BIO), counted across calls.
            await self.event("pin_refused", Extension=extension)
            self.channel.log.warning("announcement by phone: wrong PIN from %s", extension)
            await self.say("goodbye")
            return
        await self.event("pin_ok", Extension=extension)
        if not await self.record():
            await self.say("goodbye")
            return
        kind = KINDS_BY_KEY.get(await self.ask("kind", 1), "outage")
        until = valid_until(await self.ask("hours", 3), datetime.now(UTC), config.exchange.timezone)
        try:
            announcement = await create(
                self.services,
                Draft(kind=kind, valid_until=until, author=f"telefoon {extension}"),
                audio=self.name,
                source="phone",
            )
        except AnnouncementError as exc:
            self.channel.log.error("announcement by phone not stored: %s", exc)
            await self.say("failed")
            return
        self.kept = True
        # Asterisk wrote it with its own umask; recordings are private like the rest.
        restrict(audio_file(self.services, self.name))
        await self.event("live", Id=str(announcement.id), Kind=kind)
        spoken = menu.spoken_moment(until, config.exchange.timezone)
        await self.say("live", until=spoken)

    async def record(self) -> bool:
        """Record until the operator keeps one; False when they gave up or hung up, or
        when the disk is nearly full (they hear so, and the old announcement stays)."""
        if disk_low(self.services):
            self.channel.log.warning("announcement by phone refused: the disk is nearly full")
            await self.say("no_room")
            return False
        audio_dir(self.services).mkdir(parents=True, exist_ok=True)
        target = self.services.asterisk_path(audio_dir(self.services) / self.name)
        for _ in range(RECORD_TRIES):
            await self.say("record")
            response = await self.channel.command(
                "RECORD FILE",
                target,
                "wav",
                "#",
                MAX_RECORD_SECONDS * 1000,
                "BEEP",
                f"s={SILENCE_SECONDS}",
                timeout=MAX_RECORD_SECONDS + 30,
            )
            samples = int(response.extra.get("endpos", "0") or 0)
            await self.event("recorded", Samples=str(samples))
            if samples < MIN_SAMPLES or not audio_file(self.services, self.name).exists():
                await self.say("nothing")
                continue
            # Hear it back; a key pressed while it plays is the answer to "keep it?".
            key = await self.channel.stream_file(target, "12")
            key = key or await self.ask("keep", 1)
            if key == "1":
                return True
        return False
