"""Measured figures in the docs, written only by the command that measures them.

A page holds each block of figures between two markers:

    <!-- figures:NAME begin -->
    ...
    <!-- figures:NAME end -->

`rewrite(path, name, text, command=...)` replaces what is between them with `text` under
one line that names the command, the date and the machine, so no figure in README.md,
bench/README.md or docs/*.md is typed by hand. A page without the markers (or with them
twice, or in the wrong order) is an error that says which markers to add, never a silent
append. `tests/unit/test_docs_links.py` checks that every block on the pages names its
command.

    python -m bench.docfigures accessibility test-artifacts/accessibility.json

renders the axe-core results the accessibility test writes into docs/accessibility.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACCESSIBILITY_PAGE = REPO / "docs" / "accessibility.md"
AXE_VERSION = REPO / "tests" / "e2e" / "vendor" / "axe-core" / "VERSION"
# Every block starts with this line (the link check looks for it).
STAMP = "Produced by `{command}` on {when}, {machine}."
NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


class MarkersMissing(ValueError):
    """The page has no (or a broken) pair of markers for the block."""


def begin(name: str) -> str:
    return f"<!-- figures:{name} begin -->"


def end(name: str) -> str:
    return f"<!-- figures:{name} end -->"


def machine(load: bool = True) -> str:
    """This machine in a few words: cores, CPU model and (now) its load average."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    described = f"{os.cpu_count()} cores ({cpu})"
    return f"{described}, load average {os.getloadavg()[0]:.1f}" if load else described


def commit() -> str:
    """The checked-out commit (short), with "+changes" when the work tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"{head}+changes" if dirty else head


def stamp(command: str, when: datetime | None = None, on: str | None = None) -> str:
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    return STAMP.format(
        command=command,
        when=moment.strftime("%Y-%m-%d %H:%M UTC"),
        machine=on if on is not None else machine(),
    )


def replace(page: str, name: str, text: str, source: str = "the page") -> str:
    """`page` with the block NAME's content replaced by `text` (the markers kept)."""
    if not NAME.fullmatch(name):
        raise ValueError(f"block name {name!r}: lower-case letters, digits and '-' only")
    if "<!-- figures:" in text:
        raise ValueError("the figures' text must not contain figure markers")
    opening, closing = begin(name), end(name)
    counts = page.count(opening), page.count(closing)
    if counts != (1, 1):
        raise MarkersMissing(
            f"{source} needs exactly one '{opening}' and one '{closing}' line "
            f"(found {counts[0]} and {counts[1]}): add them where the figures belong"
        )
    start = page.index(opening) + len(opening)
    stop = page.index(closing)
    if stop < start:
        raise MarkersMissing(f"{source}: '{closing}' comes before '{opening}'")
    return page[:start] + "\n" + text.strip("\n") + "\n" + page[stop:]


def rewrite(
    path: Path | str,
    name: str,
    text: str,
    *,
    command: str,
    when: datetime | None = None,
    on: str | None = None,
) -> None:
    """Put `text` between the markers of block NAME in the page at `path`, under a line
    naming `command`, the date (`when`, default now) and the machine (`on`, default this
    one). Raises MarkersMissing when the page lacks the markers; the page is then unchanged."""
    page = Path(path)
    body = stamp(command, when, on) + "\n\n" + text.strip("\n")
    updated = replace(page.read_text(), name, body, source=str(path))
    # Written beside and renamed: a reader never sees half a page.
    partial = page.with_name(f".{page.name}.figures")
    partial.write_text(updated)
    partial.replace(page)


def accessibility_findings(results: dict[str, dict[str, object]]) -> str:
    """The findings table: per screen and state, the axe-core rules passed and each
    violation by rule and impact."""
    lines = [
        "| screen and state | rules passed | violations (rule: impact) |",
        "|---|---|---|",
    ]
    total_passed = 0
    total_violations = 0
    for state, result in results.items():
        passed = result.get("rules_passed", 0)
        violations = result.get("violations", {})
        assert isinstance(passed, int) and isinstance(violations, dict)
        total_passed += passed
        total_violations += len(violations)
        cell = ", ".join(f"`{rule}`: {impact}" for rule, impact in sorted(violations.items()))
        lines.append(f"| {state} | {passed} | {cell or 'none'} |")
    lines += [
        "",
        f"{len(results)} screens and states, {total_passed} rule checks passed, "
        f"{total_violations} {'violation' if total_violations == 1 else 'violations'}.",
    ]
    return "\n".join(lines)


def render_accessibility(results_file: Path, page: Path = ACCESSIBILITY_PAGE) -> None:
    results = json.loads(results_file.read_text())
    if not isinstance(results, dict) or not results:
        raise ValueError(f"{results_file}: no screens in the results")
    found = re.search(r"\d+\.\d+\.\d+", AXE_VERSION.read_text()) if AXE_VERSION.exists() else None
    version = found.group(0) if found else "(version unknown)"
    measured = datetime.fromtimestamp(results_file.stat().st_mtime, UTC)
    rewrite(
        page,
        "accessibility",
        "From the axe-core run of the test command (`tests/e2e/test_accessibility.py` writes "
        f"`test-artifacts/accessibility.json`): axe-core {version}, the WCAG 2.0 and 2.1 A and "
        "AA rules, in headless Chromium.\n\n" + accessibility_findings(results),
        command=f"python -m bench.docfigures accessibility {display(results_file)}",
        when=measured,
        on=machine(load=False),
    )


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.docfigures", description=__doc__.splitlines()[0] if __doc__ else None
    )
    commands = parser.add_subparsers(dest="what", required=True)
    axe = commands.add_parser(
        "accessibility", help="render the axe-core results into docs/accessibility.md"
    )
    axe.add_argument("results", type=Path, help="the JSON file the accessibility test wrote")
    axe.add_argument("--page", type=Path, default=ACCESSIBILITY_PAGE)
    put = commands.add_parser("put", help="put the text on stdin between a page's markers")
    put.add_argument("page", type=Path)
    put.add_argument("name")
    put.add_argument("--command", required=True, help="the command that produced the text")
    args = parser.parse_args(argv)
    try:
        if args.what == "accessibility":
            render_accessibility(args.results, args.page)
        else:
            rewrite(args.page, args.name, sys.stdin.read(), command=args.command)
    except (MarkersMissing, ValueError, OSError) as error:
        print(f"docfigures: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
