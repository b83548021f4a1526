"""Domain failures, each with the HTTP status the API answers it with.

A feature raises the failure it means (a hopper that does not exist, one already closed,
speech that could not be made); the HTTP layer answers ``exc.status`` with ``{"error":
message}`` (cti/web/jsonapi.py `refusal`), never by reading the message's words. The
message is phrased for the person who asked (Dutch for the screens' users).
"""

from __future__ import annotations


class DomainError(ValueError):
    """A request that cannot be carried out; `status` is what the API answers."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class Invalid(DomainError):
    status = 400


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    """The request is sound, but the thing is not in a state to take it (closed, taken)."""

    status = 409


class TooLarge(DomainError):
    status = 413


class Unprocessable(DomainError):
    """Understood and valid, but we could not make it (speech synthesis failed)."""

    status = 422


class UpstreamFailed(DomainError):
    """A part we depend on answered wrongly (Kamailio's control socket)."""

    status = 502


class Unavailable(DomainError):
    """A part we depend on is not reachable now (AMI down): try again later."""

    status = 503
