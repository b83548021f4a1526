"""Accounts: creating users, checking passwords (argon2), and API tokens.

Wrong sign-ins slow down the guessing address, never the account (cti/users/backoff.py).

Only hashes are stored: argon2 for passwords (slow on purpose), SHA-256 for API tokens
(they are long random strings, so a fast hash is enough and lets us look them up).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cti.audit import audit
from cti.store.db import Sessions
from cti.store.models import User
from cti.users import backoff
from dialplan.config import EXTENSION_PATTERN

ROLES = ("agent", "member", "lead", "operator", "supervisor", "admin")
MIN_PASSWORD_LENGTH = 8
# API tokens expire: a script's token forgotten in a file stops working by itself.
TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 366

_hasher = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("bereik-no-such-user")


class UserError(ValueError):
    """Bad input for an account (unknown role, name taken, short password): a clear message."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def hash_off_loop(password: str) -> str:
    """argon2's hash in the password checks' worker thread: an account saved on the admin
    screen costs the event loop (and so FastAGI) nothing."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_checker, hash_password, password)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_extension(extension: str) -> str:
    """An account's phone extension: the same digits-only rule as the configuration's.

    It reaches AMI actions (Originate, the live screen), so CR/LF or anything but digits
    is refused, never trimmed away.
    """
    if extension and not re.fullmatch(EXTENSION_PATTERN, extension):
        raise UserError("extension: 2-8 digits")
    return extension


def validate(name: str, password: str | None, role: str) -> None:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise UserError("name: 1-64 letters, digits or . _ - @")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")


async def create_user(
    session: AsyncSession,
    name: str,
    password: str,
    role: str,
    team_id: str = "",
    extension: str = "",
    language: str = "nl",
) -> User:
    """Add a user (flushed, not committed: the caller commits with its audit row)."""
    validate(name, password, role)
    check_extension(extension)
    if role in ("member", "lead") and not team_id:
        raise UserError(f"a {role} needs a team")
    if await get_user(session, name) is not None:
        raise UserError(f"user {name} already exists")
    user = User(
        name=name,
        password_hash=await hash_off_loop(password),
        role=role,
        team_id=team_id,
        extension=extension,
        language=language if language in ("nl", "en") else "nl",
        api_token_hash="",
        active=True,
    )
    session.add(user)
    await session.flush()
    return user


async def get_user(session: AsyncSession, name: str) -> User | None:
    result = await session.execute(select(User).where(User.name == name))
    return result.scalar_one_or_none()


class SignInWaits(Exception):
    """This name may not be tried from this address yet (cti/users/backoff.py)."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"wait until {until:%H:%M:%S} UTC")
        self.until = until


class LoginBusy(Exception):
    """Too many password checks at once: answer "try again" now rather than queue."""


# argon2 takes ~100 ms of CPU; it runs in a worker thread (argon2-cffi releases the GIL),
# never on the event loop that also answers FastAGI. At most CHECKS_AT_ONCE checks run
# and CHECKS_WAITING wait; a sign-in beyond that is refused at once (503), so a flood
# of sign-ins costs at most one core and never a call's prompt.
CHECKS_AT_ONCE = 1
CHECKS_WAITING = 8
# The thread runs at the lowest CPU priority (nice 19; argon2's own lane threads inherit
# it): Asterisk and the event loop always go first, so a sign-in waits and a call never.
LOWEST_PRIORITY = 19


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)


# The pool's one thread is the cap on checks that run; `_pending` counts those running
# and waiting (a plain counter: there is one event loop per process).
_checker = ThreadPoolExecutor(
    max_workers=CHECKS_AT_ONCE, thread_name_prefix="argon2", initializer=_lower_priority
)
_pending = 0


def checks_saturated() -> bool:
    """Whether a new password check would be refused: callers answer 503 before any work."""
    return _pending >= CHECKS_AT_ONCE + CHECKS_WAITING


async def check_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches, computed off the event loop; LoginBusy when saturated."""
    global _pending
    if checks_saturated():
        raise LoginBusy("too many sign-ins at once")
    _pending += 1
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_checker, _check, password_hash, password)
    finally:
        _pending -= 1


async def verify_password(
    sessions: Sessions,
    name: str,
    password: str,
    address: str = "?",
    now: datetime | None = None,
    on_wait: Callable[[], None] | None = None,
) -> User | None:
    """The user if name and password match and the account is usable; else None.

    SignInWaits while this name waits at this address after repeated misses (no argon2
    then: guessing costs us nothing); a miss is counted for the (name, address) pair
    only, so the owner elsewhere still signs in. `on_wait` is called when a miss starts a
    wait (the /metrics counter). No database connection is held while argon2 runs, so
    calls never wait for a password check. Commits its own changes.
    """
    now = now or datetime.now(UTC)
    until = await backoff.blocked_until(sessions, name, address, now)
    if until is not None:
        raise SignInWaits(until)
    async with sessions() as session:
        user = await get_user(session, name)
    if user is None or not user.active:
        await check_password(_DUMMY_HASH, password)
        await count_miss(sessions, name, address, now, on_wait)
        return None
    if not await check_password(user.password_hash, password):
        await count_miss(sessions, name, address, now, on_wait)
        return None
    await backoff.clear(sessions, name, address)
    async with sessions() as session:
        if _hasher.check_needs_rehash(user.password_hash):
            await session.execute(
                update(User)
                .where(User.id == user.id)
                .values(password_hash=await hash_off_loop(password))
            )
        audit(session, actor=user.name, action="login", object_type="user", object_id=user.id)
        await session.commit()
        fresh = await session.get(User, user.id, populate_existing=True)
    return fresh


async def count_miss(
    sessions: Sessions,
    name: str,
    address: str,
    now: datetime,
    on_wait: Callable[[], None] | None = None,
    what: str = "password",
) -> None:
    """A wrong password (or second-factor code): counted for (name, address), audited;
    the miss that starts a wait is audited as `lock`, with the address and its end."""
    until = await backoff.count_failure(sessions, name, address, now)
    async with sessions() as session:
        if until is None:
            audit(
                session,
                actor=name[:64] or "?",
                action="login_failed",
                object_type="user",
                object_id=name[:64],
                detail=f"{what} from {address}",
            )
        else:
            audit(
                session,
                actor=name[:64] or "?",
                action="lock",
                object_type="user",
                object_id=name[:64],
                detail=f"{what} from {address}; this address waits until {until:%H:%M:%S} UTC",
            )
        await session.commit()
    if until is not None and on_wait is not None:
        on_wait()


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _check(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def set_password(session: AsyncSession, user: User, password: str) -> None:
    """A new password (hashed off the event loop); ends every session signed in with the old."""
    validate(user.name, password, user.role)
    user.password_hash = await hash_off_loop(password)
    revoke_sessions(user)


def revoke_sessions(user: User) -> None:
    """Every session cookie of this user stops working (logout, password, deactivation).

    A session carries the version it was signed in with; the middleware compares it with
    the row on every request and on each heartbeat of an /events stream.
    """
    user.session_version = (user.session_version or 0) + 1


async def issue_token(session: AsyncSession, user: User, days: int = TOKEN_DAYS) -> str:
    """A new API token for scripts, valid `days` days; replaces the previous one.

    Only its hash is stored, so a lost token cannot be shown again, only replaced or revoked.
    """
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise UserError(f"a token is valid 1 to {MAX_TOKEN_DAYS} days")
    token = "brk_" + secrets.token_urlsafe(32)
    user.api_token_hash = hash_token(token)
    user.api_token_expires_at = datetime.now(UTC) + timedelta(days=days)
    await session.flush()
    return token


def revoke_token(user: User) -> None:
    user.api_token_hash = ""
    user.api_token_expires_at = None


async def user_by_token(
    session: AsyncSession, token: str, now: datetime | None = None
) -> User | None:
    """The active user whose unexpired token this is; None otherwise."""
    if not token:
        return None
    result = await session.execute(
        select(User).where(
            User.api_token_hash == hash_token(token),
            User.active.is_(True),
            User.api_token_expires_at > (now or datetime.now(UTC)),
        )
    )
    return result.scalar_one_or_none()
