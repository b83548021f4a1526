"""The IVR's steps: opening hours, the operator's announcements, the prompts a caller heard."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from bench.exchange import REPO, Exchange

# Working days' hours; the exchange's own clock decides the day (dialplan.clock).
WORKDAYS = """
[hours]
mon = "08:30-17:00"
tue = "08:30-17:00"
wed = "08:30-17:00"
thu = "08:30-17:00"
fri = "08:30-17:00"
"""


def closed_today(reason: str) -> str:
    """Working days' hours, with today closed all day for `reason` (any day of the week)."""
    today = datetime.now(ZoneInfo("Europe/Amsterdam")).date().isoformat()
    return WORKDAYS + f'[[hours.closed]]\ndate = {today}\nreason = "{reason}"\n'


def played(ami: object, caller_uniqueid: str, what: str) -> list[dict[str, str]]:
    return [
        e
        for e in ami.matching("UserEvent", UserEvent="BereikPlayed")  # type: ignore[attr-defined]
        if e.get("Uniqueid") == caller_uniqueid and e.get("What") == what
    ]


def announce(ex: Exchange, *args: str) -> str:
    """The operator's CLI, as a separate process, exactly as the README shows it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "bereik", "announce", *args, "--config", str(ex.config_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# The exchange's synthesized sentences spoken at twice espeak's default 175 words a minute
# ([tts] speed, a test value): for tests whose caller sits through the callback offer or
# the closed message but checks what the call led to, not the words or their length.
# Recorded or uploaded audio (an announcement's) plays as it is.
FAST_SPEECH = "\n[tts]\nspeed = 350\n"


# Longer than a FastAGI command's 10 s timeout ([server] agi_command_timeout): a prompt's
# command must last as long as its audio, or a patient caller falls out of the IVR.
ANNOUNCEMENT_SECONDS = 15


TEAM = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
ring_seconds = 5
mailbox = "vergunningen@example.org"
"""


MENU = """
[exchange]
website = "www.gemeente.nl"

[menu]
greeting = "Welkom."
prompt = "Voor vergunningen, toets 1."
timeout_seconds = 3

[[menu.options]]
key = "1"
label = "Vergunningen"
team = "vergunningen"
"""


def long_announcement(ex: Exchange, scope: str) -> None:
    """An outage message of ANNOUNCEMENT_SECONDS, uploaded as audio through the operator's CLI."""
    audio = ex.workdir / "storing.wav"
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(audio), "synth",
         str(ANNOUNCEMENT_SECONDS), "sine", "440", "vol", "0.1"],
        check=True,
    )  # fmt: skip
    announce(ex, "--audio", str(audio), "--kind", "outage", "--scope", scope)
