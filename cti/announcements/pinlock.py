"""The recording PIN's lockout: wrong PINs counted per extension across calls (BIO).

Three tries per call are not enough on their own: a caller could hang up and dial *77
again forever. Each wrong PIN adds one to the extension's row in `pin_locks` with one
atomic UPDATE (several processes count together); the MAX_FAILURES-th locks the
extension for LOCKOUT. A right PIN clears the count. A lock is audited, counted on
/metrics (bereik_recording_pin_lockouts_total, alert BereikRecordingPinLocked) and
mailed to the KCC supervisor's mailbox, so operators learn someone is guessing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cti.audit import audit
from cti.services import Services
from cti.store.models import OutboxMail, PinLock

MAX_FAILURES = 5
LOCKOUT = timedelta(hours=1)


async def is_locked(services: Services, extension: str, now: datetime | None = None) -> bool:
    now = now or datetime.now(UTC)
    async with services.sessions() as session:
        row = await session.get(PinLock, extension)
    return row is not None and row.locked_until is not None and row.locked_until > now


async def count_failure(services: Services, extension: str, now: datetime | None = None) -> bool:
    """Count one wrong PIN from `extension`; True if this one locked it."""
    now = now or datetime.now(UTC)
    async with services.sessions() as session:
        failures = await _increment(session, extension, now)
        if failures is None:
            session.add(PinLock(extension=extension, failures=1, last_failure_at=now))
            try:
                await session.commit()
                failures = 1
            except IntegrityError:  # another process made the row first
                await session.rollback()
                failures = await _increment(session, extension, now) or 1
        audit(session, f"telefoon {extension}", "pin_refused", "announcement", extension)
        locked = False
        if failures >= MAX_FAILURES:
            result = await session.execute(
                update(PinLock)
                .where(PinLock.extension == extension, PinLock.failures >= MAX_FAILURES)
                .values(failures=0, locked_until=now + LOCKOUT)
            )
            locked = int(getattr(result, "rowcount", 0) or 0) == 1
        if locked:
            audit(
                session,
                f"telefoon {extension}",
                "pin_locked",
                "announcement",
                extension,
                f"{MAX_FAILURES} wrong PINs; locked until {now + LOCKOUT:%Y-%m-%d %H:%M} UTC",
            )
            mailbox = services.config.kcc.supervisor_mailbox
            if mailbox:
                session.add(
                    OutboxMail(
                        key=f"pin-locked:{extension}:{now:%Y%m%d%H%M%S}",
                        recipient=mailbox,
                        subject=f"Opnemen per telefoon geblokkeerd voor toestel {extension}",
                        body=(
                            f"Vanaf toestel {extension} is {MAX_FAILURES} keer een verkeerde "
                            f"pincode voor het inspreken van berichten getoetst. Het toestel "
                            f"is een uur geblokkeerd. Is dit onverwacht, wijzig dan de "
                            f"pincode ([operators] pin) en kijk wie het toestel gebruikt.\n"
                        ),
                    )
                )
        await session.commit()
    if locked:
        services.metrics.recording_pin_locked()
    return locked


async def clear(services: Services, extension: str) -> None:
    """A right PIN: the count starts again."""
    async with services.sessions() as session:
        await session.execute(
            update(PinLock)
            .where(PinLock.extension == extension, PinLock.failures > 0)
            .values(failures=0)
        )
        await session.commit()


async def _increment(session: AsyncSession, extension: str, now: datetime) -> int | None:
    result = await session.execute(
        update(PinLock)
        .where(PinLock.extension == extension)
        .values(failures=PinLock.failures + 1, last_failure_at=now)
        .returning(PinLock.failures)
    )
    value = result.scalar_one_or_none()
    return None if value is None else int(value)
