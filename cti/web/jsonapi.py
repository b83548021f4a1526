"""The API's JSON in and out: the ``{"error": ...}`` body of a refusal, and a JSON request body.

Shared by the HTTP handlers of every module, so each error the API raises has the same
shape (the web pages turn the same body into an error page).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from cti.errors import DomainError


def _error_classes() -> dict[int, type[web.HTTPException]]:
    found: dict[int, type[web.HTTPException]] = {}
    todo: list[type[web.HTTPException]] = [web.HTTPClientError, web.HTTPServerError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        found.setdefault(cls.status_code, cls)
    return found


_ERRORS = _error_classes()
# aiohttp's classes whose constructor needs more than the body: what they get here (the
# body says the rest).
_REQUIRED: dict[int, dict[str, Any]] = {
    405: {"method": "", "allowed_methods": ()},
    413: {"max_size": 0, "actual_size": 0},
}


def json_error(message: str, status: int = 400) -> web.HTTPException:
    """The one way the API refuses: an HTTP error whose body is ``{"error": message}``.

    ``raise json_error("no such user", 404)``; a status aiohttp has no class for is a 400.
    """
    cls = _ERRORS.get(status, web.HTTPBadRequest)
    return cls(
        **_REQUIRED.get(cls.status_code, {}),
        text=json.dumps({"error": message}),
        content_type="application/json",
    )


def refusal(exc: DomainError) -> web.HTTPException:
    """A domain failure as the API answers it: its own status, its message.

    ``except HopperError as exc: raise refusal(exc) from None``
    """
    return json_error(str(exc), exc.status)


async def json_object(
    request: web.Request,
    *,
    not_json: str = "body must be JSON",
    not_object: str = "body must be a JSON object",
) -> dict[str, Any]:
    """The request's body as a JSON object; a 400 with ``not_json`` when it does not parse,
    with ``not_object`` when it is JSON but not an object."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise json_error(not_json) from None
    if not isinstance(body, dict):
        raise json_error(not_object)
    return body
