"""The 14070 menu: what each key means, what is said, and when the IVR is closed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agi import menu
from agi.handlers.operator import valid_until
from dialplan.config import Config, ConfigError, load
from dialplan.hours import OpeningHours

AMS = ZoneInfo("Europe/Amsterdam")

TOML = """
[exchange]
website = "www.rijswijk.nl"

[[phones]]
extension = "3001"

[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
mailbox = "v@example.org"

[[teams]]
id = "parkeren"
name = "Parkeren"
number = "7003"
mailbox = "p@example.org"

[menu]
greeting = "Welkom."

[[menu.options]]
key = "1"
label = "vergunningen"
team = "vergunningen"

[[menu.options]]
key = "2"
label = "een melding openbare ruimte"
info = "Gebruik de MOR app."

[[menu.options]]
key = "3"
label = "overige vragen"
prompt = "Voor parkeren, toets 1."

[[menu.options.submenu]]
key = "1"
label = "parkeren"
team = "parkeren"

[[menu.options]]
key = "0"
label = "de KCC"
info = "Dit zou nooit gezegd moeten worden."

[hours]
holidays_closed = ["Liberation Day"]
[[hours.closed]]
date = 2026-12-03
start = 12:00:00
reason = "training"
[[hours.closed]]
date = 2026-12-07
reason = "verhuizing"
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "bereik.toml"
    path.write_text(TOML)
    return load(path)


def test_each_key_has_its_destination(config: Config) -> None:
    options = config.menu.options
    assert menu.choose(config, options, "1") == menu.Choice("team", options[0], "team-7001")
    assert menu.choose(config, options, "2").kind == "info"
    sub = menu.choose(config, options, "3")
    assert sub.kind == "submenu" and sub.option is not None
    assert menu.choose(config, sub.option.submenu, "1").route == "team-7003"
    assert menu.choose(config, options, "7") == menu.Choice("invalid")
    assert menu.choose(config, options, "#").kind == "invalid"


def test_zero_always_reaches_the_kcc_even_in_a_submenu(config: Config) -> None:
    assert menu.choose(config, config.menu.options, "0").route == "kcc"
    submenu = config.menu.options[2].submenu
    assert menu.choose(config, submenu, "0").route == "kcc"


def test_menu_prompt_built_from_labels_when_none_configured(config: Config) -> None:
    said = menu.menu_prompt(config, config.menu.options)
    assert said.startswith("Voor vergunningen, toets 1. Voor een melding openbare ruimte, toets 2.")
    assert said.endswith("Voor alle andere vragen, toets 0.")
    assert "KCC, toets 0" not in said  # key 0 is said once, as "all other questions"
    assert menu.menu_prompt(config, [], "Kies maar.") == "Kies maar."


def test_an_option_with_two_destinations_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[menu.options]]\nkey = "1"\nlabel = "x"\nkcc = true\ninfo = "ook dit"\n')
    with pytest.raises(ConfigError, match=r"menu\.options\.0: give exactly one of"):
        load(path)


def test_an_option_naming_an_unknown_team_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[menu.options]]\nkey = "1"\nlabel = "x"\nteam = "belastingen"\n')
    with pytest.raises(ConfigError, match="unknown team belastingen"):
        load(path)


@pytest.mark.parametrize(
    ("moment", "spoken"),
    [
        # Winter time: 16:00 UTC is 17.00 uur in Rijswijk.
        (datetime(2026, 12, 1, 16, 0, tzinfo=UTC), "dinsdag 1 december om 17.00 uur"),
        # Summer time: 15:00 UTC is 17.00 uur.
        (datetime(2026, 6, 2, 15, 0, tzinfo=UTC), "dinsdag 2 juni om 17.00 uur"),
        # The day after the clocks went back.
        (datetime(2026, 10, 26, 7, 30, tzinfo=UTC), "maandag 26 oktober om 8.30 uur"),
        # Midnight: no clock time.
        (datetime(2027, 1, 4, 23, 0, tzinfo=UTC), "dinsdag 5 januari"),
    ],
)
def test_deadline_spoken_in_dutch(moment: datetime, spoken: str) -> None:
    assert menu.spoken_moment(moment, "Europe/Amsterdam") == spoken


def test_deadline_spoken_in_english() -> None:
    at = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    assert menu.spoken_moment(at, "Europe/Amsterdam", "en") == "Tuesday 1 December at 17:00"


def test_repeat_sentence_names_the_team(config: Config) -> None:
    when = menu.spoken_moment(datetime(2026, 12, 1, 16, 0, tzinfo=UTC), "Europe/Amsterdam")
    said = menu.text(config, "repeat", who=menu.who_calls_back(config, "vergunningen"), when=when)
    assert said.startswith("U heeft al een terugbelverzoek bij ons. Het team Vergunningen belt")
    assert "vóór dinsdag 1 december om 17.00 uur" in said
    assert menu.who_calls_back(config, "kcc") == "Het klantcontactcentrum"


def _closed(config: Config, local: datetime) -> str | None:
    return OpeningHours(config.hours, config.exchange.timezone).closure_reason(local)


@pytest.mark.parametrize(
    ("local", "reason"),
    [
        (datetime(2026, 4, 27, 10, 0, tzinfo=AMS), "holiday:King's Day"),
        (datetime(2026, 4, 6, 10, 0, tzinfo=AMS), "holiday:Easter Monday"),
        (datetime(2026, 12, 25, 10, 0, tzinfo=AMS), "holiday:Christmas Day"),
        (datetime(2026, 12, 26, 10, 0, tzinfo=AMS), "holiday:Second Day of Christmas"),
        # Not a public holiday in the package in 2026, but this municipality closes.
        (datetime(2026, 5, 5, 10, 0, tzinfo=AMS), "holiday:Liberation Day"),
        (datetime(2026, 12, 7, 10, 0, tzinfo=AMS), "closed_period:verhuizing"),
        (datetime(2026, 12, 3, 13, 0, tzinfo=AMS), "closed_period:training"),
        (datetime(2026, 12, 3, 11, 59, tzinfo=AMS), None),
        (datetime(2026, 12, 4, 17, 0, tzinfo=AMS), "after_hours"),
        (datetime(2026, 12, 5, 10, 0, tzinfo=AMS), "weekday"),
    ],
)
def test_when_the_ivr_takes_the_closed_path(
    config: Config, local: datetime, reason: str | None
) -> None:
    assert _closed(config, local) == reason


@pytest.mark.parametrize("day", [date(2026, 3, 30), date(2026, 10, 26)])
def test_opening_time_holds_across_dst_changes(config: Config, day: date) -> None:
    # The Monday after each change: 08:30 local is 06:30 UTC in summer, 07:30 in winter.
    opens_utc = datetime(day.year, day.month, day.day, 8, 30, tzinfo=AMS).astimezone(UTC)
    assert opens_utc.hour == (6 if day.month == 3 else 7)
    assert _closed(config, opens_utc) is None
    assert _closed(config, opens_utc.replace(minute=29)) == "after_hours"


def test_closed_sentences(config: Config) -> None:
    assert menu.closed_sentence(config, "after_hours") == "U belt buiten onze openingstijden."
    assert menu.closed_sentence(config, "holiday:King's Day") == "Wij zijn vandaag gesloten."
    assert (
        menu.closed_sentence(config, "closed_period:training")
        == "Wij zijn op dit moment gesloten: training."
    )


def test_every_fixed_prompt_is_known_for_the_warm_up(config: Config) -> None:
    prompts = menu.all_prompts(config)
    assert "Welkom." in prompts and "Gebruik de MOR app." in prompts
    assert "Voor parkeren, toets 1." in prompts
    assert (
        "Wilt u teruggebeld worden, toets dan 1. U kunt ook terecht op www.rijswijk.nl." in prompts
    )


def test_phone_recording_validity() -> None:
    now = datetime(2026, 12, 1, 9, 15, tzinfo=UTC)
    assert valid_until("8", now, "Europe/Amsterdam") == datetime(2026, 12, 1, 17, 15, tzinfo=UTC)
    # Nothing keyed (or nonsense): to the end of the local day, 23:00 UTC in winter.
    assert valid_until("", now, "Europe/Amsterdam") == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    assert valid_until("0", now, "Europe/Amsterdam") == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    assert valid_until("9999", now, "Europe/Amsterdam") == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    assert valid_until("", summer, "Europe/Amsterdam") == datetime(2026, 7, 1, 22, 0, tzinfo=UTC)


def test_callback_subjects_after_hours_are_the_team_options_numbered(config: Config) -> None:
    assert menu.callback_subjects(config) == [
        ("1", "vergunningen", "vergunningen"),
        ("2", "parkeren", "parkeren"),  # from the submenu
    ]
    assert menu.subject_prompt(config) == (
        "Waarover wilt u teruggebeld worden? Voor vergunningen, toets 1. "
        "Voor parkeren, toets 2. Voor alle andere vragen, toets 0."
    )
