"""Fixtures for end-to-end tests: a real Asterisk (installed once), sipp, `bereik serve`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.exchange import Exchange, Phone, exchange, free_port
from dialplan import asterisk
from tests.support.users import add_user_with_cli, add_users


@pytest.fixture
def kcc(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    """The smallest exchange: 14070 and one KCC agent's phone."""
    with exchange(installation, tmp_path) as ex:
        ex.start_asterisk()
        yield ex


# The screens' exchange: a KCC agent, two teams with a member each, and one user per role.
TEAMS = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
ring_seconds = 10
mailbox = "vergunningen@gemeente.example"

[[teams]]
id = "belastingen"
name = "Belastingen"
number = "7002"
members = ["3101"]
ring_seconds = 10
mailbox = "belastingen@gemeente.example"

[categories]
"omgevingsvergunning" = "vergunningen"
"kapvergunning" = "vergunningen"
"WOZ-waarde" = "belastingen"
"afvalstoffenheffing" = "belastingen"
"""


@pytest.fixture
def web(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    phones = [
        Phone("2001", free_port(), "KCC Anna"),
        Phone("3001", free_port(), "Vergunningen Carla"),
        Phone("3101", free_port(), "Belastingen Bram"),
    ]
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAMS) as ex:
        ex.start_asterisk()
        ex.start_serve()
        add_user_with_cli(ex, "anna", "agent", extension="2001")  # as an administrator would
        asyncio.run(
            add_users(
                ex,
                [
                    ("carla", "member", "vergunningen", "3001"),
                    ("bram", "member", "belastingen", "3101"),
                    ("olga", "operator", "", ""),
                    ("sven", "supervisor", "", ""),
                    ("ad", "admin", "", ""),
                    ("lea", "lead", "vergunningen", ""),
                ],
            )
        )
        yield ex
