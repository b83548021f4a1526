"""One "are we open" for every route decision, on the exchange's clock."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cti.hoppers.service import open_now
from dialplan import clock
from dialplan.config import Config

AMS = ZoneInfo("Europe/Amsterdam")
ROOT = Path(__file__).resolve().parents[2]


def test_open_now_follows_the_exchange_clock_not_the_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = Config()  # Monday to Friday 08:30-17:00, Dutch holidays closed
    # King's Day 2027 is a Tuesday: a test clock on it closes every path.
    monkeypatch.setattr(clock, "now", lambda: datetime(2027, 4, 27, 10, 0, tzinfo=AMS))
    assert not open_now(config)
    monkeypatch.setattr(clock, "now", lambda: datetime(2027, 4, 28, 10, 0, tzinfo=AMS))
    assert open_now(config)
    assert not open_now(config, datetime(2027, 4, 28, 18, 0, tzinfo=AMS))


def test_no_route_decision_reads_the_hours_or_the_wall_clock_itself() -> None:
    """The IVR, a team number, a waiting line and its closing-time worker all ask
    open_now (or, for the IVR's spoken reason, the hours on clock.now())."""
    sources = [*ROOT.glob("agi/handlers/*.py"), *ROOT.glob("cti/queue/*.py")]
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sources
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.is_open\(|closure_reason\((?!clock\.now\(\))", line)
    ]
    assert offenders == []
