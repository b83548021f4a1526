"""A caller's earlier contacts, newest first: what the agent's popup shows of a number
(cti/calls/http.py `caller_history`)."""

from __future__ import annotations

from sqlalchemy import Select, select

from cti.store.models import Call


def earlier_contacts(number: str, current: str, limit: int = 10) -> Select[Call]:
    """The number's latest `limit` calls other than `current`. Read through the index on
    (caller, started_at), migration 0016: a number that never called before would
    otherwise read every call of the retention period on each answered call."""
    return (
        select(Call)
        .where(Call.caller == number, Call.uniqueid != current)
        .order_by(Call.started_at.desc())
        .limit(limit)
    )
