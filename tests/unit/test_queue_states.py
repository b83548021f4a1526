"""The waiting line's configuration and the one state shown for an agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cti.ami.channels import extension_of_member
from cti.queue.service import state_of
from cti.store.models import AgentState
from tests.support.config_files import problem

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def agent(**values: object) -> AgentState:
    defaults: dict[str, object] = {"signed_in": True, "paused": False, "pause_reason": ""}
    return AgentState(extension="2001", **{**defaults, **values})


def test_states_in_order_of_what_matters_to_the_caller() -> None:
    assert state_of(None, NOW) == "signed_out"
    assert state_of(agent(signed_in=False), NOW) == "signed_out"
    assert state_of(agent(), NOW) == "available"
    assert state_of(agent(paused=True, pause_reason="lunch"), NOW) == "paused"
    # On a call or in wrap-up beats paused: the agent is busy either way.
    assert state_of(agent(paused=True, on_call_since=NOW), NOW) == "on_call"
    assert state_of(agent(wrapup_until=NOW + timedelta(seconds=5)), NOW) == "wrapup"
    assert state_of(agent(wrapup_until=NOW - timedelta(seconds=1)), NOW) == "available"


def test_a_feature_code_used_twice_is_refused(tmp_path: Path) -> None:
    assert "feature code *21 is used twice" in problem(tmp_path, '[queue]\nsign_in_code = "*21"\n')


def test_pause_reasons_must_be_usable_ids(tmp_path: Path) -> None:
    assert "ring_out" in problem(tmp_path, '[queue]\npause_reasons = { ring_out = "x" }\n')
    assert "1 to 9" in problem(tmp_path, "[queue]\npause_reasons = {}\n")


def test_a_queue_members_interface_names_its_extension() -> None:
    # app_queue's AgentConnect / AgentComplete / AgentRingNoAnswer carry Interface:
    # PJSIP/2001 (no channel sequence); a ring-out must pause that agent.
    assert extension_of_member("PJSIP/2001") == "2001"
    assert extension_of_member("PJSIP/2001-0000000a") == "2001"
    assert extension_of_member("Local/5-1@bereik-vhold-line") == ""
