"""`python -m bench --rows`: only the chosen per-rate rows, and never the page's figures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bench import run
from bench.report import Row


class Rows:
    """Stands in for a Bench: records which rows ran, measures nothing."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, float]] = []

    async def idle(self) -> float:
        return 0.0

    def __getattr__(self, method: str) -> Any:
        async def row(rate: float) -> Row:
            self.ran.append((method, rate))
            return Row(method, rate)

        return row


def test_chosen_rows_run_alone_in_run_order_and_the_other_sections_are_skipped() -> None:
    bench = Rows()
    rows, paths, seen, over = asyncio.run(
        run.measure_all(bench, [20.0, 50.0], 1.0, False, ["ivr", "bare"])  # type: ignore[arg-type]
    )
    assert bench.ran == [("bare", 20.0), ("bereik", 20.0), ("bare", 50.0), ("bereik", 50.0)]
    assert [row.name for row in rows] == ["bare", "bereik", "bare", "bereik"]
    assert paths == [] and "skipped" in seen.note and "skipped" in over.note


def test_an_unknown_row_name_is_refused_with_the_names_there_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        run.main(["--rows", "bare,ivrr"])
    assert (
        "unknown row ivrr; rows are floor,classic,bare,framework,ivr,"
        "max-ivr,max-hopper,max-line,max-announce" in capsys.readouterr().err
    )


def test_a_partial_run_does_not_write_the_page_s_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "README.md"
    page.write_text("<!-- figures:bench begin -->\n<!-- figures:bench end -->\n")
    with pytest.raises(SystemExit):
        run.main(["--rows", "ivr", "--write-docs", str(page)])
    assert "--write-docs takes the whole run's report, not --rows" in capsys.readouterr().err
    assert page.read_text() == "<!-- figures:bench begin -->\n<!-- figures:bench end -->\n"
