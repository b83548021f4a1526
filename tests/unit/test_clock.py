"""The test clock (dialplan/clock.py): honoured only in test mode, refused otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialplan import clock

REPO = Path(__file__).resolve().parents[2]


def _now_in_child(env: dict[str, str]) -> str:
    code = "from dialplan import clock; print(clock.now().isoformat())"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_test_clock_in_test_mode_sets_the_exchanges_time() -> None:
    env = {
        **os.environ,
        clock.CLOCK_VARIABLE: "2027-04-27T10:00:00+02:00",
        clock.MODE_VARIABLE: "1",
    }
    moment = datetime.fromisoformat(_now_in_child(env))
    assert abs((moment - datetime(2027, 4, 27, 8, 0, tzinfo=UTC)).total_seconds()) < 30


def test_a_test_clock_without_test_mode_is_ignored_and_refused() -> None:
    env = {**os.environ, clock.CLOCK_VARIABLE: "2027-04-27T10:00:00+02:00"}
    env.pop(clock.MODE_VARIABLE, None)
    moment = datetime.fromisoformat(_now_in_child(env))
    assert abs((moment - datetime.now(UTC)).total_seconds()) < 30
    config = REPO / "bereik.example.toml"
    done = subprocess.run(
        [sys.executable, "-m", "bereik", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2
    assert "only honoured in test mode" in done.stderr


@pytest.mark.parametrize("value", ["next tuesday", "2027-04-27T10:00:00"])
def test_a_test_clock_that_is_not_an_aware_moment_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(clock.CLOCK_VARIABLE, value)
    monkeypatch.setenv(clock.MODE_VARIABLE, "1")
    with pytest.raises(clock.ClockError):
        clock.check_clock()
