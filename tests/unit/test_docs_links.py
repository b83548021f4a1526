"""The docs hold together: every relative link and #anchor in README.md, bench/README.md and
docs/*.md resolves (anchors as GitHub makes them from headings), every docs page is reached
from the README, and every block of measured figures names the command that wrote it."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from bench.docfigures import STAMP

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = [README, REPO / "bench" / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
MARKER = re.compile(r"<!-- figures:([a-z0-9-]+) (begin|end) -->")


def prose(text: str) -> str:
    """The page without code blocks and code spans, where brackets are not links."""
    return CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, everything but
    letters, marks, digits, '_', '-' and spaces dropped, spaces made '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    kept = "".join(c for c in text.lower() if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for match in HEADING.finditer(FENCE.sub("", path.read_text())):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path.read_text()))


def external(target: str) -> bool:
    return re.match(r"[a-z][a-z0-9+.-]*:", target) is not None


def test_the_slugs_are_githubs() -> None:
    assert slug("`bereik serve` stopped or killed") == "bereik-serve-stopped-or-killed"
    assert slug("The question in the caller's words") == "the-question-in-the-callers-words"
    assert slug("Figures on /metrics") == "figures-on-metrics"
    assert slug("Findings (Bevindingen)") == "findings-bevindingen"
    assert slug("Why a team rings with Dial() and not Queue()") == (
        "why-a-team-rings-with-dial-and-not-queue"
    )


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if external(target):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor in {linked.name}")
    return broken


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## The `serve` part\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#the-serve-part) [top](#page) `[code](missing.md)`\n"
        "[gone](missing.md) [anchor](other.md#nothing) [here](#nowhere)\n"
        "[web](https://example.org/x)\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#nothing: no heading with that anchor in other.md",
        "#nowhere: no heading with that anchor in page.md",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_every_docs_page_is_reached_from_the_readme() -> None:
    reached = {README}
    todo = [README]
    while todo:
        page = todo.pop()
        for target in links(page):
            path_part = target.partition("#")[0]
            if external(target) or not path_part.endswith(".md"):
                continue
            linked = (page.parent / path_part).resolve()
            if linked.exists() and linked not in reached:
                reached.add(linked)
                todo.append(linked)
    missing = [str(p.relative_to(REPO)) for p in PAGES if p.resolve() not in reached]
    assert not missing, f"not reached from README.md: {missing}"


def block_problems(text: str) -> list[str]:
    opened: dict[str, int] = {}
    problems = []
    for match in MARKER.finditer(text):
        name, kind = match.groups()
        if kind == "begin":
            if name in opened:
                problems.append(f"{name}: begins twice")
            opened[name] = match.end()
            continue
        if name not in opened:
            problems.append(f"{name}: ends without a begin")
            continue
        body = text[opened.pop(name) : match.start()].strip()
        # Empty: not produced yet. Otherwise it starts with bench.docfigures' stamp.
        if body and not body.startswith(STAMP.split("{", 1)[0]):
            problems.append(f"{name}: does not start with 'Produced by `command` on ...'")
    return problems + [f"{name}: no end marker" for name in opened]


def test_a_typed_figure_or_an_unclosed_block_is_found() -> None:
    typed = "<!-- figures:load begin -->\n| 3 calls/s |\n<!-- figures:load end -->\n"
    assert block_problems(typed) == ["load: does not start with 'Produced by `command` on ...'"]
    assert block_problems("<!-- figures:load begin -->\n") == ["load: no end marker"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_block_of_figures_names_the_command_that_wrote_it(page: Path) -> None:
    problems = block_problems(page.read_text())
    assert not problems, f"{page.relative_to(REPO)}: " + "; ".join(problems)
