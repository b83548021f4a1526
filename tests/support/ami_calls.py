"""AMI event sequences of a call as Asterisk 22 sends them, fed to a call tracker: a 14070
call answered by a KCC agent, then blind-transferred to a team (the call tracker's and the
journey's unit tests)."""

from __future__ import annotations

from typing import Any

from panoramisk.message import Message

from cti.calls.tracker import CallTracker, Effect


def event(name: str, **headers: str) -> Message:
    return Message({"Event": name, **headers})


def channel(
    uniqueid: str, linkedid: str, name: str, context: str, exten: str, **extra: str
) -> dict[str, Any]:
    return dict(
        Uniqueid=uniqueid,
        Linkedid=linkedid,
        Channel=name,
        Context=context,
        Exten=exten,
        CallerIDNum="0612345678",
        **extra,
    )


def kcc_answered(t: CallTracker) -> list[Effect]:
    """A 14070 call answered by KCC agent 2001 (uniqueids 1.0 caller, 1.1 agent)."""
    caller = channel("1.0", "1.0", "PJSIP/trunk-1", "from-trunk", "14070", Timestamp="100")
    out = t.feed(event("Newchannel", **caller))
    kcc = {**caller, "Context": "bereik-kcc", "Exten": "s"}
    out += t.feed(event("UserEvent", UserEvent="BereikRoute", Team="kcc", **kcc))
    agent = channel("1.1", "1.0", "PJSIP/2001-1", "from-internal", "s", Timestamp="101")
    out += t.feed(event("Newchannel", **agent))
    dial = {**kcc, "DestUniqueid": "1.1", "DestChannel": "PJSIP/2001-1"}
    out += t.feed(event("DialBegin", **{**dial, "Timestamp": "101"}))
    out += t.feed(event("DialEnd", DialStatus="ANSWER", **{**dial, "Timestamp": "104"}))
    return out


def blind_transfer_to_team(t: CallTracker, answer: bool) -> list[Effect]:
    out = t.feed(
        event(
            "BlindTransfer",
            Result="Success",
            TransfererUniqueid="1.1",
            TransfereeUniqueid="1.0",
            Extension="7101",
            Context="from-internal",
            Timestamp="110",
        )
    )
    out += t.feed(event("Hangup", **channel("1.1", "1.0", "PJSIP/2001-1", "from-internal", "")))
    member = channel("1.2", "1.0", "PJSIP/2101-2", "from-internal", "s", Timestamp="111")
    out += t.feed(event("Newchannel", **member))
    team = channel("1.0", "1.0", "PJSIP/trunk-1", "bereik-team", "7101")
    dial = {**team, "DestUniqueid": "1.2", "DestChannel": "PJSIP/2101-2"}
    out += t.feed(event("DialBegin", **{**dial, "Timestamp": "111"}))
    status = "ANSWER" if answer else "NOANSWER"
    out += t.feed(event("DialEnd", DialStatus=status, **{**dial, "Timestamp": "113"}))
    out += t.feed(event("Hangup", **member))
    out += t.feed(event("CEL", EventName="LINKEDID_END", LinkedID="1.0", Timestamp="120"))
    return out
