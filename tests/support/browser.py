"""A headless Chromium signed in to the screens, screenshots, and axe-core's WCAG 2.1 AA check."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

from bench.exchange import ARTIFACTS, REPO, Exchange
from tests.support import second_factor
from tests.support.users import PASSWORD

SCREENS = ARTIFACTS / "screens"
# axe-core, vendored from the npm registry (tests/e2e/vendor/axe-core/VERSION says which).
AXE = REPO / "tests" / "e2e" / "vendor" / "axe-core" / "axe.min.js"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SERIOUS = ("serious", "critical")
DOC_SCREENS = REPO / "docs" / "screens"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(
    browser: Any, ex: Exchange, name: str, width: int = 1280, height: int = 800
) -> Any:
    """A fresh browser context (own cookies) signed in as `name`; returns its page."""
    # A browser in the Netherlands, as the staff's are: the screens' clocks (the browser's
    # time) agree with the times the exchange gives (Europe/Amsterdam).
    context = await browser.new_context(
        viewport={"width": width, "height": height},
        locale="nl-NL",
        timezone_id="Europe/Amsterdam",
    )
    page = await context.new_page()
    await page.goto(ex.url("/"))
    assert "/login" in page.url
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_load_state("load")
    await second_factor.in_browser(page, f"{ex.url('')}|{name}")  # admins, supervisors
    assert "/login" not in page.url, await page.content()
    return page


async def screenshot(page: Any, name: str) -> None:
    """Keep a screenshot as a test artefact; with BEREIK_UPDATE_SCREENS=1 also refresh the
    README's copy in docs/screens (so a plain test run leaves the work tree clean)."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if os.environ.get("BEREIK_UPDATE_SCREENS") == "1":
        DOC_SCREENS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOC_SCREENS / f"{name}.png")


async def until_in_page(page: Any, expression: str, timeout: float = 30) -> None:
    """Until the JavaScript `expression` is true in the page (false while it throws, e.g.
    before its element exists). page.wait_for_function would compile the expression with
    eval inside the page, which the screens' Content-Security-Policy (no 'unsafe-eval')
    refuses; a function given to page.evaluate runs through the DevTools protocol."""
    check = f"() => {{ try {{ return Boolean({expression}); }} catch (e) {{ return false; }} }}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await page.evaluate(check):
        if loop.time() > deadline:
            raise AssertionError(f"not true in the page within {timeout} s: {expression}")
        await asyncio.sleep(0.1)


async def axe(page: Any) -> dict[str, Any]:
    """axe-core's WCAG 2.1 A and AA rules on the page as it is now: the rules passed and
    each violation with its impact and (up to five of) the elements that break it."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        # Through the DevTools protocol, as a tester's console would: the screens'
        # Content-Security-Policy refuses an added inline script (add_script_tag).
        devtools = await page.context.new_cdp_session(page)
        await devtools.send("Runtime.evaluate", {"expression": AXE.read_text()})
        await devtools.detach()
    result: dict[str, Any] = await page.evaluate(
        """async (tags) => {
            const r = await axe.run(document, {runOnly: {type: "tag", values: tags}});
            return {
                passes: r.passes.length,
                violations: r.violations.map((v) => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
                })),
            };
        }""",
        WCAG_21_AA,
    )
    return result


def serious(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in result["violations"] if v["impact"] in SERIOUS]
