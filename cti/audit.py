"""The audit log (BIO): one row for every view and every change of personal data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cti.store.models import AuditEntry


def audit(
    session: AsyncSession,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int = "",
    detail: str = "",
) -> None:
    """Add an audit row to the session; it is committed with the change it describes.

    `action` is a verb such as view, list, create, update, reassign, claim, close, call.
    """
    session.add(
        AuditEntry(
            actor=actor or "system",
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            detail=detail[:2000],
        )
    )


def audit_views(session: AsyncSession, actor: str, hoppers: Iterable[Any], where: str = "") -> None:
    """One "view" row per hopper shown (a caller's number is personal data), saying where."""
    for hopper in hoppers:
        audit(session, actor, "view", "hopper", hopper.id, where)
