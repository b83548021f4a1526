"""bench.docfigures: measured figures are put between a page's markers by their command."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import docfigures, profile, run

WHEN = datetime(2026, 12, 7, 3, 10, tzinfo=UTC)
PAGE = """# Page

Text before.

<!-- figures:load begin -->
| old | figures |
<!-- figures:load end -->

Text after.
"""


def test_rewrite_replaces_only_the_block_and_names_command_date_and_machine(
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    docfigures.rewrite(
        page, "load", "| new | 3 calls/s |\n", command="python -m x", when=WHEN, on="M"
    )
    assert page.read_text() == (
        "# Page\n\nText before.\n\n<!-- figures:load begin -->\n"
        "Produced by `python -m x` on 2026-12-07 03:10 UTC, M.\n\n| new | 3 calls/s |\n"
        "<!-- figures:load end -->\n\nText after.\n"
    )
    # Again: the same page, not a second block.
    docfigures.rewrite(
        page, "load", "| new | 3 calls/s |", command="python -m x", when=WHEN, on="M"
    )
    assert page.read_text().count("3 calls/s") == 1


def test_a_page_without_the_markers_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Page\n\nNo markers here.\n")
    with pytest.raises(docfigures.MarkersMissing, match=r"<!-- figures:load begin -->"):
        docfigures.rewrite(page, "load", "figures", command="x")
    assert page.read_text() == "# Page\n\nNo markers here.\n"


@pytest.mark.parametrize(
    "broken",
    [
        PAGE.replace("<!-- figures:load end -->", ""),
        PAGE + "<!-- figures:load begin -->\n<!-- figures:load end -->\n",
        "<!-- figures:load end -->\n<!-- figures:load begin -->\n",
    ],
    ids=["no end", "twice", "reversed"],
)
def test_broken_markers_are_refused(broken: str) -> None:
    with pytest.raises(docfigures.MarkersMissing):
        docfigures.replace(broken, "load", "figures")


def test_text_carrying_markers_or_a_bad_name_is_refused() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        docfigures.replace(PAGE, "load", "<!-- figures:load end -->")
    with pytest.raises(ValueError, match="block name"):
        docfigures.replace(PAGE, "Load Figures", "x")


def test_the_command_line_puts_stdin_and_fails_clearly_without_markers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    monkeypatch.setattr("sys.stdin", io.StringIO("| t | 1.0 |\n"))
    assert docfigures.main(["put", str(page), "load", "--command", "make durations"]) == 0
    assert "Produced by `make durations` on " in page.read_text()
    assert "| t | 1.0 |" in page.read_text()
    assert docfigures.main(["put", str(page), "other", "--command", "x"]) == 2
    assert "figures:other begin" in capsys.readouterr().err


def test_the_accessibility_findings_list_every_state_with_its_violations(tmp_path: Path) -> None:
    results = {
        "sign-in": {"rules_passed": 21, "violations": {}},
        "board": {"rules_passed": 19, "violations": {"color-contrast": "serious"}},
    }
    source = tmp_path / "accessibility.json"
    source.write_text(json.dumps(results))
    page = tmp_path / "accessibility.md"
    page.write_text(
        "## Findings\n\n<!-- figures:accessibility begin -->\n<!-- figures:accessibility end -->\n"
    )
    docfigures.render_accessibility(source, page)
    text = page.read_text()
    assert "| sign-in | 21 | none |" in text
    assert "| board | 19 | `color-contrast`: serious |" in text
    assert "2 screens and states, 40 rule checks passed, 1 violation." in text
    assert "python -m bench.docfigures accessibility" in text


def test_the_benchmarks_report_goes_between_its_markers_as_printed(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text("## Last run\n\n<!-- figures:bench begin -->\n<!-- figures:bench end -->\n")
    run.write_docs(page, "machine: 2 cores\n\n| row | calls/s |\n", ["--quick", "--write-docs"])
    text = page.read_text()
    assert "Produced by `python -m bench --quick --write-docs` on " in text
    assert ", main at " in text
    assert "```\nmachine: 2 cores\n\n| row | calls/s |\n```\n<!-- figures:bench end -->" in text


def test_the_profile_table_names_the_commits_it_compares(tmp_path: Path) -> None:
    for commit in ("aaa1111", "bbb2222"):
        (tmp_path / commit).mkdir()
        (tmp_path / commit / "ivr.txt").write_text("process 1;thread 2;select (x.py:1) 4\n")
    page = tmp_path / "README.md"
    page.write_text("<!-- figures:profile begin -->\n<!-- figures:profile end -->\n")
    before, after = str(tmp_path / "aaa1111"), str(tmp_path / "bbb2222")
    assert profile.main(["--write-docs", str(page), before, after]) == 0
    text = page.read_text()
    assert f"Produced by `python -m bench.profile {before} {after}` on " in text
    assert "| part | aaa1111: ivr | bbb2222: ivr |" in text
