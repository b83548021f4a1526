"""Erlang C: how many agents a waiting line needs to hold its service level.

With calls arriving at random (Poisson) at rate λ, each taking on average h seconds to
handle, the offered load is A = λ·h erlangs. With N > A agents, the probability that a
caller has to wait at all is Erlang C:

    P_wait = (A^N / N!) · N/(N−A)  /  ( Σ_{k<N} A^k/k!  +  (A^N / N!) · N/(N−A) )

and the share answered within t seconds is the service level

    SL(t) = 1 − P_wait · exp(−(N−A)·t/h).

The forecast is the smallest N whose SL(t) reaches the target. The sums are computed
with the Erlang B recursion (B(0)=1, B(k) = A·B(k−1)/(k + A·B(k−1))) and
C = N·B / (N − A·(1−B)), which never overflows for large N, unlike the factorials.
"""

from __future__ import annotations

import math


def erlang_c(agents: int, load: float) -> float:
    """Probability that a caller waits, with `agents` agents and `load` erlangs."""
    if load <= 0:
        return 0.0
    if agents <= load:
        return 1.0
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return agents * b / (agents - load * (1 - b))


def service_level(agents: int, load: float, handle_seconds: float, target_seconds: float) -> float:
    """Share of callers answered within target_seconds."""
    if load <= 0:
        return 1.0
    if agents <= load:
        return 0.0
    waiting = erlang_c(agents, load)
    return 1.0 - waiting * math.exp(-(agents - load) * target_seconds / handle_seconds)


def average_speed_of_answer(agents: int, load: float, handle_seconds: float) -> float:
    """Expected wait over all callers (ASA), in seconds; inf when the line cannot keep up."""
    if load <= 0:
        return 0.0
    if agents <= load:
        return math.inf
    return erlang_c(agents, load) * handle_seconds / (agents - load)


def agents_needed(
    calls_per_hour: float,
    handle_seconds: float,
    target_level: float,
    target_seconds: float,
    max_agents: int = 1000,
) -> int:
    """The fewest agents with service level >= target_level (0 when no calls come)."""
    if calls_per_hour <= 0 or handle_seconds <= 0:
        return 0
    if not 0 < target_level < 1:
        raise ValueError("target_level must be between 0 and 1 (exclusive)")
    load = calls_per_hour * handle_seconds / 3600
    agents = max(1, math.floor(load) + 1)
    while agents <= max_agents:
        if service_level(agents, load, handle_seconds, target_seconds) >= target_level:
            return agents
        agents += 1
    raise ValueError(f"more than {max_agents} agents needed; check the figures")
