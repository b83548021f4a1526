"""Wrong sign-ins counted per (name, address), each pair waiting longer after each miss.

A lock of the whole account after a few wrong passwords lets anyone who knows a name
lock its owner out from anywhere. Here a guesser only slows down their own address:
after FREE_FAILURES wrong passwords (or second-factor codes) for one name from one
address, that pair waits FIRST_WAIT, doubled after every further miss up to LONGEST_WAIT;
the owner signing in from their own address is never affected. A right sign-in clears
its pair. Unknown names are counted the same way, so a refusal says nothing about
whether a name exists. Counted in the database with atomic statements, so several
`bereik serve` processes share one count. A pair quiet for FORGET_AFTER is forgotten.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from cti.store.db import Sessions
from cti.store.models import LoginFailure

FREE_FAILURES = 5
FIRST_WAIT = timedelta(minutes=1)
LONGEST_WAIT = timedelta(minutes=15)
FORGET_AFTER = timedelta(days=1)


def wait_after(failures: int) -> timedelta | None:
    """How long a pair waits after its `failures`-th miss in a row (None: not at all)."""
    if failures < FREE_FAILURES:
        return None
    doublings = min(failures - FREE_FAILURES, 10)
    return min(FIRST_WAIT * 2**doublings, LONGEST_WAIT)


def _key(name: str, address: str) -> tuple[str, str]:
    return name[:64], address[:64]


async def blocked_until(
    sessions: Sessions, name: str, address: str, now: datetime
) -> datetime | None:
    """Until when this name may not be tried from this address; None when it may now."""
    name, address = _key(name, address)
    async with sessions() as session:
        until = await session.scalar(
            select(LoginFailure.blocked_until).where(
                LoginFailure.name == name, LoginFailure.address == address
            )
        )
    return until if until is not None and until > now else None


async def count_failure(
    sessions: Sessions, name: str, address: str, now: datetime
) -> datetime | None:
    """One more miss for the pair; returns the end of the wait it now starts, if any.

    Not counted while the pair waits (a guess checked in parallel with the one that
    started the wait): the wait stands as it is.
    """
    name, address = _key(name, address)
    usable = or_(LoginFailure.blocked_until.is_(None), LoginFailure.blocked_until <= now)
    pair = (LoginFailure.name == name, LoginFailure.address == address)
    async with sessions() as session:
        for _ in range(2):
            counted = await session.execute(
                update(LoginFailure)
                .where(*pair, usable)
                .values(failures=LoginFailure.failures + 1, last_at=now)
                .returning(LoginFailure.failures)
            )
            failures = counted.scalar_one_or_none()
            if failures is not None:
                break
            if await session.scalar(select(func.count()).where(*pair)):
                await session.commit()
                return None  # the pair waits already
            session.add(LoginFailure(name=name, address=address, failures=1, last_at=now))
            try:
                await session.commit()
            except IntegrityError:  # another process counted the first miss meanwhile
                await session.rollback()
                continue
            failures = 1
            break
        else:
            return None
        wait = wait_after(failures)
        until = now + wait if wait is not None else None
        if until is not None:
            await session.execute(update(LoginFailure).where(*pair).values(blocked_until=until))
        # Pairs nobody tried for a day are forgotten (the table stays small).
        await session.execute(delete(LoginFailure).where(LoginFailure.last_at < now - FORGET_AFTER))
        await session.commit()
    return until


async def clear(sessions: Sessions, name: str, address: str) -> None:
    """A right sign-in: the pair starts afresh."""
    name, address = _key(name, address)
    async with sessions() as session:
        await session.execute(
            delete(LoginFailure).where(LoginFailure.name == name, LoginFailure.address == address)
        )
        await session.commit()


async def waiting_addresses(sessions: Sessions, now: datetime) -> dict[str, int]:
    """Per name, from how many addresses it may not be tried now (the admin's screen)."""
    async with sessions() as session:
        rows = await session.execute(
            select(LoginFailure.name, func.count())
            .where(LoginFailure.blocked_until > now)
            .group_by(LoginFailure.name)
        )
        return {name: int(count) for name, count in rows}


async def release(sessions: Sessions, name: str) -> None:
    """The admin lifts every wait of one name (someone was slowed down by mistake)."""
    async with sessions() as session:
        await session.execute(delete(LoginFailure).where(LoginFailure.name == name[:64]))
        await session.commit()
