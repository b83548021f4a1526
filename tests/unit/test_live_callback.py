"""The agent's popup knows a virtual-hold callback and since when the citizen waits."""

from __future__ import annotations

from cti.web.live import LiveCalls


def dial_begin(caller_channel: str) -> dict[str, str]:
    return {
        "Event": "DialBegin",
        "Channel": caller_channel,
        "DestChannel": "PJSIP/2001-0000000c",
        "CallerIDNum": "0633333333",
        "CallerIDName": "Terugbellen",
        "Uniqueid": "1795978677.6",
    }


def test_a_placeholder_ringing_an_agent_is_shown_as_a_callback_with_its_arrival() -> None:
    calls = LiveCalls()
    calls.handle(dial_begin("Local/1-402132134-1795978678-0633333333@bereik-vhold-line-00000000;2"))
    call = calls.calls["2001"]
    assert call.caller == "0633333333"
    assert call.callback_since == 1795978678.0


def test_an_ordinary_caller_is_no_callback() -> None:
    calls = LiveCalls()
    calls.handle(dial_begin("PJSIP/trunk-00000002"))
    assert calls.calls["2001"].callback_since is None
