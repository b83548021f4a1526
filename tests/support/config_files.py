"""A bereik.toml written to a temporary directory, and the one-line error a bad one gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialplan.config import ConfigError, load

BASE = """
[[phones]]
extension = "3001"
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
mailbox = "vergunningen@example.org"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bereik.toml"
    path.write_text(text)
    return path


def problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "bereik.toml") + ": ")
    return message
