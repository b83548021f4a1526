"""Callers' numbers: masked where the full number is not needed, reached only through
the user's own call.

`0612345678` -> `06******78`: enough to tell two callers apart in a log or a list, not
enough to call anyone. The one masking rule; the screens' role check is in cti.web.auth.
`own_call`: which call a user may name (to link its recording, see its caller's history).
"""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.store.models import Call

# A run of six or more digits (a phone number, possibly with a leading +) inside a text.
NUMBER_IN_TEXT = re.compile(r"\+?\d{6,}")


def mask_number(number: str) -> str:
    if len(number) <= 4:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 4) + number[-2:]


def mask_numbers_in(text: str) -> str:
    """Every phone number inside a free text masked (log lines, audit details)."""
    return NUMBER_IN_TEXT.sub(lambda found: mask_number(found.group(0)), text)


# A user's own calls: the one at their phone now and the one just before it (the popup
# and the hopper form outlive a call by a little: wrap-up). Older calls are nobody's.
OWN_CALLS = 2


def national(number: str) -> str:
    """A number's digits in national form (+31 and 0031 written as 0), for comparing."""
    digits = re.sub(r"[^\d+]", "", number or "")
    if digits.startswith("+31"):
        return "0" + digits[3:]
    if digits.startswith("0031"):
        return "0" + digits[4:]
    return digits


async def own_call(session: AsyncSession, extension: str, uniqueid: str) -> Call | None:
    """The call `uniqueid` if it is the current or the last call answered at `extension`;
    None otherwise (another agent's call, an older one, or no call at all).

    The one rule for what a client-supplied call id may reach: a recording linked to a
    hopper, a caller's history, a transfer (cti/hoppers/http.py, cti/calls/http.py)."""
    if not extension or not uniqueid:
        return None
    row = await session.scalar(select(Call).where(Call.uniqueid == uniqueid[:64]))
    if row is None or row.agent != extension:
        return None
    # Read along the start-time index, and only as far as OWN_CALLS newer calls.
    newer = await session.scalar(
        select(func.count()).select_from(
            select(Call.id)
            .where(Call.started_at > row.started_at, Call.agent == extension)
            .limit(OWN_CALLS)
            .subquery()
        )
    )
    # The current call has none newer; the last one has the current one.
    return row if (newer or 0) < OWN_CALLS else None
