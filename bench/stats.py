"""Percentiles from raw samples and from Prometheus histogram buckets."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


Buckets = dict[float, float]  # upper bound (le) -> cumulative count

_BUCKET = re.compile(r'^(\w+)_bucket\{(?:[^}]*,)?le="([^"]+)"(?:,[^}]*)?\}\s+(\S+)$')


def scrape_histogram(text: str, name: str) -> Buckets:
    """The cumulative buckets of one unlabelled histogram in a /metrics page."""
    buckets: Buckets = {}
    for line in text.splitlines():
        match = _BUCKET.match(line)
        if match and match.group(1) == name:
            bound = math.inf if match.group(2) == "+Inf" else float(match.group(2))
            buckets[bound] = buckets.get(bound, 0.0) + float(match.group(3))
    return buckets


def diff(after: Buckets, before: Buckets) -> Buckets:
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def histogram_quantile(buckets: Buckets, q: float) -> float | None:
    """As PromQL's histogram_quantile: linear within the bucket the rank falls in."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower
