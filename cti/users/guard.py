"""What stands before a password check: a per-address rate limit and one-time form tokens.

Both live in the memory of one `bereik serve` process: they slow down guessing, while the
lockout that must hold everywhere (five wrong passwords lock the account) is counted in
the database (cti.users.service.verify_password).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

# Remembered addresses and used tokens are capped, so a flood from many addresses costs
# bounded memory; the oldest entries are forgotten first.
MAX_ENTRIES = 50_000
LOGIN_TOKEN_SECONDS = 15 * 60


@dataclass
class _Bucket:
    tokens: float
    at: float
    throttled_since: float = 0.0  # when the current run of refusals began (0: none)


class AttemptLimiter:
    """A token bucket per client address: `per_minute` sign-ins, refilled steadily."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, address: str, now: float | None = None) -> tuple[bool, bool]:
        """(allowed, first refusal of a run): only the first refusal of a run is audited,
        so a flood from one address writes one audit row, not one per attempt."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.per_minute), at=now)
            self._buckets[address] = bucket
            while len(self._buckets) > MAX_ENTRIES:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(address)
        bucket.tokens = min(
            float(self.per_minute), bucket.tokens + (now - bucket.at) * self.per_minute / 60
        )
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            bucket.throttled_since = 0.0
            return True, False
        first = bucket.throttled_since == 0.0
        if first:
            bucket.throttled_since = now
        return False, first

    def throttled(self, address: str, now: float | None = None) -> tuple[bool, bool]:
        """(out of attempts, first refusal of a run) without using an attempt: the
        sign-in form is refused too, so a flood costs one cheap answer per request."""
        bucket = self._buckets.get(address)
        if bucket is None:
            return False, False
        now = time.monotonic() if now is None else now
        if bucket.tokens + (now - bucket.at) * self.per_minute / 60 >= 1:
            return False, False
        first = bucket.throttled_since == 0.0
        if first:
            bucket.throttled_since = now
        return True, first

    def retry_after(self) -> int:
        """Seconds until one more attempt is allowed (a whole number, at least 1)."""
        return max(1, round(60 / self.per_minute))


class LoginTokens:
    """The sign-in form's token: bound to the browser's session, valid 15 minutes, once.

    `issue` signs (session CSRF token, time, nonce) with the session key; `redeem`
    checks the signature and age and remembers the nonce, so one GET /login yields one
    POST. Another process would accept the same token once more: limited, not unlimited.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._used: OrderedDict[str, float] = OrderedDict()

    def _sign(self, session_csrf: str, issued: str, nonce: str) -> str:
        message = f"{session_csrf}|{issued}|{nonce}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, session_csrf: str, now: float | None = None) -> str:
        issued = str(int(time.time() if now is None else now))
        nonce = secrets.token_urlsafe(12)
        return f"{issued}.{nonce}.{self._sign(session_csrf, issued, nonce)}"

    def redeem(self, session_csrf: str, token: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        issued, _, rest = token.partition(".")
        nonce, _, signature = rest.partition(".")
        if not (issued.isdigit() and nonce and signature and session_csrf):
            return False
        if not hmac.compare_digest(self._sign(session_csrf, issued, nonce), signature):
            return False
        if not 0 <= now - int(issued) <= LOGIN_TOKEN_SECONDS:
            return False
        while self._used and next(iter(self._used.values())) < now - LOGIN_TOKEN_SECONDS:
            self._used.popitem(last=False)
        if nonce in self._used:
            return False
        self._used[nonce] = float(issued)
        while len(self._used) > MAX_ENTRIES:
            self._used.popitem(last=False)
        return True
