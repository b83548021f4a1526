"""The instance's second-factor key: made once, whole, whatever starts at the same time."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from cti.users import second_factor


def test_processes_starting_at_once_agree_on_one_whole_key(tmp_path: Path) -> None:
    path = tmp_path / "instance" / second_factor.KEY_FILE
    start = threading.Barrier(16)
    keys: list[bytes] = []
    errors: list[BaseException] = []

    def starting() -> None:
        start.wait()
        try:
            keys.append(second_factor._load_key(path))
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=starting) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no staged file left


def test_the_one_that_comes_second_takes_the_first_ones_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / second_factor.KEY_FILE
    link = os.link
    first: list[bytes] = []

    def another_process_first(source: str, target: Path) -> None:
        # Between this process's check and its link, another one made the key.
        monkeypatch.setattr(os, "link", link)
        first.append(second_factor._load_key(path))
        link(source, target)  # raises FileExistsError, as the kernel would

    monkeypatch.setattr(os, "link", another_process_first)
    assert second_factor._load_key(path) == first[0]
    assert second_factor._load_key(path) == first[0]  # and it stays
