"""The agent's popup knows a virtual-hold callback and since when the citizen waits."""

from __future__ import annotations

from cti.calls.live import LiveCalls
from tests.support.agent_legs import ringing


def test_a_placeholder_ringing_an_agent_is_shown_as_a_callback_with_its_arrival() -> None:
    calls = LiveCalls()
    calls.apply(ringing("Local/1-402132134-1795978678-0633333333@bereik-vhold-line-00000000;2"))
    call = calls.calls["2001"]
    assert call.caller == "0633333333"
    assert call.callback_since == 1795978678.0


def test_an_ordinary_caller_is_no_callback() -> None:
    calls = LiveCalls()
    calls.apply(ringing("PJSIP/trunk-00000002"))
    assert calls.calls["2001"].callback_since is None
