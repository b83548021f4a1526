"""The post-call survey's settings and rules: who is asked, what counts as an answer."""

from __future__ import annotations

from pathlib import Path

from cti.survey.service import answer_value, chosen
from dialplan.config import load
from tests.support.config_files import BASE, problem, write


def test_survey_shares_name_the_kcc_or_a_configured_team(tmp_path: Path) -> None:
    message = problem(tmp_path, BASE + "[survey]\nshares = { parkeren = 1.0 }\n")
    assert "survey.shares names unknown entry parkeren" in message
    assert "between 0 and 1" in problem(tmp_path, BASE + "[survey]\nshares = { kcc = 1.5 }\n")


def test_a_yes_no_question_has_two_answers(tmp_path: Path) -> None:
    text = BASE + (
        '[[survey.questions]]\nid = "beantwoord"\ntext = "Beantwoord?"\n'
        'kind = "yes_no"\nanswers = 5\n'
    )
    assert "a yes_no question has answers = 2" in problem(tmp_path, text)


def test_the_share_of_an_entry_decides_who_is_asked(tmp_path: Path) -> None:
    config = load(write(tmp_path, BASE + "[survey]\nshares = { vergunningen = 0.25 }\n"))
    assert chosen(config, "vergunningen", draw=0.1)
    assert not chosen(config, "vergunningen", draw=0.3)
    assert not chosen(config, "kcc", draw=0.0)  # no share: off
    assert not chosen(config, "onbekend", draw=0.0)


def test_only_a_key_in_range_is_an_answer(tmp_path: Path) -> None:
    score, yes_no = load(write(tmp_path, BASE)).survey.questions
    assert [answer_value(score, key) for key in ("1", "5", "6", "0", "", "#")] == [
        1,
        5,
        None,
        None,
        None,
        None,
    ]
    assert [answer_value(yes_no, key) for key in ("1", "2", "3")] == [1, 2, None]
