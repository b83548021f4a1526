"""Access rules against a running `bereik serve`: sign-in, team isolation, CSRF, audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.exchange import Exchange, Phone, exchange, free_port
from dialplan import asterisk
from tests.support.users import add_users, sign_in, token_for

TEAMS = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
mailbox = "vergunningen@gemeente.example"

[[teams]]
id = "belastingen"
name = "Belastingen"
number = "7002"
members = ["3101"]
mailbox = "belastingen@gemeente.example"
"""

PAGES = [
    "/",
    "/kcc",
    "/team",
    "/team/hoppers/1",
    "/operator",
    "/board",
    "/reports",
    "/admin",
    "/admin/nodes",
]
APIS = [
    "/api/openapi.json",
    "/api/board",
    "/api/agent/call",
    "/api/callers/0612345678",
    "/api/hoppers",
    "/api/hoppers/1",
    "/api/announcements",
    "/api/nodes",
    "/events",
]


@pytest.fixture
def served(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    phones = [Phone("2001", free_port()), Phone("3001", free_port()), Phone("3101", free_port())]
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAMS) as ex:
        ex.start_serve()  # no Asterisk needed: these are the web's own rules
        yield ex


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def test_nothing_without_sign_in_but_health_and_metrics(
    served: Exchange, http: aiohttp.ClientSession
) -> None:
    # Open without sign-in; no Asterisk runs here, so it names AMI as the part down.
    health = await http.get(served.url("/healthz"))
    assert health.status == 503 and "ami" in (await health.json())["down"]
    assert (await http.get(served.url("/metrics"))).status == 200
    for path in PAGES:
        response = await http.get(served.url(path), allow_redirects=False)
        assert response.status == 302, path
        assert response.headers["Location"].startswith("/login?next=")
    for path in APIS:
        response = await http.get(served.url(path), allow_redirects=False)
        assert response.status == 401, path
        assert (await response.json())["error"]
    posted = await http.post(served.url("/api/hoppers/1/close"), json={"reason": "duplicate"})
    assert posted.status == 401
    bad_token = {"Authorization": "Bearer brk_not-a-token"}
    assert (await http.get(served.url("/api/board"), headers=bad_token)).status == 401


async def test_team_isolation_csrf_and_audit(served: Exchange, http: aiohttp.ClientSession) -> None:
    await add_users(
        served,
        [
            ("anna", "agent", "", "2001"),
            ("carla", "member", "vergunningen", "3001"),
            ("bram", "member", "belastingen", "3101"),
        ],
    )
    agent = {"Authorization": f"Bearer {await token_for(served, 'anna')}"}
    ids: dict[str, int] = {}
    for team in ("vergunningen", "belastingen"):
        made = await http.post(
            served.url("/api/hoppers"),
            json={"team": team, "caller": "0612345678", "note": f"voor {team}"},
            headers=agent,
        )
        assert made.status == 201, await made.text()
        ids[team] = (await made.json())["id"]
    # Bad input is a 400 with a message, never a 500.
    bad = await http.post(served.url("/api/hoppers"), data="{nonsense", headers=agent)
    assert bad.status == 400 and (await bad.json())["error"]
    unknown = await http.post(served.url("/api/hoppers"), json={"team": "x"}, headers=agent)
    assert unknown.status == 400

    # Bram (Belastingen) may not see Vergunningen's hopper, by API or by page.
    bram = {"Authorization": f"Bearer {await token_for(served, 'bram')}"}
    own = await http.get(served.url(f"/api/hoppers/{ids['belastingen']}"), headers=bram)
    assert own.status == 200, await own.text()
    other = await http.get(served.url(f"/api/hoppers/{ids['vergunningen']}"), headers=bram)
    assert other.status == 403 and (await other.json())["error"]
    listing = await http.get(served.url("/api/hoppers?team=vergunningen"), headers=bram)
    assert listing.status == 403

    csrf = await sign_in(http, served, "carla")
    page = await http.get(served.url(f"/team/hoppers/{ids['belastingen']}"))
    assert page.status == 403
    assert (await http.get(served.url(f"/team/hoppers/{ids['vergunningen']}"))).status == 200

    # A form without the CSRF token is refused; with it, it is done.
    refused = await http.post(
        served.url("/team/presence"), data={"present": "0"}, allow_redirects=False
    )
    assert refused.status == 403
    forged = await http.post(
        served.url("/team/presence"),
        data={"present": "0", "csrf_token": "forged"},
        allow_redirects=False,
    )
    assert forged.status == 403
    assert served.rows("SELECT * FROM presence") == []
    done = await http.post(
        served.url("/team/presence"),
        data={"present": "0", "csrf_token": csrf},
        allow_redirects=False,
    )
    assert done.status == 303
    assert [r.present for r in served.rows("SELECT present FROM presence")] == [0]
    # The same for JSON calls from the page: the header carries the token.
    no_header = await http.post(served.url(f"/api/hoppers/{ids['vergunningen']}/claim"), json={})
    assert no_header.status == 403

    # Every view of a hopper left a line: who, what, which.
    views: list[Any] = served.rows(
        "SELECT actor, object_id, at FROM audit_log"
        " WHERE action = 'view' AND object_type = 'hopper' ORDER BY id"
    )
    seen = [(v.actor, v.object_id) for v in views]
    assert ("bram", str(ids["belastingen"])) in seen
    assert ("carla", str(ids["vergunningen"])) in seen  # the inbox and the detail page
    assert seen.count(("carla", str(ids["vergunningen"]))) >= 2  # /team then the detail page
    assert ("bram", str(ids["vergunningen"])) not in seen  # refused: nothing was shown
    assert all(v.at for v in views)
