"""The journey page: ``/calls/{id}/journey``, reached from the KCC popup, a hopper in the
team inbox, the board's list of callers who gave up, and the reports. Each step is said in
a sentence in the user's language, at its local time."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from cti.journey.http import load
from cti.journey.service import Step
from cti.web.auth import mask_number
from cti.web.context import SERVICES
from cti.web.i18n import translator
from cti.web.pages import lang_of, render
from dialplan.config import KCC_ID

# Values that are words of the system (an outcome, a reason): said through the texts
# "j value <word>" when there is one, else as they are.
WORDS = ("outcome", "result", "reason", "how", "closing_reason", "route", "queue", "status")


def setup(app: web.Application) -> None:
    app.router.add_get("/calls/{id}/journey", journey_page)


def describe(step: Step, t: Any, teams: dict[str, str]) -> str:
    values: dict[str, Any] = {
        "team": "",
        "name": "",
        "extension": "",
        "hopper": "",
        "by": "",
        "position": "",
        "wait": "",
        "question": "",
        "value": "",
        "entry": "",
        "text": "",
        "item": "",
        "deadline": "",
        **step.detail,
    }
    for key in WORDS:
        word = str(values.get(key) or "")
        label = f"j value {word}"
        values[key] = t(label) if word and t(label) != label else word
    values["team"] = teams.get(str(values["team"]), values["team"])
    route = str(step.detail.get("route", ""))
    if route.startswith("team-"):  # the menu's choice of a team: team-<its number>
        values["route"] = teams.get(route, route)
    values["who"] = (
        f"{values['name']} ({values['extension']})" if values["name"] else values["extension"]
    )
    wait = step.detail.get("wait_seconds")
    values["wait"] = "" if wait is None else f"{float(wait):.0f}"
    values["heard"] = values["text"] or values["item"]
    key = f"j {step.kind}"
    if step.kind == "rung":
        key += " answered" if step.detail.get("answered") else " not answered"
    return str(t(key, **values))


async def journey_page(request: web.Request) -> web.Response:
    user, journey = await load(request)
    config = request.app[SERVICES].config
    t = translator(lang_of(request))
    zone = ZoneInfo(config.exchange.timezone)
    teams = {team.id: team.name for team in config.teams} | {KCC_ID: "KCC"}
    teams |= {f"team-{team.number}": team.name for team in config.teams}
    rows = [
        {
            "at": f"{step.at.astimezone(zone):%H:%M:%S}",
            "kind": step.kind,
            "text": describe(step, t, teams),
        }
        for step in journey.steps
    ]
    return render(
        request,
        "journey.html",
        call=journey.call,
        caller=mask_number(journey.call.caller, user),
        day=f"{journey.call.started_at.astimezone(zone):%d-%m-%Y}",
        rows=rows,
    )
