"""The audit log (BIO): one row for every view and every change of personal data."""

from __future__ import annotations

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
