"""An agent's call leg as the call tracker reports it, for the live screens' unit tests."""

from __future__ import annotations

from cti.calls.tracker import AgentLeg


def ringing(caller_channel: str, state: str = "ringing") -> AgentLeg:
    """What the call tracker reports when a DialBegin rings agent 2001 (or, with `state`,
    when that call is answered or over there)."""
    return AgentLeg(
        extension="2001",
        channel="PJSIP/2001-0000000c",
        call="1795978677.6",
        caller="0633333333",
        caller_name="Terugbellen",
        state=state,
        at=1795978700.0,
        caller_channel=caller_channel,
    )
