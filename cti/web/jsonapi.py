"""The API's JSON in and out: the ``{"error": ...}`` body of a refusal, and a JSON request body.

Shared by the HTTP handlers of every module, so each error the API raises has the same
shape (the web pages turn the same body into an error page).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def _error_classes() -> dict[int, type[web.HTTPException]]:
    found: dict[int, type[web.HTTPException]] = {}
    todo: list[type[web.HTTPException]] = [web.HTTPClientError, web.HTTPServerError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        found.setdefault(cls.status_code, cls)
    return found


_ERRORS = _error_classes()


def json_error(message: str, status: int = 400) -> web.HTTPException:
    """The one way the API refuses: an HTTP error whose body is ``{"error": message}``.

    ``raise json_error("no such user", 404)``
    """
    cls = _ERRORS.get(status, web.HTTPBadRequest)
    return cls(text=json.dumps({"error": message}), content_type="application/json")


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
