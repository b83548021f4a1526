"""The team lead's reports screen: `/reports`, the period and team pickers, the charts."""

from __future__ import annotations

from aiohttp import web

from cti.reports import charts
from cti.reports.figures import MAX_DAYS, PeriodError
from cti.reports.http import ROLES, period_of, screen_of, selection
from cti.web.auth import mask_number, require_role
from cti.web.context import SERVICES
from cti.web.i18n import translator
from cti.web.pages import lang_of, render
from dialplan.config import KCC_ID

MEASURES = ("offered", "answered", "abandoned")


def setup(app: web.Application) -> None:
    app.router.add_get("/reports", reports_page)


async def reports_page(request: web.Request) -> web.Response:
    user = require_role(request, *ROLES)
    chosen = selection(request, user)
    t = translator(lang_of(request))
    try:
        period = period_of(chosen)
    except PeriodError as exc:
        # The picker stays as the user left it, with the reason; nothing else is shown.
        problem = t(exc.reason, days=MAX_DAYS)
        return render(
            request, "reports.html", status=400, chosen=chosen, screen=None, problem=problem
        )
    screen = await screen_of(request, user, chosen, period)
    config = request.app[SERVICES].config
    names = {phone.extension: phone.name for phone in config.phones}
    survey_on = any(config.survey.shares.values())
    return render(
        request,
        "reports.html",
        chosen=chosen,
        screen=screen,
        problem="",
        period=period,
        names=names,
        charts={
            "norm": charts.norm_chart(screen.weeks, t),
            "callbacks": charts.callbacks_chart(screen.weeks, t),
            "categories": charts.pareto_chart(screen.pareto, t),
            **{f"hours_{m}": charts.heat_map(screen.hours, m, t) for m in MEASURES},
        },
        measures=MEASURES,
        survey_questions=config.survey.questions if survey_on else [],
        survey_min=config.survey.min_answers_per_agent,
        survey_per_agent=user.role == "lead",
        # Numbers as on every screen: in full only for those who call citizens back.
        callers={call.id: mask_number(call.caller, user) for call in screen.not_handled},
        team_names={KCC_ID: "KCC"} | {team.id: team.name for team in config.teams},
    )
