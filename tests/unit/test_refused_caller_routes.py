"""Where a caller goes whose caller ID the callback rule refuses (0900, abroad) and who keys
no number at a callback offer (agi.handlers.hopper._person): a person while one can take
the call, else nothing to route to. Each route with a real 0900 caller:
tests/e2e/test_premium_callback.py."""

from __future__ import annotations

import pytest

from agi.handlers import hopper
from agi.handlers.hopper import BACK_IN_LINE, RING_AGAIN, TO_KCC, _person
from dialplan.config import Config

RINGALL = Config.model_validate({})
QUEUE = Config.model_validate({"kcc": {"mode": "queue"}})


@pytest.fixture
def open_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hopper, "open_now", lambda config: True)


@pytest.mark.usefixtures("open_hours")
@pytest.mark.parametrize("config", [RINGALL, QUEUE])
def test_at_a_teams_offer_the_kcc_takes_the_call(config: Config) -> None:
    assert _person(config, team=True, reason="no_answer") == ("kcc", TO_KCC)


@pytest.mark.usefixtures("open_hours")
def test_at_the_kcc_lines_offer_after_the_longest_wait_the_caller_goes_back_in_line() -> None:
    assert _person(QUEUE, team=False, reason="no_answer") == ("line", BACK_IN_LINE)


@pytest.mark.usefixtures("open_hours")
@pytest.mark.parametrize("reason", ["nobody_present", "busy", "after_hours"])
def test_the_kcc_line_is_not_entered_again_when_nobody_is_in_it_or_it_is_full(
    reason: str,
) -> None:
    """Queue() would turn the caller away at once (joinempty, maxlen): round and round."""
    assert _person(QUEUE, team=False, reason=reason) is None


@pytest.mark.usefixtures("open_hours")
@pytest.mark.parametrize("reason", ["no_answer", "busy"])
def test_a_ringing_kcc_rings_its_agents_once_more(reason: str) -> None:
    assert _person(RINGALL, team=False, reason=reason) == ("kcc", RING_AGAIN)


@pytest.mark.parametrize("config", [RINGALL, QUEUE])
@pytest.mark.parametrize("team", [True, False])
def test_when_closed_there_is_no_person_to_route_to(
    monkeypatch: pytest.MonkeyPatch, config: Config, team: bool
) -> None:
    monkeypatch.setattr(hopper, "open_now", lambda config: False)
    assert _person(config, team=team, reason="no_answer") is None
