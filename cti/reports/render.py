"""A report as CSV (for a spreadsheet), HTML (to read or print) and plain text (the mail).

The CSV is "long": one row per team, employee and figure, so every figure (categories too)
fits one table that a spreadsheet can pivot. HTML and text are in Dutch, for team leads.
"""

from __future__ import annotations

import csv
import html
import io

from cti.reports.figures import Report, TeamFigures

TARGET = 0.9
AMBER = 0.8  # below the target but within reach: amber, as on the wall screen
TEAM_ROW = "(team)"


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", "team", "employee", "figure", "value"])
    for team in report.teams:

        def row(employee: str, figure: str, value: object, team: TeamFigures = team) -> None:
            writer.writerow([report.period.label, team.team, employee, figure, value])

        row(TEAM_ROW, "calls_offered", team.calls_offered)
        row(TEAM_ROW, "calls_answered", team.calls_answered)
        row(TEAM_ROW, "calls_abandoned", team.calls_abandoned)
        row(TEAM_ROW, "hoppers_created", team.hoppers_created)
        row(TEAM_ROW, "hoppers_handled", team.hoppers_handled)
        row(TEAM_ROW, "hoppers_within_norm", team.hoppers_within_norm)
        row(TEAM_ROW, "hoppers_open_overdue", team.hoppers_open_overdue)
        share = team.norm_share
        row(TEAM_ROW, "share_within_norm", "" if share is None else f"{share:.4f}")
        if team.first_line is not None:
            fl = team.first_line
            row(TEAM_ROW, "first_line_answered", fl.answered)
            row(TEAM_ROW, "first_line_handled", fl.handled)
            row(TEAM_ROW, "first_line_share", "" if fl.share is None else f"{fl.share:.4f}")
            row(TEAM_ROW, "first_line_passed_on", fl.passed_on)
            row(TEAM_ROW, "first_line_hoppers", fl.hoppers)
            row(TEAM_ROW, "repeat_callers", fl.repeat_callers)
            row(TEAM_ROW, "repeat_base_callers", fl.callers)
            row(TEAM_ROW, "transfers_in", fl.transfers_in)
        for name in sorted(team.employees):
            person = team.employees[name]
            row(name, "calls_answered", person.calls_answered)
            row(name, "hoppers_handled", person.hoppers_handled)
            row(name, "hoppers_within_norm", person.hoppers_within_norm)
        for category, count in sorted(team.categories.items()):
            row(TEAM_ROW, f"category:{category}", count)
        for question, text in team.survey.items():
            row(TEAM_ROW, f"survey:{question}", text)
        for name in sorted(team.employees):
            for question, text in team.employees[name].survey.items():
                row(name, f"survey:{question}", text)
    return out.getvalue()


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.0f} %"


def _colour(share: float | None) -> str:
    if share is None:
        return "none"
    return "green" if share >= TARGET else "amber" if share >= AMBER else "red"


def to_html(
    report: Report, exchange_name: str = "Gemeente", names: dict[str, str] | None = None
) -> str:
    """``names``: extension -> the phone's name, so an employee reads as "Carla (3001)"."""
    e = html.escape
    names = names or {}
    parts = [
        "<!doctype html>",
        '<html lang="nl"><head><meta charset="utf-8">',
        f"<title>Stuurinformatie {e(report.period.label)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Stuurinformatie telefonie · {e(exchange_name)}</h1>",
        f'<p class="sub">Periode {e(report.period.label)} '
        f"({report.period.first_day:%d-%m-%Y} t/m "
        f"{report.period.end_day.fromordinal(report.period.end_day.toordinal() - 1):%d-%m-%Y})"
        f" · servicenorm: direct beantwoord of binnen de norm teruggebeld, doel 90 %</p>",
        '<table class="summary"><thead><tr><th>Team</th><th>Gesprekken</th>'
        "<th>Direct beantwoord</th><th>Opgehangen</th><th>Hoppers</th><th>Afgehandeld</th>"
        "<th>Binnen norm</th><th>Te laat, open</th><th>Servicenorm</th>"
        f"<th>Eerstelijns (doel {report.first_line_target * 100:.0f} %)</th>"
        "</tr></thead><tbody>",
    ]
    for team in report.teams:
        share = team.norm_share
        parts.append(
            f"<tr><td>{e(team.name)}</td><td>{team.calls_offered}</td>"
            f"<td>{team.calls_answered}</td><td>{team.calls_abandoned}</td>"
            f"<td>{team.hoppers_created}</td><td>{team.hoppers_handled}</td>"
            f"<td>{team.hoppers_within_norm}</td><td>{team.hoppers_open_overdue}</td>"
            f'<td class="norm {_colour(share)}">{_percent(share)}</td>'
            f"<td>{_percent(team.first_line.share if team.first_line else None)}</td></tr>"
        )
    parts.append("</tbody></table>")
    for team in report.teams:
        if not team.employees and not team.categories and not team.survey:
            continue
        parts.append(f'<section><h2>{e(team.name)}</h2><div class="cols">')
        parts.append(
            "<table><thead><tr><th>Medewerker</th><th>Beantwoord</th><th>Hoppers afgehandeld"
            "</th><th>Binnen norm</th></tr></thead><tbody>"
        )
        for name in sorted(team.employees):
            p = team.employees[name]
            parts.append(
                f"<tr><td>{e(_who(name, names))}</td><td>{p.calls_answered}</td>"
                f"<td>{p.hoppers_handled}</td><td>{p.hoppers_within_norm}</td></tr>"
            )
        parts.append("</tbody></table>")
        parts.append("<table><thead><tr><th>Vraagcategorie</th><th>Aantal</th></tr></thead><tbody>")
        for category, count in team.categories.most_common():
            parts.append(f"<tr><td>{e(category)}</td><td>{count}</td></tr>")
        parts.append("</tbody></table></div>")
        if team.survey:
            parts.append(f"<p>Enquête na het gesprek: {e(_survey_line(team.survey))}</p>")
        parts.append("</section>")
    parts.append(
        f'<p class="foot">Gemaakt {report.generated_at:%d-%m-%Y %H:%M} UTC door Bereik. '
        "Hoppers van acquisitie tellen niet mee voor de norm.</p></body></html>"
    )
    return "\n".join(parts)


def _who(name: str, names: dict[str, str]) -> str:
    return f"{names[name]} ({name})" if names.get(name) else name


def _survey_line(survey: dict[str, str]) -> str:
    return ", ".join(f"{question} {text}" for question, text in survey.items())


def first_line_lines(report: Report, team: TeamFigures) -> list[str]:
    """The mail's first-line lines: the share against the target, what was passed on, the
    repeat callers, and the calls other teams passed to this one."""
    fl = team.first_line
    if fl is None or not (fl.answered or fl.transfers_in):
        return []
    target = f"{report.first_line_target * 100:.0f} %"
    lines = []
    if fl.answered:
        lines += [
            f"Eerstelijnsafhandeling (doel {target}): {_percent(fl.share)}: {fl.handled} van "
            f"{fl.answered} aangenomen gesprekken zelf afgehandeld; {fl.passed_on} "
            f"doorverbonden, {fl.hoppers} met een terugbelverzoek",
            f"Opnieuw gebeld binnen {report.repeat_days} werkdagen: {fl.repeat_callers} van "
            f"{fl.callers} bellers",
        ]
    if fl.transfers_in:
        lines.append(f"Doorverbonden naar dit team: {fl.transfers_in}")
    return lines


def to_text(report: Report, team: TeamFigures) -> str:
    """The weekly mail to a team lead: the team's figures, then per employee."""
    lines = [
        f"Stuurinformatie {team.name}, week {report.period.label}",
        "",
        f"Servicenorm (doel 90 %): {_percent(team.norm_share)}",
        f"Gesprekken: {team.calls_offered}, direct beantwoord: {team.calls_answered}, "
        f"opgehangen tijdens wachten: {team.calls_abandoned}",
        f"Hoppers: {team.hoppers_created} aangemaakt, {team.hoppers_handled} afgehandeld, "
        f"{team.hoppers_within_norm} binnen de norm, {team.hoppers_open_overdue} open en te laat",
        *first_line_lines(report, team),
        "",
        "Per medewerker (beantwoord / hoppers afgehandeld / binnen norm):",
    ]
    for name in sorted(team.employees):
        p = team.employees[name]
        lines.append(
            f"  {name}: {p.calls_answered} / {p.hoppers_handled} / {p.hoppers_within_norm}"
        )
    if team.survey:
        lines += ["", "Enquête na het gesprek: " + _survey_line(team.survey)]
        for name in sorted(team.employees):
            if team.employees[name].survey:
                lines.append(f"  {name}: {_survey_line(team.employees[name].survey)}")
    if team.categories:
        lines += ["", "Vraagcategorieën:"]
        lines += [f"  {c}: {n}" for c, n in team.categories.most_common()]
    return "\n".join(lines) + "\n"


CSS = """
body{font-family:system-ui,sans-serif;margin:32px;color:#1b1b1b}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:28px 0 8px;border-bottom:2px solid #154273;padding-bottom:4px}
.sub{color:#555;margin:0 0 20px}
table{border-collapse:collapse;margin:0 24px 12px 0}
th,td{padding:6px 12px;text-align:right;border-bottom:1px solid #ddd}
th:first-child,td:first-child{text-align:left}
thead th{background:#154273;color:#fff;font-weight:600}
.summary td{font-size:17px}
.norm{font-weight:700}
.green{background:#d8f0dc;color:#0b6623}
.amber{background:#fff1c6;color:#8a5a00}
.red{background:#f9d6d5;color:#a01c14}
.cols{display:flex;flex-wrap:wrap;align-items:flex-start}
.foot{color:#777;font-size:12px;margin-top:24px}
"""
