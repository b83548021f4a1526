"""Accounts: creating users, checking passwords (argon2), lockout, and API tokens.

Only hashes are stored: argon2 for passwords (slow on purpose), SHA-256 for API tokens
(they are long random strings, so a fast hash is enough and lets us look them up).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.audit import audit
from cti.store.models import User

ROLES = ("agent", "member", "lead", "operator", "supervisor", "admin")
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("bereik-no-such-user")


class UserError(ValueError):
    """Bad input for an account (unknown role, name taken, short password): a clear message."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
    if role in ("member", "lead") and not team_id:
        raise UserError(f"a {role} needs a team")
    if await get_user(session, name) is not None:
        raise UserError(f"user {name} already exists")
    user = User(
        name=name,
        password_hash=hash_password(password),
        role=role,
        team_id=team_id,
        extension=extension,
        language=language if language in ("nl", "en") else "nl",
        failed_logins=0,
        api_token_hash="",
        active=True,
    )
    session.add(user)
    await session.flush()
    return user


async def get_user(session: AsyncSession, name: str) -> User | None:
    result = await session.execute(select(User).where(User.name == name))
    return result.scalar_one_or_none()


def is_locked(user: User, now: datetime | None = None) -> bool:
    now = now or datetime.now(UTC)
    return user.locked_until is not None and user.locked_until > now


async def verify_password(
    session: AsyncSession, name: str, password: str, now: datetime | None = None
) -> User | None:
    """The user if name and password match and the account is usable; else None.

    Counts failures: the fifth in a row locks the account for 15 minutes (also against the
    right password), so guessing is slow. The caller commits the session.
    """
    now = now or datetime.now(UTC)
    user = await get_user(session, name)
    if user is None or not user.active:
        _check(_DUMMY_HASH, password)
        audit(session, actor=name[:64] or "?", action="login_failed", object_type="user")
        return None
    if is_locked(user, now):
        audit(
            session, actor=user.name, action="login_locked", object_type="user", object_id=user.id
        )
        return None
    if not _check(user.password_hash, password):
        user.failed_logins = (user.failed_logins or 0) + 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
            audit(session, actor=user.name, action="lock", object_type="user", object_id=user.id)
        else:
            audit(
                session,
                actor=user.name,
                action="login_failed",
                object_type="user",
                object_id=user.id,
            )
        return None
    user.failed_logins = 0
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    audit(session, actor=user.name, action="login", object_type="user", object_id=user.id)
    return user


def _check(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def set_password(session: AsyncSession, user: User, password: str) -> None:
    validate(user.name, password, user.role)
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None


async def issue_token(session: AsyncSession, user: User) -> str:
    """A new API token for scripts; replaces the previous one. Only its hash is stored."""
    token = "brk_" + secrets.token_urlsafe(32)
    user.api_token_hash = hash_token(token)
    await session.flush()
    return token


async def user_by_token(session: AsyncSession, token: str) -> User | None:
    if not token:
        return None
    result = await session.execute(
        select(User).where(User.api_token_hash == hash_token(token), User.active.is_(True))
    )
    return result.scalar_one_or_none()
