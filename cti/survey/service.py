"""Survey answers: stored as they are keyed, and the figures made from them.

The FastAGI handler (agi/handlers/survey.py) stores each answer the moment it is keyed, so
a caller who answers the first question and hangs up leaves that one answer; a caller who
hangs up at once leaves none (no answer is not a zero). Answers are linked to the call,
the team (``kcc`` or a team id) and the extension that answered.

Figures, per team and question, for a period: the number of answers, the average key
of a ``score`` question, the share of "yes" (key 1) of a ``yes_no`` one. Per agent only
from ``survey.min_answers_per_agent`` answers on, and only for the agent and their lead
(cti/survey/http.py decides who asks): fewer answers would let one answer be traced.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cti.calls.norms import window_starts
from cti.services import Services
from cti.store.faults import every
from cti.store.models import SurveyAnswer
from dialplan.config import KCC_ID, Config, SurveyQuestion

log = logging.getLogger("bereik.survey")

INTERVAL_SECONDS = 5.0


def entries(config: Config) -> list[str]:
    """Who a survey can be about: the KCC and every team (the bounded ``team`` label)."""
    return [KCC_ID, *(team.id for team in config.teams)]


def chosen(config: Config, team: str, draw: float | None = None) -> bool:
    """Whether this caller of `team` is asked: the entry's share of callers, at random."""
    share = config.survey.shares.get(team, 0.0)
    if team not in entries(config) or share <= 0:
        return False
    return (random.random() if draw is None else draw) < share


def answer_value(question: SurveyQuestion, key: str) -> int | None:
    """The key as an answer to `question`, or None (no key, or one out of range)."""
    if len(key) == 1 and key.isdigit() and 1 <= int(key) <= question.answers:
        return int(key)
    return None


async def record_answer(
    services: Services, call_uniqueid: str, team: str, agent: str, question: str, value: int
) -> bool:
    """Store one answer; False when this call already answered this question."""
    try:
        async with services.sessions() as session, session.begin():
            session.add(
                SurveyAnswer(
                    call_uniqueid=call_uniqueid[:64],
                    team_id=team,
                    agent=agent[:32],
                    question=question,
                    value=value,
                    at=datetime.now(UTC),
                )
            )
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True)
class Figure:
    answers: int
    average: float | None  # score questions
    yes_ratio: float | None  # yes_no questions


async def figures(
    session: AsyncSession,
    config: Config,
    since: datetime,
    until: datetime | None = None,
    by_agent: bool = False,
    team: str | None = None,
) -> dict[tuple[str, str], Figure]:
    """{(team or agent, question id): Figure} for answers in [since, until)."""
    who = SurveyAnswer.agent if by_agent else SurveyAnswer.team_id
    query = select(
        who,
        SurveyAnswer.question,
        func.count(),
        func.avg(SurveyAnswer.value),
        func.sum(case((SurveyAnswer.value == 1, 1), else_=0)),
    ).where(SurveyAnswer.at >= since)
    if until is not None:
        query = query.where(SurveyAnswer.at < until)
    if team is not None:
        query = query.where(SurveyAnswer.team_id == team)
    kinds = {q.id: q.kind for q in config.survey.questions}
    found: dict[tuple[str, str], Figure] = {}
    for name, question, count, average, yes in (
        await session.execute(query.group_by(who, SurveyAnswer.question))
    ).all():
        kind = kinds.get(question)
        if kind is None:
            continue  # a question no longer configured
        found[(name, question)] = Figure(
            answers=int(count),
            average=round(float(average), 2) if kind == "score" else None,
            yes_ratio=round(int(yes) / int(count), 3) if kind == "yes_no" else None,
        )
    return found


async def agent_figures(
    session: AsyncSession, config: Config, team: str, since: datetime, until: datetime | None
) -> dict[tuple[str, str], Figure]:
    """Per agent of `team`, only where an agent has at least min_answers_per_agent."""
    found = await figures(session, config, since, until, by_agent=True, team=team)
    least = config.survey.min_answers_per_agent
    return {key: figure for key, figure in found.items() if key[0] and figure.answers >= least}


async def refresh(services: Services, now: datetime | None = None) -> None:
    """Today's figures on /metrics, per team (and the KCC) and configured question."""
    config = services.config
    since = window_starts(now or datetime.now(UTC), config.exchange.timezone)["today"]
    async with services.reads() as session:
        found = await figures(session, config, since)
    series = services.metrics.voice
    for team in entries(config):
        for question in config.survey.questions:
            figure = found.get((team, question.id))
            labels = (team, question.id)
            series.survey_answers.labels(*labels).set(figure.answers if figure else 0)
            series.set_or_remove(series.survey_average, labels, figure.average if figure else None)
            series.set_or_remove(series.survey_yes, labels, figure.yes_ratio if figure else None)


async def run(services: Services) -> None:
    if not any(services.config.survey.shares.values()):
        return
    await every(INTERVAL_SECONDS, lambda: refresh(services), what="the survey figures", logger=log)
