"""Several `bereik serve` on one database: started together, and which holds the call tracking."""

from __future__ import annotations

from typing import Any

from bench.exchange import (
    Exchange,
    ServeProcess,
)


def start_processes(ex: Exchange, count: int) -> list[ServeProcess]:
    """`count` processes of `bereik serve` on the exchange's database, started together."""
    serves = [ex.add_serve() for _ in range(count)]
    for serve in serves:
        serve.start(wait=False)
    for serve in serves:
        serve.wait_ready()
    return serves


def tracking_lease(ex: Exchange) -> Any:
    """The call tracking lease row of the exchange's Asterisk, None before it exists."""
    rows = ex.rows("SELECT fence, holder FROM tracking_leases")
    return rows[0] if rows else None


def serve_of(holder: str, serves: list[ServeProcess]) -> ServeProcess:
    """The process a lease holder ("host:pid") names."""
    pid = int(holder.rpartition(":")[2])
    return next(s for s in serves if s.process is not None and s.process.pid == pid)
