"""The second factor for privileged accounts (BIO2): TOTP codes and recovery codes.

Admins and supervisors see every team's callers and change who may do what, so their
sign-in asks a six-digit code from an authenticator app (RFC 6238, `pyotp`) after the
password. An account in such a role without a second factor is sent to set one up before
any screen opens.

At rest: the TOTP secret must be readable to check a code, so it is encrypted
(AES-GCM) with a key of the instance (`second-factor.key` beside the session key, mode
0600, created once); a copy of the database alone does not give the secrets. Each code's
time step is remembered, so an overheard code does not work a second time. Recovery
codes (for a lost phone) are random, shown once and kept only as SHA-256 hashes; each
works once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyotp
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from cti.store.db import Sessions
from cti.store.models import RecoveryCode, User

ROLES = ("admin", "supervisor")
KEY_FILE = "second-factor.key"
RECOVERY_CODES = 10
# A code of the step before or after the current one is accepted too (a phone's clock a
# little off, a code typed just as it changed).
VALID_WINDOW = 1
STEP_SECONDS = 30
ISSUER = "Bereik"


class SecondFactorError(ValueError):
    """A key that does not open the stored secret, or another unusable state."""


def required(user: User) -> bool:
    return user.role in ROLES


def enrolled(user: User) -> bool:
    return user.totp_enabled_at is not None and bool(user.totp_secret)


class SecretBox:
    """Encrypts the TOTP secrets with the instance's key (AES-GCM, user id bound in)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def of_instance(cls, instance_dir: Path) -> SecretBox:
        return cls(_load_key(instance_dir / KEY_FILE))

    def seal(self, user_id: int, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), str(user_id).encode())
        return "v1:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, user_id: int, stored: str) -> str:
        if not stored.startswith("v1:"):
            raise SecondFactorError("no second-factor secret")
        raw = base64.urlsafe_b64decode(stored[3:].encode())
        try:
            return self._aead.decrypt(raw[:12], raw[12:], str(user_id).encode()).decode()
        except Exception as exc:  # cryptography's InvalidTag: another key, or altered
            raise SecondFactorError("the second-factor key does not open this secret") from exc


def _load_key(path: Path) -> bytes:
    """The instance's key, created once. Written whole to a file of its own first and then
    linked into place (atomic, and refused if it exists): several processes starting at
    once agree on one key, and none reads a key file before its key is in it (with an
    O_EXCL create and a write after it, a process starting in between read it empty)."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key.hex())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(staged, path)
        except FileExistsError:
            return _read_key(path)  # another process's, complete
        return key
    finally:
        os.unlink(staged)


def _read_key(path: Path) -> bytes:
    key = bytes.fromhex(path.read_text().strip())
    if len(key) != 32:
        raise SecondFactorError(f"{path}: not a 256-bit key")
    return key


def hash_recovery_code(code: str) -> str:
    return hashlib.sha256(_normal(code).encode()).hexdigest()


def _normal(code: str) -> str:
    return "".join(c for c in code.lower() if c.isalnum())


def new_recovery_code() -> str:
    """80 random bits as four groups of four base32 letters (`abcd-efgh-ijkl-mnop`)."""
    text = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


def start(user: User, box: SecretBox) -> str:
    """A new secret for the user (not yet in force: `confirm` with a code puts it there).
    The caller commits."""
    secret = pyotp.random_base32()
    user.totp_secret = box.seal(user.id, secret)
    user.totp_enabled_at = None
    user.totp_last_step = 0
    return secret


def pending_secret(user: User, box: SecretBox) -> str | None:
    """The secret being set up (shown again on a reload), or None."""
    if enrolled(user) or not user.totp_secret:
        return None
    try:
        return box.open(user.id, user.totp_secret)
    except SecondFactorError:
        return None


def provisioning_uri(user: User, secret: str, exchange: str) -> str:
    """The otpauth:// address an authenticator app reads (as text, or as a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.name, issuer_name=f"{ISSUER} {exchange}")


def _step_of(secret: str, code: str, now: float) -> int | None:
    """The time step `code` belongs to, within the window; None if it matches none."""
    code = "".join(c for c in code if c.isdigit())
    if len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    current = int(now // STEP_SECONDS)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


async def confirm(
    sessions: Sessions, user_id: int, box: SecretBox, code: str, now: float | None = None
) -> list[str] | None:
    """Put the pending secret in force if `code` matches it; returns new recovery codes
    (shown once), or None for a wrong code."""
    now = time.time() if now is None else now
    async with sessions() as session:
        user = await session.get(User, user_id)
        if user is None:
            return None
        secret = pending_secret(user, box)
        step = _step_of(secret, code, now) if secret else None
        if step is None:
            return None
        user.totp_enabled_at = datetime.fromtimestamp(now, UTC)
        user.totp_last_step = step
        codes = await _new_recovery_codes(session, user_id)
        await session.commit()
    return codes


async def renew_recovery_codes(sessions: Sessions, user_id: int) -> list[str]:
    """Fresh recovery codes; the old ones stop working."""
    async with sessions() as session:
        codes = await _new_recovery_codes(session, user_id)
        await session.commit()
    return codes


async def _new_recovery_codes(session: AsyncSession, user_id: int) -> list[str]:
    codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
    await forget_recovery_codes(session, user_id)
    session.add_all(RecoveryCode(user_id=user_id, code_hash=hash_recovery_code(c)) for c in codes)
    return codes


async def check(
    sessions: Sessions, user_id: int, box: SecretBox, code: str, now: float | None = None
) -> str | None:
    """Whether `code` is this user's current TOTP code (not used before) or one of their
    unused recovery codes: "totp", "recovery", or None. A code is used up at once, with
    one conditional UPDATE, so two processes cannot both accept it."""
    now = time.time() if now is None else now
    async with sessions() as session:
        user = await session.get(User, user_id)
        if user is None or not enrolled(user):
            return None
        try:
            secret = box.open(user.id, user.totp_secret)
        except SecondFactorError:
            return None
        step = _step_of(secret, code, now)
        if step is not None:
            used = await session.execute(
                update(User)
                .where(User.id == user_id, User.totp_last_step < step)
                .values(totp_last_step=step)
            )
            await session.commit()
            return "totp" if _rowcount(used) == 1 else None
        if len(_normal(code)) != 16:
            return None
        used = await session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == hash_recovery_code(code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=datetime.fromtimestamp(now, UTC))
        )
        await session.commit()
        return "recovery" if _rowcount(used) == 1 else None


def reset(user: User) -> None:
    """The admin takes a lost second factor away: the user sets up a new one at their
    next sign-in (recovery codes are deleted by `forget_recovery_codes`)."""
    user.totp_secret = ""
    user.totp_enabled_at = None
    user.totp_last_step = 0


async def forget_recovery_codes(session: AsyncSession, user_id: int) -> None:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
