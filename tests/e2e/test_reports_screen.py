"""The reports screen in Chromium against bereik serve: the figures of `bereik report`,
charts with their numbers, CSV downloads, and a team lead who sees only their own team."""

from __future__ import annotations

import csv
import io
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from bench.exchange import REPO, Exchange
from cti.store.models import Call, Hopper
from tests.support.browser import chromium, screenshot, sign_in

# November 2026 for Vergunningen: calls on working days, most in the morning, and hoppers
# closed within, past, or still open past their deadline.
CATEGORIES = ["omgevingsvergunning", "kapvergunning", "dakkapel", "evenement", "uitrit"]


def seed_november(ex: Exchange) -> None:
    rng = random.Random(48)
    rows: list[Call | Hopper] = []
    day = datetime(2026, 11, 2, tzinfo=UTC)
    n = 0
    while day.month == 11:
        if day.weekday() < 5:
            for hour in range(7, 16):  # UTC: 08:00-16:59 in Amsterdam
                for _ in range(rng.choice([0, 1, 2, 3, 4] if hour < 11 else [0, 1, 1, 2])):
                    n += 1
                    outcome = rng.choices(["answered_team", "abandoned", "hopper"], [8, 1, 1])[0]
                    rows.append(
                        Call(
                            uniqueid=f"nov-{n}",
                            entry="7001",
                            caller=f"06{n:08d}",
                            team_id="vergunningen",
                            outcome=outcome,
                            agent=rng.choice(["3001", "3002"]) if outcome != "abandoned" else "",
                            category=rng.choices(CATEGORIES, [9, 5, 3, 2, 1])[0],
                            wait_seconds=rng.uniform(2, 70),
                            started_at=day.replace(hour=hour, minute=rng.randrange(60)),
                        )
                    )
        day += timedelta(days=1)
    for k in range(24):
        created = datetime(2026, 11, 2 + k, 9, 0, tzinfo=UTC)
        state = ["within", "within", "within", "late", "open"][k % 5]
        rows.append(
            Hopper(
                team_id="vergunningen",
                caller=f"0611{k:06d}",
                reason="no_answer",
                created_at=created,
                deadline=created + timedelta(days=2),
                status="open" if state == "open" else "closed",
                within_norm=None if state == "open" else state == "within",
                closed_by="carla" if state != "open" else "",
                closed_at=None if state == "open" else created + timedelta(days=1),
                category=CATEGORIES[k % 3],
            )
        )
    with Session(ex._engine) as session:
        session.add_all(rows)
        session.commit()


def bereik_report(ex: Exchange, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bereik", "report", *args, "--config", str(ex.config_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_reports_screen_shows_bereik_reports_figures_and_a_lead_only_their_team(
    web: Exchange,
) -> None:
    seed_november(web)
    cli = bereik_report(web, "--period", "2026-11", "--team", "vergunningen")
    figures = {(r["employee"], r["figure"]): r["value"] for r in csv.DictReader(io.StringIO(cli))}
    async with chromium() as browser:
        member = await sign_in(browser, web, "carla")
        refused = await member.goto(web.url("/reports"))
        assert refused is not None and refused.status == 403  # reports are for leads
        lead = await sign_in(browser, web, "lea")
        await lead.goto(web.url("/reports"))
        options = await lead.eval_on_selector_all("#team option", "os => os.map(o => o.value)")
        assert options == ["vergunningen"]
        refused = await lead.goto(web.url("/reports?team=belastingen"))
        assert refused is not None and refused.status == 403
        refused_csv = await lead.request.get(web.url("/reports/report.csv?team=belastingen"))
        assert refused_csv.status == 403

        # The period picker: a month, by the form.
        await lead.goto(web.url("/reports"))
        await lead.select_option("#kind", "month")
        await lead.fill("#month", "2026-11")
        await lead.click("#show-report")
        await lead.wait_for_selector("h1:has-text('2026-11')")
        for figure in ("calls_offered", "calls_answered", "calls_abandoned", "hoppers_handled"):
            shown = await lead.text_content(f"#summary td[data-figure={figure}]")
            assert shown == figures["(team)", figure], figure
        share = float(figures["(team)", "share_within_norm"])
        norm_cell = await lead.text_content("#summary td[data-figure=share_within_norm]") or ""
        assert norm_cell.startswith(f"{round(share * 100)} %")
        for who in ("3001", "3002"):  # carla closes hoppers on 3001: one row per person
            row = f"#employees tr[data-employee='{who}']"
            for figure in ("calls_answered", "hoppers_handled"):
                assert await lead.text_content(f"{row} td[data-figure={figure}]") == (
                    figures.get((who, figure), "0")
                ), (who, figure)

        # Every chart is an image with a title and a description, its numbers in a table.
        for chart in ("norm", "hours-offered", "callbacks", "categories"):
            svg = f"#chart-{chart}"
            assert await lead.get_attribute(svg, "role") == "img"
            assert await lead.text_content(f"{svg} title")
            assert await lead.text_content(f"{svg} desc")
        weeks = await lead.eval_on_selector_all(
            "#table-norm tbody th", "c => c.map(e => e.textContent)"
        )
        assert weeks == ["2026-W44", "2026-W45", "2026-W46", "2026-W47", "2026-W48", "2026-W49"]
        assert await lead.locator("#chart-norm line.target").count() == 1
        top = await lead.text_content("#table-categories tbody tr:first-child th")
        assert top == "omgevingsvergunning"
        await screenshot(lead, "reports")

        # The whole report as CSV is `bereik report`'s, byte for byte; each chart has one.
        query = "kind=month&month=2026-11&team=vergunningen"
        download = await lead.request.get(web.url(f"/reports/report.csv?{query}"))
        assert download.status == 200 and await download.text() == cli
        for name in ("norm", "hours", "callbacks", "categories", "employees"):
            part = await lead.request.get(web.url(f"/reports/{name}.csv?{query}"))
            assert part.status == 200 and len((await part.text()).splitlines()) > 1, name

        # A custom period the wrong way round: the reason, and the picker as it was.
        await lead.goto(web.url("/reports?kind=custom&from=2026-11-20&to=2026-11-02"))
        problem = await lead.text_content("#report-problem")
        assert problem == "De laatste dag ligt vóór de eerste."
        assert await lead.input_value("#from") == "2026-11-20"
