"""The board speaks a supervisor's language: one meaning of "waiting", and no API paths or
command names in the staff screens' texts."""

from __future__ import annotations

from panoramisk.message import Message

from cti.calls.tracker import Ended
from cti.web.i18n import TEXTS
from tests.support.ami_stream import tracker
from tests.support.screen_text import TECHNICAL


def event(name: str, **headers: str) -> Message:
    return Message({"Event": name, **headers})


def caller(uniqueid: str) -> dict[str, str]:
    return dict(
        Uniqueid=uniqueid,
        Linkedid=uniqueid,
        Channel=f"PJSIP/trunk-{uniqueid}",
        Context="from-trunk",
        Exten="14070",
        CallerIDNum="0612345678",
    )


def test_a_caller_turned_from_the_line_to_the_callback_offer_is_no_longer_waiting() -> None:
    t = tracker()
    for uniqueid in ("1.0", "2.0"):
        t.feed(event("Newchannel", **caller(uniqueid)))
        t.feed(event("UserEvent", UserEvent="BereikRoute", Team="kcc", **caller(uniqueid)))
    assert t.waiting()["kcc"] == 2
    # Nobody signed in: the line turns the first caller away at once (line.j2's overflow).
    t.feed(event("UserEvent", UserEvent="BereikQueueExit", Queue="kcc", Status="JOINEMPTY",
                 **caller("1.0")))  # fmt: skip
    assert t.waiting()["kcc"] == 1
    # A line's exit names the line: another team's exit does not end the KCC's offer.
    t.feed(event("UserEvent", UserEvent="BereikQueueExit", Queue="vergunningen",
                 **caller("2.0")))  # fmt: skip
    assert t.waiting()["kcc"] == 1


def test_a_caller_turned_away_by_the_line_still_ends_as_abandoned_at_the_kcc() -> None:
    t = tracker()
    t.feed(event("Newchannel", **caller("1.0")))
    t.feed(event("UserEvent", UserEvent="BereikRoute", Team="kcc", **caller("1.0")))
    t.feed(event("UserEvent", UserEvent="BereikQueueExit", Queue="kcc", **caller("1.0")))
    out = t.feed(event("Hangup", **caller("1.0")))
    (end,) = [e for e in out if isinstance(e, Ended)]
    assert (end.outcome, end.team) == ("abandoned", "kcc")  # the listener then sees its hopper


def test_no_screen_text_names_an_api_path_or_a_command() -> None:
    found = {
        (lang, key): text
        for lang, texts in TEXTS.items()
        for key, text in texts.items()
        if TECHNICAL.search(text)
    }
    assert found == {}
