"""The README's resilience table is made from the tests' own records (resilience/figures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.resilience import figures

README = """# Bereik

| test | figures |
|---|---|
| `kill -9` of serve during 20 calls | typed by hand |
| sustained load, 20/s for 5 min | 6000 placed |

After the table.
"""


def write(path: Path, *records: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_last_record_of_each_test_makes_its_row(tmp_path: Path) -> None:
    records = write(
        tmp_path / "figures.jsonl",
        {"test": "t1", "title": "`kill -9` of serve during 20 calls", "figures": {"a": 1}},
        {"test": "t2", "title": "new test", "figures": {"x": "y|z"}},
        {"test": "t1", "title": "`kill -9` of serve during 20 calls", "figures": {"a": 2}},
    )
    table = figures.markdown(figures.latest(records))
    assert table.splitlines() == [
        "| test | figures |",
        "|---|---|",
        "| `kill -9` of serve during 20 calls | a: 2 |",
        "| new test | x: y/z |",
    ]


def test_the_readme_gets_the_rows_of_the_tests_that_ran_and_keeps_the_others(
    tmp_path: Path,
) -> None:
    records = write(
        tmp_path / "figures.jsonl",
        {"test": "t1", "title": "`kill -9` of serve during 20 calls", "figures": {"a": 2}},
        {"test": "t2", "title": "new test", "figures": {"b": 3}},
    )
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert figures.main(["--records", str(records), "--readme", str(readme)]) == 0
    assert readme.read_text().splitlines()[3:9] == [
        "|---|---|",
        "| `kill -9` of serve during 20 calls | a: 2 |",
        "| sustained load, 20/s for 5 min | 6000 placed |",
        "| new test | b: 3 |",
        "",
        "After the table.",
    ]


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
