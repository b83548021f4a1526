"""The API's JSON in and out: the ``{"error": ...}`` body of a refusal, and a JSON request body.

Shared by the HTTP handlers of every module, so each error the API raises has the same
shape (the web pages turn the same body into an error page).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def json_error(message: str) -> dict[str, Any]:
    """Keyword arguments for an aiohttp ``HTTPException`` whose body is ``{"error": message}``.

    ``raise web.HTTPNotFound(**json_error("no such user"))``
    """
    return {"text": json.dumps({"error": message}), "content_type": "application/json"}


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
        raise web.HTTPBadRequest(**json_error(not_json)) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(**json_error(not_object))
    return body
