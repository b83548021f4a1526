"""The 14070 menu as data, and every sentence the IVR speaks (Dutch, English available).

Pure functions only: the handler in `agi/handlers/ivr.py` does the talking, this module
decides what a key means and what is said, so both are unit-tested without a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from dialplan.config import Config, MenuOption

# Any key interrupts a prompt: a caller who knows the menu should not have to listen.
ALL_KEYS = "0123456789*#"
KCC_KEY = "0"
CALLBACK_KEY = "1"

TEXTS: dict[str, dict[str, str]] = {
    "nl": {
        "option": "Voor {label}, toets {key}.",
        "kcc_option": "Voor alle andere vragen, toets 0.",
        "invalid": "Dat is geen geldige keuze.",
        "no_choice": "U heeft geen keuze gemaakt.",
        "goodbye": "Bedankt voor uw oproep. Tot ziens.",
        "closed": "U belt buiten onze openingstijden.",
        "closed_today": "Wij zijn vandaag gesloten.",
        "closed_reason": "Wij zijn op dit moment gesloten: {reason}.",
        "callback_offer": "Wilt u teruggebeld worden, toets dan 1. "
        "U kunt ook terecht op {website}.",
        "website": "Kijk voor meer informatie op {website}.",
        "anonymous": "Uw nummer is afgeschermd. Daarom kunnen wij u niet terugbellen.",
        "callback_done": "Uw terugbelverzoek is genoteerd. {who} belt u terug vóór {when}.",
        "callback_failed": "Het is niet gelukt uw terugbelverzoek te noteren. "
        "Probeer het later opnieuw.",
        "repeat": "U heeft al een terugbelverzoek bij ons. {who} belt u terug vóór {when}. "
        "U kunt ook een keuze maken uit het menu.",
        "subject": "Waarover wilt u teruggebeld worden?",
        "repeat_closed": "U heeft al een terugbelverzoek bij ons. {who} belt u terug vóór {when}.",
        "kcc": "het klantcontactcentrum",
        "team": "het team {name}",
        "at": "om {time} uur",
    },
    "en": {
        "option": "For {label}, press {key}.",
        "kcc_option": "For all other questions, press 0.",
        "invalid": "That is not a valid choice.",
        "no_choice": "You did not make a choice.",
        "goodbye": "Thank you for calling. Goodbye.",
        "closed": "You are calling outside our opening hours.",
        "closed_today": "We are closed today.",
        "closed_reason": "We are closed at the moment: {reason}.",
        "callback_offer": "To be called back, press 1. You can also visit {website}.",
        "website": "For more information, visit {website}.",
        "anonymous": "Your number is hidden, so we cannot call you back.",
        "callback_done": "Your callback request has been noted. {who} will call you back "
        "before {when}.",
        "callback_failed": "We could not note your callback request. Please try again later.",
        "repeat": "You have already asked us to call you back. {who} will call you back "
        "before {when}. You can also choose from the menu.",
        "subject": "What would you like to be called back about?",
        "repeat_closed": "You have already asked us to call you back. {who} will call you "
        "back before {when}.",
        "kcc": "the contact centre",
        "team": "the {name} team",
        "at": "at {time}",
    },
}

_DAYS = {
    "nl": ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS = {
    "nl": (
        "januari", "februari", "maart", "april", "mei", "juni",
        "juli", "augustus", "september", "oktober", "november", "december",
    ),
    "en": (
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ),
}  # fmt: skip


def lang(config: Config) -> str:
    return "en" if config.exchange.language == "en" else "nl"


def text(config: Config, which: str, **values: str) -> str:
    return TEXTS[lang(config)][which].format(**values)


def spoken_moment(at: datetime, timezone: str, language: str = "nl") -> str:
    """A deadline as a voice says it: "dinsdag 1 december om 17.00 uur" (local time).

    The time is left out at midnight (a deadline "before Tuesday" needs no clock).
    """
    language = "en" if language == "en" else "nl"
    local = at.astimezone(ZoneInfo(timezone))
    day = f"{_DAYS[language][local.weekday()]} {local.day} {_MONTHS[language][local.month - 1]}"
    if (local.hour, local.minute) == (0, 0):
        return day
    clock = f"{local.hour}.{local.minute:02d}" if language == "nl" else f"{local:%H:%M}"
    return f"{day} {TEXTS[language]['at'].format(time=clock)}"


def who_calls_back(config: Config, team_id: str) -> str:
    """The subject of "... belt u terug", capitalised as the start of a sentence."""
    if team_id != "kcc" and any(t.id == team_id for t in config.teams):
        who = text(config, "team", name=config.team(team_id).name)
    else:
        who = text(config, "kcc")
    return who[:1].upper() + who[1:]


def menu_prompt(config: Config, options: list[MenuOption], configured: str = "") -> str:
    """What is said before a menu's keys: the configured text, or one built from labels."""
    if configured.strip():
        return configured.strip()
    parts = [text(config, "option", label=o.label, key=o.key) for o in options if o.key != "0"]
    parts.append(text(config, "kcc_option"))
    return " ".join(parts)


@dataclass(frozen=True)
class Choice:
    """What a key means in one menu."""

    kind: str  # kcc, team, info, submenu, invalid
    option: MenuOption | None = None
    route: str = ""  # for kcc and team: BEREIK_ROUTE


def choose(config: Config, options: list[MenuOption], key: str) -> Choice:
    """The meaning of `key` in `options`; 0 reaches the KCC whatever the menu says."""
    if key == KCC_KEY:
        return Choice("kcc", next((o for o in options if o.key == key), None), "kcc")
    option = next((o for o in options if o.key == key), None)
    if option is None:
        return Choice("invalid")
    if option.team:
        return Choice("team", option, f"team-{config.team(option.team).number}")
    if option.kcc:
        return Choice("kcc", option, "kcc")
    if option.submenu:
        return Choice("submenu", option)
    return Choice("info", option)


def callback_subjects(config: Config) -> list[tuple[str, str, str]]:
    """(key, label, team id) for a callback request after hours: the menu's team options,
    flattened and numbered 1-9, so the request lands in the right group mailbox at once."""
    found: list[tuple[str, str]] = []
    stack = list(reversed(config.menu.options))
    while stack:
        option = stack.pop()
        if option.team and option.team not in {team for _, team in found}:
            found.append((option.label, option.team))
        stack.extend(reversed(option.submenu))
    return [(str(n), label, team) for n, (label, team) in enumerate(found[:9], start=1)]


def subject_prompt(config: Config) -> str:
    parts = [text(config, "subject")]
    parts += [
        text(config, "option", label=label, key=key) for key, label, _ in callback_subjects(config)
    ]
    parts.append(text(config, "kcc_option"))
    return " ".join(parts)


def closed_sentence(config: Config, reason: str) -> str:
    """The first thing a caller hears in closed hours, from `OpeningHours.closure_reason`."""
    kind, _, detail = reason.partition(":")
    if kind == "closed_period" and detail.strip():
        return text(config, "closed_reason", reason=detail.strip())
    if kind in ("closed_period", "holiday"):
        return text(config, "closed_today")
    return text(config, "closed")


def all_prompts(config: Config) -> list[str]:
    """Every fixed sentence of the menu, so they can be synthesized before the first call."""
    found = [config.menu.greeting, menu_prompt(config, config.menu.options, config.menu.prompt)]
    stack = list(config.menu.options)
    while stack:
        option = stack.pop()
        if option.info:
            found.append(option.info)
        if option.submenu:
            found.append(menu_prompt(config, option.submenu, option.prompt))
            stack.extend(option.submenu)
    for name in ("invalid", "no_choice", "goodbye", "closed", "closed_today", "anonymous"):
        found.append(text(config, name))
    found.append(text(config, "callback_offer", website=config.exchange.website))
    found.append(text(config, "website", website=config.exchange.website))
    if callback_subjects(config):
        found.append(subject_prompt(config))
    return [f for f in found if f.strip()]
