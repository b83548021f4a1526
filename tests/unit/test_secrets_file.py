"""The instance's secrets file (dialplan/render.py load_secrets): the processes that load
it at once all get the secrets Asterisk was given, and a damaged file is an error."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from dialplan.config import Config, ConfigError, load
from dialplan.render import load_secrets

PROCESSES = 8
ROUNDS = 25


def config(tmp_path: Path) -> Config:
    path = tmp_path / "bereik.toml"
    path.write_text(
        '[[phones]]\nextension = "2001"\nname = "KCC 1"\n'
        '[[phones]]\nextension = "2002"\nname = "KCC 2"\n'
    )
    return load(path)


def _load_many(args: tuple[Path, Path]) -> list[str]:
    """One process's repeated loads, as `bereik serve` starting and renders beside it."""
    config_path, secrets_path = args
    loaded = load(config_path)
    return [json.dumps(load_secrets(secrets_path, loaded).__dict__) for _ in range(ROUNDS)]


def test_processes_loading_the_secrets_at_once_all_get_the_same_ones(tmp_path: Path) -> None:
    made = config(tmp_path)
    secrets_path = tmp_path / "instance" / "secrets.json"
    # The first render made them (with one phone fewer: a phone added later gets its
    # password from whichever process comes first, and every other one reads that one).
    first = load_secrets(secrets_path, made.model_copy(update={"phones": made.phones[:1]}))
    context = multiprocessing.get_context("fork")
    with context.Pool(PROCESSES) as pool:
        seen = pool.map(_load_many, [(tmp_path / "bereik.toml", secrets_path)] * PROCESSES)
    values = {value for process in seen for value in process}
    assert len(values) == 1, "the processes saw different secrets"
    (only,) = values
    loaded = json.loads(only)
    assert loaded["ami"] == first.ami and loaded["agi"] == first.agi
    assert set(loaded["phones"]) == {"2001", "2002"}
    assert loaded["phones"]["2001"] == first.phones["2001"]
    assert stat.S_IMODE(secrets_path.stat().st_mode) == 0o600
    assert [p.name for p in secrets_path.parent.iterdir() if p.name.startswith(".")] == []


def test_a_damaged_secrets_file_is_an_error_and_is_left_as_it_is(tmp_path: Path) -> None:
    secrets_path = tmp_path / "secrets.json"
    secrets_path.write_text('{"ami": "abc", "agi"')
    with pytest.raises(ConfigError, match="not JSON"):
        load_secrets(secrets_path, config(tmp_path))
    assert secrets_path.read_text() == '{"ami": "abc", "agi"'
