"""The docs' resilience tables are made from the tests' own records (resilience/figures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.resilience import figures


def write(path: Path, *records: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_last_record_of_each_test_makes_its_row(tmp_path: Path) -> None:
    records = write(
        tmp_path / "figures.jsonl",
        {"test": "t1", "title": "`kill -9` of serve during 20 calls", "figures": {"a": 1}},
        {"test": "t2", "title": "15.1 new test", "figures": {"x": "y|z"}},
        {
            "test": "t1",
            "title": "`kill -9` of serve during 20 calls",
            "figures": {"a": 2},
            "at": "2026-12-07T03:10:09+00:00",
            "commit": "abc1234",
        },
    )
    table = figures.markdown(figures.latest(records))
    assert table.splitlines() == [
        "| test | figures | measured (UTC, commit) |",
        "|---|---|---|",
        "| `kill -9` of serve during 20 calls | a: 2 | 2026-12-07 03:10, abc1234 |",
        "| new test | x: y/z | - |",
    ]


PAGE = """# Page

## Measured

<!-- figures:resilience begin -->
| old | typed |
<!-- figures:resilience end -->
"""


def test_each_tests_row_goes_to_its_topics_page_with_the_command_and_date(
    tmp_path: Path,
) -> None:
    for page in ("faults", "nodes", "security"):
        (tmp_path / "docs").mkdir(exist_ok=True)
        (tmp_path / "docs" / f"{page}.md").write_text(PAGE)
    records = write(
        tmp_path / "figures.jsonl",
        {
            "test": "test_ami_reconnects_within_five_seconds_of_asterisk_restart",
            "title": "Asterisk restarted",
            "figures": {"seconds": 0.8},
            "at": "2026-12-07T03:10:00+00:00",
            "machine": "2 cores (X), load average 1.0",
        },
        {
            "test": "test_rolling_upgrade_at_peak_drops_no_call",
            "title": "15.3 rolling upgrade",
            "figures": {"dropped": 0},
            "at": "2026-12-07T03:20:00+00:00",
            "machine": "2 cores (X), load average 2.0",
        },
    )
    figures.write_docs(figures.latest(records), records, repo=tmp_path, commit="def5678")
    faults = (tmp_path / "docs" / "faults.md").read_text()
    assert "Produced by `python -m tests.resilience.figures --docs` on 2026-12-07 03:10 UTC" in (
        faults
    )
    assert "| Asterisk restarted | seconds: 0.8 | 2026-12-07 03:10, def5678 |" in faults
    assert "typed" not in faults and "rolling" not in faults
    nodes = (tmp_path / "docs" / "nodes.md").read_text()
    assert "| rolling upgrade | dropped: 0 | 2026-12-07 03:20, def5678 |" in nodes
    assert "load average 2.0" in nodes
    # No row for security: its page is left as it was.
    assert (tmp_path / "docs" / "security.md").read_text() == PAGE


def test_a_page_without_markers_is_an_error_that_names_them(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "faults.md").write_text("# Faults\n")
    records = write(
        tmp_path / "figures.jsonl",
        {"test": "test_unknown", "title": "x", "figures": {"a": 1}},
    )
    with pytest.raises(figures.docfigures.MarkersMissing, match="figures:resilience begin"):
        figures.write_docs(figures.latest(records), records, repo=tmp_path)


def test_a_figure_set_in_a_test_is_recorded_with_its_title(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(figures, "ARTIFACTS", tmp_path)
    monkeypatch.setattr(figures, "RECORDS", tmp_path / "figures.jsonl")
    table = figures.Figures("test_x")
    table.title = "x"
    table["calls"] = 3
    table.report()
    assert figures.latest(tmp_path / "figures.jsonl")["x"]["figures"] == {"calls": 3}


def test_no_records_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "figures.jsonl"
    empty.write_text("")
    assert figures.main(["--records", str(empty), "--markdown"]) == 1


def test_a_record_goes_to_the_page_of_the_module_it_names(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "security.md").write_text(PAGE)
    records = write(
        tmp_path / "figures.jsonl",
        {
            "test": "test_renamed_since",
            "title": "x",
            "figures": {"a": 1},
            "module": "test_security.py",
        },
    )
    figures.write_docs(figures.latest(records), records, repo=tmp_path)
    assert "| x | a: 1 |" in (tmp_path / "docs" / "security.md").read_text()
