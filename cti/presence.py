"""Presence: whether a team member is rung on the team number.

One function writes it, for the phone's feature codes (agi/handlers/presence.py) and the
team screen (cti/callbacks/pages.py) alike, with one audit vocabulary: action "presence",
the extension as object, "present" or "absent" as detail.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select

from cti.audit import audit
from cti.services import Services
from cti.store.models import Presence


async def set_presence(services: Services, extension: str, present: bool, actor: str) -> None:
    async with services.sessions() as session, session.begin():
        row = await session.get(Presence, extension)
        if row is None:
            row = Presence(extension=extension)
            session.add(row)
        row.present = present
        row.changed_at = datetime.now(UTC)
        row.changed_by = actor
        audit(
            session,
            actor=actor,
            action="presence",
            object_type="extension",
            object_id=extension,
            detail="present" if present else "absent",
        )


async def present_members(services: Services, members: Iterable[str]) -> list[str]:
    """The members not marked absent, in configured order.

    A member with no presence row yet counts as present: a new colleague who never used
    the feature code must not be skipped silently; absent is an explicit choice.
    """
    members = list(members)
    if not members:
        return []  # a team of nobody: nothing to ask the database
    async with services.sessions() as session:
        rows = await session.execute(
            select(Presence.extension).where(
                Presence.extension.in_(members), Presence.present.is_(False)
            )
        )
        absent = set(rows.scalars())
    return [member for member in members if member not in absent]


async def is_present(services: Services, extension: str) -> bool:
    return bool(await present_members(services, [extension]))
