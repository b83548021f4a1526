"""Erlang C staffing (cti.queue.erlang): against a direct computation and a published example."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from cti.queue.erlang import agents_needed, average_speed_of_answer, erlang_c, service_level
from cti.queue.figures import expected_wait_minutes


def erlang_c_by_factorials(agents: int, load: Fraction) -> Fraction:
    """The textbook formula, term by term, in exact fractions: an independent computation."""
    top = load**agents / math.factorial(agents) * Fraction(agents) / (agents - load)
    bottom = sum(load**k / math.factorial(k) for k in range(agents)) + top
    return top / bottom


@pytest.mark.parametrize("load", ["0.5", "2.5", "10", "17.3", "48", "95.5"])
def test_erlang_c_matches_the_formula_in_exact_fractions(load: str) -> None:
    exact_load = Fraction(load)
    for agents in range(math.floor(exact_load) + 1, math.floor(exact_load) + 15):
        expected = float(erlang_c_by_factorials(agents, exact_load))
        assert erlang_c(agents, float(exact_load)) == pytest.approx(expected, rel=1e-12)


def test_too_few_agents_means_everyone_waits_and_the_line_never_keeps_up() -> None:
    assert erlang_c(10, 10.0) == 1.0
    assert service_level(9, 10.0, 180, 20) == 0.0
    assert average_speed_of_answer(10, 10.0, 180) == math.inf


def test_call_centre_helper_worked_example() -> None:
    """Call Centre Helper, "Erlang C Formula - Made Simple With an Easy Worked Example":
    100 calls in 30 minutes, 180 s handling time, target 80 % within 20 s. Traffic
    intensity 10 erlangs; with 11 agents a call waits with probability 68.21 % and the
    ASA is 122.8 s; 14 agents are needed for the target."""
    load = 200 * 180 / 3600
    assert load == 10.0
    assert round(erlang_c(11, load) * 100, 2) == 68.21
    assert round(average_speed_of_answer(11, load, 180), 1) == 122.8
    assert service_level(13, load, 180, 20) < 0.8 <= service_level(14, load, 180, 20)
    assert agents_needed(200, 180, 0.8, 20) == 14


def test_no_calls_need_no_agents_and_a_nonsense_target_is_refused() -> None:
    assert agents_needed(0, 180, 0.8, 20) == 0
    with pytest.raises(ValueError):
        agents_needed(100, 180, 1.0, 20)


def test_expected_wait_is_said_only_when_the_figures_support_it() -> None:
    assert expected_wait_minutes(3, 2, 240.0) == 6
    assert expected_wait_minutes(1, 4, 30.0) == 1
    assert expected_wait_minutes(3, 2, None) is None  # too few calls handled to know
    assert expected_wait_minutes(3, 0, 240.0) is None  # nobody working: no promise
    assert expected_wait_minutes(40, 1, 300.0) is None  # "about 200 minutes" helps nobody
