"""Admission control's decision (agi/admission.py), on explicit clock readings."""

from __future__ import annotations

from agi.admission import Admission, Limits


def test_calls_are_admitted_while_first_prompts_come_quickly() -> None:
    admission = Admission(Limits(stall_seconds=0.5))
    for n in range(20):
        admission.admitted(n, now=float(n))
        admission.first_command(n, now=n + 0.05)
    assert admission.refusal(now=21.0) == ""


def test_calls_are_refused_once_recent_calls_waited_too_long_for_their_first_prompt() -> None:
    admission = Admission(Limits(stall_seconds=0.5))
    for n in range(10):
        admission.admitted(n, now=float(n))
        admission.first_command(n, now=n + 0.9)  # each waited 0.9 s: a backlog
    assert admission.refusal(now=11.0) == "slow"


def test_the_cap_on_calls_in_progress_refuses_first() -> None:
    admission = Admission(Limits(max_calls=2))
    admission.admitted(1, now=0.0)
    admission.admitted(2, now=0.0)
    assert admission.refusal(now=0.1) == "calls"
    admission.ended(1)
    assert admission.refusal(now=0.1) == ""


def test_a_past_burst_stops_refusing_once_no_call_has_waited_for_a_while() -> None:
    admission = Admission(Limits(stall_seconds=0.5))
    for n in range(10):
        admission.admitted(n, now=float(n))
        admission.first_command(n, now=n + 0.9)
        admission.ended(n)
    assert admission.refusal(now=10.0) == "slow"
    # Every caller since was refused, so none updated the average: it fades.
    assert admission.refusal(now=15.0) == ""
