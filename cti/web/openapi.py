"""The OpenAPI 3 document of Bereik's JSON API, served at /api/openapi.json.

Hand-written and kept next to the code: when a feature adds or changes an endpoint, its
entry here changes in the same commit. `tests/unit/test_openapi.py` checks that every
documented path of the web plugins exists and that the document is well-formed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

ERROR = {"$ref": "#/components/responses/Error"}
JSON = "application/json"


def _body(schema: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    if required:
        schema = {**schema, "required": required}
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {JSON: {"schema": schema}}
    return response


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): ERROR for code in codes}


def _id(name: str = "id", description: str = "hopper id") -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "integer"},
    }


STR = {"type": "string"}
INT = {"type": "integer"}
HOPPER_REF = {"$ref": "#/components/schemas/Hopper"}
ANNOUNCEMENT_REF = {"$ref": "#/components/schemas/Announcement"}
NODE = {
    "type": "object",
    "properties": {
        "name": STR,
        "uri": STR,
        "state": {"type": "string", "enum": ["active", "inactive", "trying", "drained"]},
        "probed": {"type": "boolean"},
    },
}
NODE_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "node name",
    "schema": STR,
}
NODE_CHANGED = {"type": "object", "properties": {"name": STR, "action": STR}}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "Bereik API",
        "version": "1",
        "description": (
            "The JSON API of Bereik, the exchange and CTI layer of the municipal contact "
            "centre. Every endpoint but /healthz and /metrics needs a signed-in session "
            "(cookie, with the X-CSRF-Token header on changes) or an API token "
            "(`Authorization: Bearer <token>`, made with `bereik users token NAME` or on "
            'the admin page). Errors are `{"error": "message"}` with a 4xx status.'
        ),
    },
    "security": [{"bearer": []}, {"session": []}],
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "bereik_session"},
        },
        "responses": {
            "Error": {
                "description": "A clear message; 401 not signed in, 403 not allowed "
                "(role, another team, missing CSRF token), 404 unknown, 409 conflict.",
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "properties": {"error": STR},
                            "required": ["error"],
                        }
                    }
                },
            }
        },
        "schemas": {
            "Hopper": {
                "type": "object",
                "description": "A callback request.",
                "properties": {
                    "id": INT,
                    "team": STR,
                    "caller": STR,
                    "reason": {
                        "type": "string",
                        "enum": ["no_answer", "busy", "nobody_present", "after_hours", "manual"],
                    },
                    "agent": STR,
                    "category": STR,
                    "note": STR,
                    "call_uniqueid": STR,
                    "created_at": {"type": "string", "format": "date-time"},
                    "deadline": {"type": "string", "format": "date-time"},
                    "status": {"type": "string", "enum": ["open", "closed"]},
                    "claimed_by": STR,
                    "closed_at": {"type": "string", "format": "date-time", "nullable": True},
                    "closing_reason": STR,
                    "counts_for_norm": {"type": "boolean"},
                    "within_norm": {"type": "boolean", "nullable": True},
                    "repeat_count": INT,
                    "call_not_linked": {
                        "type": "string",
                        "description": "POST only: why call_uniqueid was not linked (not the "
                        "agent's own current or last call, or another number); the hopper "
                        "is made without it",
                    },
                    "history": {"type": "array", "items": {"type": "object"}},
                },
            },
            "Announcement": {
                "type": "object",
                "properties": {
                    "id": INT,
                    "text": STR,
                    "kind": {"type": "string", "enum": ["outage", "news", "closure"]},
                    "scope": {"type": "string", "description": "all, menu:<key> or team:<id>"},
                    "valid_from": {"type": "string", "format": "date-time"},
                    "valid_until": {"type": "string", "format": "date-time", "nullable": True},
                    "priority": INT,
                    "author": STR,
                    "source": {"type": "string", "enum": ["tts", "phone", "upload"]},
                    "active": {"type": "boolean"},
                    "audio_url": STR,
                },
            },
            "AgentCall": {
                "type": "object",
                "properties": {
                    "extension": STR,
                    "channel": STR,
                    "caller": STR,
                    "caller_name": STR,
                    "linkedid": {"type": "string", "description": "the call's id (uniqueid)"},
                    "state": {"type": "string", "enum": ["ringing", "answered", "ended"]},
                },
            },
        },
    },
    "paths": {
        "/healthz": {
            "get": {
                "summary": "Each part of this process, up or down (no sign-in): database, "
                "AMI per node, every worker, FastAGI, mail waiting, disk",
                "security": [],
                "responses": {
                    "200": _ok("every part up"),
                    "503": _ok("a part is down: `down` names it, `parts` says why"),
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness for a load balancer: false only while stopping (no sign-in)",
                "security": [],
                "responses": {"200": _ok("takes new calls"), "503": _ok("stopping")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (no sign-in)",
                "security": [],
                "responses": {"200": _ok("text exposition format")},
            }
        },
        "/api/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _ok("OpenAPI 3")}}
        },
        "/events": {
            "get": {
                "summary": "Server-sent events: the call at the signed-in user's extension",
                "description": "Event `call` with an AgentCall as data, on ringing, answer "
                "and end.",
                "responses": {
                    "200": {
                        "description": "text/event-stream",
                        "content": {"text/event-stream": {"schema": STR}},
                    },
                    **_errors(401, 409),
                },
            }
        },
        "/api/agent/call": {
            "get": {
                "summary": "The call at the signed-in agent's extension, or null",
                "responses": {
                    "200": _ok(
                        "current call",
                        {
                            "type": "object",
                            "properties": {"call": {"$ref": "#/components/schemas/AgentCall"}},
                        },
                    ),
                    **_errors(401),
                },
            }
        },
        "/api/agent/transfer": {
            "post": {
                "summary": "Blind transfer of the agent's answered call to a team number",
                "requestBody": _body({"type": "object", "properties": {"team": STR}}, ["team"]),
                "responses": {"200": _ok("transferred"), **_errors(400, 401, 403, 409, 503, 504)},
            }
        },
        "/api/agent/category": {
            "post": {
                "summary": "Register the question category of a call (from config categories)",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "category": STR,
                            "call": {"type": "string", "description": "default: current call"},
                        },
                    },
                    ["category"],
                ),
                "responses": {"200": _ok("stored"), **_errors(400, 401, 403, 404, 409)},
            }
        },
        "/api/callers/{number}": {
            "get": {
                "summary": "Earlier contacts and open hoppers of a phone number (audited)",
                "parameters": [
                    {"name": "number", "in": "path", "required": True, "schema": STR},
                    {"name": "call", "in": "query", "required": False, "schema": STR},
                ],
                "responses": {"200": _ok("history"), **_errors(401, 403)},
            }
        },
        "/api/agent/state": {
            "get": {
                "summary": "The signed-in agent's state in the KCC waiting line, and the "
                "pause reasons",
                "responses": {"200": _ok("state"), **_errors(401, 403, 404)},
            },
            "post": {
                "summary": "Sign in, sign out, pause (with a reason) or say ready (ends a pause "
                "and the wrap-up); a supervisor may name another agent's extension",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "action": {
                                "type": "string",
                                "enum": ["sign_in", "sign_out", "pause", "ready"],
                            },
                            "reason": STR,
                            "extension": STR,
                        },
                    },
                    ["action"],
                ),
                "responses": {"200": _ok("the new state"), **_errors(400, 401, 403)},
            },
        },
        "/api/queue": {
            "get": {
                "summary": "The KCC waiting line: callers waiting, longest wait, agents by "
                "state, today's offered/answered/abandoned, service level, ASA, forecast",
                "responses": {"200": _ok("figures"), **_errors(401, 403, 404)},
            }
        },
        "/api/board": {
            "get": {
                "summary": "The wall-screen figures: norm ratios, open and overdue hoppers",
                "responses": {"200": _ok("figures"), **_errors(401, 403)},
            }
        },
        "/api/hoppers": {
            "get": {
                "summary": "Hoppers of the teams the user may see, by deadline",
                "parameters": [
                    {"name": "team", "in": "query", "schema": STR},
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["open", "closed"]},
                    },
                ],
                "responses": {
                    "200": _ok("list", {"type": "array", "items": HOPPER_REF}),
                    **_errors(401, 403),
                },
            },
            "post": {
                "summary": "Create a hopper by hand (the KCC screen's form and API clients)",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "team": STR,
                            "caller": STR,
                            "reason": STR,
                            "category": STR,
                            "note": STR,
                            "call_uniqueid": STR,
                        },
                    },
                    ["team", "caller"],
                ),
                "responses": {"201": _ok("created", HOPPER_REF), **_errors(400, 401, 403)},
            },
        },
        "/api/hoppers/{id}": {
            "get": {
                "summary": "One hopper with its attempts and history (audited)",
                "parameters": [_id()],
                "responses": {"200": _ok("hopper", HOPPER_REF), **_errors(401, 403, 404)},
            }
        },
        "/api/hoppers/{id}/reassign": {
            "post": {
                "summary": "Move a hopper to another team",
                "parameters": [_id()],
                "requestBody": _body(
                    {"type": "object", "properties": {"team": STR, "note": STR}}, ["team"]
                ),
                "responses": {"200": _ok("moved", HOPPER_REF), **_errors(400, 401, 403, 404)},
            }
        },
        "/api/hoppers/{id}/claim": {
            "post": {
                "summary": "Take a hopper on",
                "parameters": [_id()],
                "responses": {"200": _ok("claimed", HOPPER_REF), **_errors(401, 403, 404, 409)},
            }
        },
        "/api/hoppers/{id}/callback": {
            "post": {
                "summary": "Click-to-call: ring the member's phone, then dial the citizen",
                "parameters": [_id()],
                "responses": {
                    "202": _ok("attempt started"),
                    **_errors(400, 401, 403, 404, 409, 503),
                },
            }
        },
        "/api/hoppers/{id}/close": {
            "post": {
                "summary": "Close a hopper with an outcome",
                "parameters": [_id()],
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "reason": {
                                "type": "string",
                                "enum": [
                                    "reached",
                                    "answered_other_channel",
                                    "solved_by_email",
                                    "acquisitie",
                                    "duplicate",
                                    "unreachable",
                                ],
                            },
                            "note": STR,
                        },
                    },
                    ["reason"],
                ),
                "responses": {"200": _ok("closed", HOPPER_REF), **_errors(400, 401, 403, 404, 409)},
            }
        },
        "/api/calls/{id}/transfer": {
            "post": {
                "summary": "Transfer a call to a team number (AMI)",
                "parameters": [_id(description="call id")],
                "requestBody": _body({"type": "object", "properties": {"team": STR}}, ["team"]),
                "responses": {"200": _ok("transferred"), **_errors(400, 401, 403, 404, 409, 503)},
            }
        },
        "/api/calls/{id}/coach": {
            "post": {
                "summary": "Listen in on the agent's leg of a call: rings the asker's own phone "
                "and joins it by ChanSpy (listen: hears both; whisper: the agent hears the "
                "coach; barge: both hear the coach); the agent hears a short tone with "
                "[coaching] announce. Supervisors any agent's call, a team lead their team's "
                "agents' (audited: the request, the spy's start and end)",
                "parameters": [_id(description="call id or uniqueid")],
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {"mode": {"enum": ["listen", "whisper", "barge"]}},
                    },
                    ["mode"],
                ),
                "responses": {
                    "200": _ok("the coach's phone rings (session, mode, call, agent, phone)"),
                    **_errors(400, 401, 403, 404, 409, 502, 503),
                },
            }
        },
        "/api/coaching": {
            "get": {
                "summary": "The calls in progress with an agent that the asker may listen in "
                "on (supervisors all, a team lead their team's): agent, team, seconds",
                "responses": {"200": _ok("calls"), **_errors(401, 403)},
            }
        },
        "/api/calls/{id}/journey": {
            "get": {
                "summary": "A call's journey: menu, announcements heard, time in line, phones "
                "rung and who answered, transfers, the hopper, callback attempts, the survey "
                "(supervisors any call; a team the calls that reached it; an agent their own; "
                "audited)",
                "parameters": [_id(description="call id or uniqueid")],
                "responses": {
                    "200": _ok("the journey's steps in time order"),
                    **_errors(401, 403, 404),
                },
            }
        },
        "/api/nodes": {
            "get": {
                "summary": "Every Asterisk node's state behind Kamailio (admin)",
                "responses": {
                    "200": _ok("nodes", {"type": "array", "items": NODE}),
                    **_errors(401, 403, 502),
                },
            }
        },
        **{
            f"/api/nodes/{{name}}/{action}": {
                "post": {
                    "summary": summary,
                    "parameters": [NODE_NAME],
                    "responses": {
                        "200": _ok(f"{action}ed (audited)", NODE_CHANGED),
                        **_errors(401, 403, 404, 502),
                    },
                }
            }
            for action, summary in (
                ("drain", "Drain a node: no new calls, calls in progress go on (admin)"),
                ("undrain", "Undrain a node: it takes new calls again (admin)"),
            )
        },
        "/api/announcements": {
            "get": {
                "summary": "Announcements (active only with ?active=true)",
                "parameters": [{"name": "active", "in": "query", "schema": {"type": "boolean"}}],
                "responses": {
                    "200": _ok("list", {"type": "array", "items": ANNOUNCEMENT_REF}),
                    **_errors(401, 403),
                },
            },
            "post": {
                "summary": "Create an announcement (spoken with TTS); live from valid_from",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "text": STR,
                            "kind": {"type": "string", "enum": ["outage", "news", "closure"]},
                            "scope": STR,
                            "valid_from": {"type": "string", "format": "date-time"},
                            "valid_until": {"type": "string", "format": "date-time"},
                            "priority": INT,
                        },
                    },
                    ["text", "kind"],
                ),
                "responses": {"201": _ok("created", ANNOUNCEMENT_REF), **_errors(400, 401, 403)},
            },
        },
        "/api/announcements/upload": {
            "post": {
                "summary": "Create an announcement from an uploaded wav, mp3 or ogg",
                "description": "multipart/form-data: file, kind, scope, valid_from, "
                "valid_until, priority, text (shown in lists). Not audio: 400.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {"file": {"type": "string", "format": "binary"}},
                            }
                        }
                    },
                },
                "responses": {"201": _ok("created", ANNOUNCEMENT_REF), **_errors(400, 401, 403)},
            }
        },
        "/api/announcements/{id}": {
            "get": {
                "summary": "One announcement",
                "parameters": [_id(description="announcement id")],
                "responses": {
                    "200": _ok("announcement", ANNOUNCEMENT_REF),
                    **_errors(401, 403, 404),
                },
            },
            "patch": {
                "summary": "Change an announcement (text, validity, priority)",
                "parameters": [_id(description="announcement id")],
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "text": STR,
                            "valid_from": {"type": "string", "format": "date-time"},
                            "valid_until": {"type": "string", "format": "date-time"},
                            "priority": INT,
                        },
                    }
                ),
                "responses": {
                    "200": _ok("changed", ANNOUNCEMENT_REF),
                    **_errors(400, 401, 403, 404),
                },
            },
            "delete": {
                "summary": "End an announcement now",
                "parameters": [_id(description="announcement id")],
                "responses": {"200": _ok("ended", ANNOUNCEMENT_REF), **_errors(401, 403, 404)},
            },
        },
        "/api/survey": {
            "get": {
                "summary": "Post-call survey figures per team (and the KCC); per agent only "
                "for the agent and their lead, from survey.min_answers_per_agent answers",
                "parameters": [
                    {
                        "name": "period",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["today", "7d", "28d"]},
                    }
                ],
                "responses": {"200": _ok("figures"), **_errors(400, 401)},
            }
        },
        "/api/recordings/{id}": {
            "get": {
                "summary": "A caller's recorded question (wav), for those who may see its "
                "hopper (a virtual hold's without one: the agent its callback rings, the KCC's "
                "lead, supervisors); every play is audited",
                "parameters": [_id(description="recording id (GET /api/hoppers/{id})")],
                "responses": {
                    "200": {"description": "audio", "content": {"audio/wav": {"schema": STR}}},
                    **_errors(400, 401, 403, 404),
                },
            }
        },
        "/api/virtual-holds/{id}/recordings": {
            "get": {
                "summary": "The questions a virtual hold's caller spoke (ids, urls, seconds), "
                "for the agent its callback rings, the KCC's lead and supervisors",
                "parameters": [_id(description="virtual hold id (the KCC popup's callback_id)")],
                "responses": {"200": _ok("recordings"), **_errors(400, 401, 403, 404)},
            }
        },
        "/api/quality-recordings": {
            "get": {
                "summary": "The quality recordings the user may hear (a team lead: the team's; "
                "a supervisor: all), newest first: id, team, call, caller, started_at, seconds, "
                "url (played through /api/recordings/{id}, audited)",
                "responses": {"200": _ok("recordings"), **_errors(401, 403)},
            }
        },
        "/api/agent/recording/stop": {
            "post": {
                "summary": "Stop the quality recording of the call answered at the user's "
                "phone (StopMixMonitor); stopped is false when it had none; audited",
                "responses": {"200": _ok("call, stopped"), **_errors(401, 403, 409, 503)},
            }
        },
        "/api/announcements/{id}/audio": {
            "get": {
                "summary": "The announcement's audio (wav)",
                "parameters": [_id(description="announcement id")],
                "responses": {
                    "200": {"description": "audio", "content": {"audio/wav": {"schema": STR}}},
                    **_errors(401, 403, 404),
                },
            }
        },
    },
}


def setup(app: web.Application) -> None:
    """Adds the route (bereik serve wires it)."""
    app.router.add_get("/api/openapi.json", openapi)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
