"""Staff calling out through the trunk ([calls_out]): what deploy/asterisk/dialplan/out.conf.j2
needs, and the spoken refusals it plays.

A phone dials a leading 0 (as Dutch staff are used to) or 112. 112 always goes out. Any
other number goes out only when it starts with one of `allowed_prefixes`, or with one of
`extra_prefixes` for the phones listed there; otherwise the caller hears why (premium,
abroad, or not allowed) as early media, and the call ends with 403. Nothing is answered,
so a refused call costs nothing and leaves the trunk alone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dialplan.config import Config
from dialplan.numbers import formatted
from dialplan.private import private_dir, write_private

# Paid numbers as the refusal names them: 0900/0906/0909 (service numbers) and 084/087
# (personal numbers, paid too).
PREMIUM = ("0900", "0906", "0909", "084", "087")
REASONS = ("premium", "abroad", "other")
REFUSALS = {
    "nl": {
        "premium": "Dit is een betaalnummer. Vanaf dit toestel kunt u geen betaalnummers bellen.",
        "abroad": "Vanaf dit toestel kunt u niet naar het buitenland bellen.",
        "other": "Dit nummer kunt u vanaf dit toestel niet bellen.",
    },
    "en": {
        "premium": "This is a premium rate number. This phone may not call premium numbers.",
        "abroad": "This phone may not call abroad.",
        "other": "This phone may not call this number.",
    },
}
VOICES = {"nl": "nl", "en": "en"}
SUBDIRECTORY = "calls-out"


@dataclass(frozen=True)
class Rule:
    """A prefix as the phone dials it (national form: 0..., 00<country>...) and the phones
    that may dial it; no phones: every phone."""

    prefix: str
    phones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    caller_id: str  # as the trunk wants numbers (number_format)
    rules: tuple[Rule, ...]
    number_format: str
    country_code: str
    sounds: str  # the refusals' directory, as Asterisk sees it


def dialled(prefix: str) -> str:
    """A configured prefix as a Dutch phone dials it: "+32" is 0032, "+" is 00."""
    return "00" + prefix[1:] if prefix.startswith("+") else prefix


def plan(config: Config, sounds_dir: str) -> Plan:
    out = config.calls_out
    rules = [Rule(dialled(prefix)) for prefix in out.allowed_prefixes]
    rules += [Rule(dialled(p), tuple(phones)) for p, phones in out.extra_prefixes.items() if phones]
    number = out.caller_id or config.callbacks.caller_id or config.exchange.main_number
    return Plan(
        caller_id=formatted(number, config.trunk.number_format, config.trunk.country_code),
        rules=tuple(rules),
        number_format=config.trunk.number_format,
        country_code=config.trunk.country_code,
        sounds=f"{sounds_dir}/{SUBDIRECTORY}",
    )


def make_refusals(directory: Path, language: str) -> None:
    """The spoken refusals (out-<reason>.wav, 8 kHz mono) in `directory`, made by espeak-ng
    and sox when missing or when their text changed."""
    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if espeak is None or sox is None:
        raise RuntimeError("espeak-ng and sox make the call-out refusals (scripts/install-deps)")
    private_dir(directory)
    for reason, text in REFUSALS[language].items():
        target = directory / f"out-{reason}.wav"
        said = directory / f"out-{reason}.txt"
        if target.exists() and said.exists() and said.read_text() == text:
            continue
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            raw = Path(scratch) / "raw.wav"
            subprocess.run(
                [espeak, "-v", VOICES[language], "-w", str(raw), text],
                check=True,
                capture_output=True,
                timeout=60,
            )
            made = Path(scratch) / target.name
            subprocess.run(
                [sox, str(raw), "-r", "8000", "-c", "1", "-b", "16", str(made)],
                check=True,
                capture_output=True,
                timeout=60,
            )
            write_private(target, made.read_bytes())
        write_private(said, text)
